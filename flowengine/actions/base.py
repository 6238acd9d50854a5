"""What an action returns to the engine, and helpers shared by the action modules."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from flowengine.relay import RelayError

if TYPE_CHECKING:
    from flowengine.relay import Action, ActionResult

#: How long to wait for a stopped RELAY action to report its terminal event.
STOP_GRACE = 5.0


@dataclass(slots=True)
class StepResult:
    """The end of one step: its outcome, and what is stored under ``steps.<id>``."""

    outcome: str
    result: dict[str, Any] = field(default_factory=dict)
    #: The RELAY method the step sent, for the trace (None for steps that send nothing).
    method: str | None = None
    control_id: str | None = None
    #: A readable reason when the outcome is ``error``.
    error: str | None = None
    #: The step's parameters as rendered for this call (set by the session, for the trace).
    params: Any = None
    #: The media items the step actually played, in order, when that differs from its
    #: parameters (a prompt's re-prompts); None otherwise.
    played: list[dict[str, Any]] | None = None


async def wait_action(
    action: Action, timeout: float | None
) -> tuple[ActionResult | None, bool]:
    """Wait for a RELAY action's terminal result, stopping it if ``timeout`` runs out.

    Returns the result and whether the timeout fired. When it fires, the action is stopped
    and its terminal event is still awaited (briefly, shielded), so a timed-out recording
    keeps its url; the result is None only if the far end never reported the stop.
    """
    if timeout is None:
        return await action.wait(), False
    with anyio.move_on_after(timeout):
        return await action.wait(), False
    with anyio.move_on_after(STOP_GRACE, shield=True):
        if not action.done:
            # A gone call answers 404/410 (stop() returns {}); a lost link raises. Either way
            # the wait below still resolves, as the call's end resolves every action.
            with contextlib.suppress(RelayError):
                await action.stop()
        return await action.wait(), True
    return None, True
