"""The flow language: a YAML file in, an immutable, checked ``FlowVersion`` out.

::

    from flowengine.flow import load_flow, FlowError

    version = load_flow("flows/voicemail.yaml")      # FlowError(diagnostics) when invalid
    step = version.steps[version.start]
    route(version, step, "finished").target           # where that outcome leads

See ``docs/flow-language.md`` for the language and ``docs/internals.md`` for the API.
"""

from .compiler import CompileResult, check_paths, compile_flow, flow_files, load_flow
from .diagnostics import Diagnostic, FlowError
from .model import (
    BRANCH_PREFIX,
    ERROR,
    HANGUP,
    NEXT,
    Branch,
    FlowVersion,
    Route,
    Step,
    branch_outcome,
    possible_outcomes,
    route,
)
from .templates import (
    CALL_FIELDS,
    CONTEXT_NAMES,
    FLOW_FIELDS,
    CallInfo,
    FlowParams,
    FlowVars,
    StepResults,
    TemplateRenderError,
    choose_branch,
    initial_params,
    initial_vars,
    render,
    render_params,
    template_context,
)

__all__ = [
    "BRANCH_PREFIX", "CALL_FIELDS", "CONTEXT_NAMES", "ERROR", "FLOW_FIELDS", "HANGUP", "NEXT",
    "Branch", "CallInfo", "CompileResult", "Diagnostic", "FlowError", "FlowParams", "FlowVars",
    "FlowVersion",
    "Route", "Step", "StepResults", "TemplateRenderError", "branch_outcome", "check_paths",
    "choose_branch", "compile_flow", "flow_files", "initial_params", "initial_vars", "load_flow",
    "possible_outcomes", "render", "render_params", "route", "template_context",
]
