"""Every action's spec: what the flow layer (checker, graph, schema, docs) knows about it.

One module per family (``call_control``, ``media``, ``logic``, ``input``, ``http``,
``subflow``, ``messaging``, ``queue``), each a tuple ``SPECS`` of :class:`ActionSpec`. The runners —
``async def run_<action>(session, step, params) -> StepResult`` — live in
``flowengine.actions`` (one module per family too) and are named by ``ActionSpec.runner``;
this package imports nothing above ``flowengine.flow``, so the engine and the runners can
import it while it imports neither.

Adding an action to a family is one spec in that family's module (and its runner); a new
family module is listed in ``_FAMILIES`` below.
"""

from __future__ import annotations

from . import call_control, http, input, logic, media, messaging, queue, subflow
from .spec import (
    CALL_OUTCOMES,
    TIMEOUT_OUTCOME,
    ActionSpec,
    CheckContext,
    CheckHook,
    Conditional,
    FieldKind,
    Problem,
    RelPath,
)

#: The families in the order the schema and docs/actions.md list their actions.
_FAMILIES = (call_control, media, logic, input, http, subflow, messaging, queue)

#: action name → its spec, in the order the schema and the docs list them.
ACTIONS: dict[str, ActionSpec] = {spec.name: spec for family in _FAMILIES for spec in family.SPECS}


def outcomes_of(action: str, *, has_timeout: bool = False) -> tuple[str, ...]:
    """Every outcome a step with this action can end with."""
    spec = ACTIONS[action]
    outcomes = spec.outcomes
    if has_timeout and spec.waits and TIMEOUT_OUTCOME not in outcomes:
        return (*outcomes, TIMEOUT_OUTCOME)
    return outcomes


__all__ = [
    "ACTIONS", "CALL_OUTCOMES", "TIMEOUT_OUTCOME", "ActionSpec", "CheckContext", "CheckHook",
    "Conditional", "FieldKind", "Problem", "RelPath", "outcomes_of",
]
