"""A call's state as a :class:`~flowengine.store.CallCheckpoint`, and back (docs/store.md).

:func:`checkpoint_of` reads a running :class:`Session` (its current step, ``steps``,
``vars``, visit counts, the flags its handlers read, its deadline as wall-clock time) into
the store's plain record; :class:`ResumedSession` is a Session that starts from one, in a
new process, on a call re-attached by the RELAY client (``RelayClient.adopt_call``).

What a resumed session does again: the step it was in when the process died runs again
from its start (its parameters rendered again from the restored ``steps``/``vars``); an
action that step had started (the checkpoint's ``pending``) is not sent again but taken
over by control id (``Call.reattach``), so a play goes on where it is and a record keeps
its one recording. A step that was cut between its checkpoint and its command sends the
command again (at-least-once). A subflow is run again from its start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowengine.engine.machine import END, FlowRuntime
from flowengine.engine.session import Session
from flowengine.store import CallCheckpoint, Deadlines, PendingAction

if TYPE_CHECKING:
    from flowengine.relay import Call

__all__ = ["ResumedSession", "call_params", "checkpoint_of"]


def call_params(call: Call) -> dict[str, Any]:
    """What ``RelayClient.adopt_call`` needs to rebuild the call in another process."""
    return {"call_id": call.call_id, "node_id": call.node_id, "context": call.context,
            "direction": call.direction, "device": call.device, "call_state": call.state,
            "tag": call.tag}


def checkpoint_of(session: Session, daemon_id: str, *, version_sha: str,
                  pending: PendingAction | None = None) -> CallCheckpoint:
    """The store's record of ``session`` now: at a step boundary (``pending`` None, the
    step is the next one) or at an action's start (the step running, its action)."""
    call = session.call
    deadline = None
    if session.max_duration:
        # Wall clock: it means the same moment to the process that resumes the call.
        deadline = session._wall0 + session.max_duration * session.time_scale
    step = None if session.state == END else session.state
    return CallCheckpoint(
        call_id=call.call_id, daemon_id=daemon_id, flow_name=session.flow.name,
        version_sha=version_sha, step=step, steps=session.steps, vars=session.vars,
        pending=pending, deadlines=Deadlines(max_duration=deadline), visits=session.visits,
        extra={"call": call_params(call), "file": session.flow.file,
               "hangup_handled": session.hangup_handled,
               "error_handled": session.error_handled,
               "caller_hung_up": session.caller_hung_up,
               "steps_run": session.steps_run},
        updated_at=time.time())


class ResumedSession(Session):
    """A Session that continues a call from its checkpoint, in a new process.

    ``call`` is the re-attached call (``RelayClient.adopt_call``); the checkpoint's pending
    action, if any, has been re-attached on it (``Call.reattach``). The flow's ``vars``
    are not rendered again: the checkpoint's are restored, with ``steps`` and the visit
    counts; ``max_duration`` runs to the checkpoint's wall-clock deadline.
    """

    def __init__(self, runtime: FlowRuntime, call: Call, checkpoint: CallCheckpoint,
                 **kwargs: Any) -> None:
        deadline = checkpoint.deadlines.max_duration
        time_scale = float(kwargs.get("time_scale", 1.0))
        if deadline is not None:
            # At least a moment: a deadline passed while we were away ends the call now,
            # through the limit's own path (hung up, on_hangup runs).
            kwargs["max_duration"] = max(0.001, (deadline - time.time()) / time_scale)
        super().__init__(runtime, call, start=checkpoint.step or END, **kwargs)
        self._checkpoint = checkpoint

    def _init_vars(self) -> str | None:
        # params are rendered as at the start (they read only the call); vars and steps
        # are the checkpoint's, not rendered again (a vars template may read the time).
        super()._init_vars()
        cp = self._checkpoint
        self.vars.clear()
        self.vars.update(_plain(cp.vars))
        self.steps.update(_plain(cp.steps))
        self.visits.update(cp.visits)
        if cp.pending is not None and cp.step in self.visits:
            # The step was counted when it started; it is counted again as it runs again.
            self.visits[cp.step] -= 1
        extra = cp.extra
        self.hangup_handled = bool(extra.get("hangup_handled"))
        self.error_handled = bool(extra.get("error_handled"))
        self.caller_hung_up = bool(extra.get("caller_hung_up"))
        self.steps_run = int(extra.get("steps_run") or 0)
        return None


def _plain(tree: Mapping[str, Any]) -> dict[str, Any]:
    return dict(tree)
