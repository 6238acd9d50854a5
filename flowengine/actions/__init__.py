"""The runners: what each action does on a call.

Each action family has a module here (``media.py``, ``call_control.py``, ``logic.py`` …)
with an ``async def run_<action>(session, step, params) -> StepResult`` per action. What the
rest of flowengine knows about an action — its outcomes, result fields, schema, checks — is
its spec in ``flowengine.flow.actions``, which names the runner (``ActionSpec.runner``); the
engine imports runners by that name. The names below are re-exported from there for code
written against the old registry.
"""

from __future__ import annotations

from flowengine.flow.actions import (
    ACTIONS,
    CALL_OUTCOMES,
    TIMEOUT_OUTCOME,
    ActionSpec,
    FieldKind,
    outcomes_of,
)

__all__ = ["ACTIONS", "CALL_OUTCOMES", "TIMEOUT_OUTCOME", "ActionSpec", "FieldKind", "outcomes_of"]
