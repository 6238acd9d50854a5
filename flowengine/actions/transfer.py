"""refer and transfer: the call handed on — to a SIP endpoint by SIP REFER (calling.refer,
§5.12), or to another flow of ours."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowengine.actions.base import StepResult
from flowengine.relay import CallEnded, RelayError

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step


async def run_refer(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``refer: {to, headers}`` → ``calling.refer``; waits for the REFER's answer:
    ``accepted`` (the call left us), ``refused`` (a 4xx/5xx/6xx, or the referred call
    failed), ``hangup``."""
    call = session.call
    to = str(params["to"]).strip()
    result: dict[str, Any] = {"to": to, "state": None, "code": None, "notify_code": None}
    if not to.startswith(("sip:", "sips:")):
        return StepResult("error", result, error=f"refer needs a SIP URI (sip:…), not {to!r}")
    headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
    method = "calling.refer"
    try:
        refer = await call.refer(to, headers=headers)
    except CallEnded:
        return StepResult("hangup", result, method=method)
    except RelayError as exc:
        return StepResult("error", result, method=method, error=str(exc))
    done = await refer.wait()
    result.update(state=done.state, code=done.response_code or None,
                  notify_code=done.notify_code or None)
    if done.state == "hangup":
        return StepResult("hangup", result, method=method)
    return StepResult("accepted" if done.accepted else "refused", result, method=method)


async def run_transfer(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``transfer: NAME`` → the call goes on in the flow named NAME, its version of now
    (the session switches to it once this flow has ended)."""
    name = str(params["flow"]).strip()
    result: dict[str, Any] = {"flow": name, "version": None}
    if session.within is not None:
        return StepResult("error", result, error="transfer cannot run in a subflow: return "
                          "from it, and transfer in the calling flow")
    try:
        runtime = await session.resolve_flow(name)
    except LookupError as exc:
        return StepResult("error", result, error=str(exc))
    session.transfer_to = runtime
    result["version"] = runtime.flow.short_version
    return StepResult("transferred", result)
