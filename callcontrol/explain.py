"""``callcontrol explain``: run one call through the pipeline, without side effects, and say why."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from dialplan.call import CallRequest
from dialplan.decisions import Decision, Dial, Reject, RunService
from dialplan.directory import Directory
from dialplan.errors import CallControlError
from dialplan.pipeline import Pipeline, Result
from locutions import locution


async def explain(
    directory: Directory,
    endpoint: str,
    to: str,
    at: datetime,
    client: str | None = None,
    source_ip: str | None = None,
    caller_id: str | None = None,
) -> Result:
    """The pipeline's verdicts for a call from ``endpoint`` (terminal or carrier) to ``to``.

    ``client``, when given, must be the client the call identifies as: a mismatch is
    the operator's mistake and raises instead of explaining someone else's call.
    """
    request = CallRequest(
        call_id="explain",
        endpoint=endpoint,
        dialled=to,
        at=at,
        caller_id=caller_id,
        source_ip=source_ip,
    )
    result = await Pipeline(directory).run(request)
    found = result.call.client
    if client is not None and found is not None and found.name != client:
        raise CallControlError(
            f"{endpoint} → {to} is a call of client {found.name!r}, not {client!r}"
        )
    return result


def describe(decision: Decision) -> str:
    """One line: what the shell will do."""
    if isinstance(decision, Dial):
        what = f"dial {decision.target} {decision.endpoint} number {decision.number}"
        return what + (f" as {decision.caller_id}" if decision.caller_id else "")
    if isinstance(decision, RunService):
        return f"run service *{decision.code}"
    return _describe_reject(decision)


def _describe_reject(decision: Reject) -> str:
    spoken = locution(decision.locution, decision.language)
    heard = (
        f"locution {spoken.sound} ({spoken.language}) over early media: “{spoken.text}”"
        if decision.notify
        else "silently (no voice notification)"
    )
    return (
        f"reject {decision.reason.value}: hang up with {decision.cause.ari} "
        f"(SIP {decision.cause.sip}), {heard}"
    )


def to_text(result: Result) -> str:
    request = result.call.request
    width = max(len(verdict.step) for verdict in result.trace)
    lines = [f"call {request.endpoint} → {request.dialled} at {request.at.isoformat()}"]
    if request.source_ip:
        lines[0] += f" from {request.source_ip}"
    for verdict in result.trace:
        lines.append(f"  {verdict.step:<{width}}  {verdict.verdict:<6}  {verdict.summary}")
    lines.append(f"decision: {describe(result.decision)}")
    return "\n".join(lines)


def to_json(result: Result) -> dict[str, Any]:
    request = result.call.request
    decision: dict[str, Any] = asdict(result.decision)
    if isinstance(result.decision, Reject):
        decision["reason"] = result.decision.reason.value
        decision["cause"] = {"ari": result.decision.cause.ari, "sip": result.decision.cause.sip}
        spoken = locution(result.decision.locution, result.decision.language)
        decision["locution"] = {
            "sound": spoken.sound,
            "language": spoken.language,
            "text": spoken.text,
            "played": result.decision.notify,
        }
    return {
        "request": {
            "endpoint": request.endpoint,
            "dialled": request.dialled,
            "at": request.at.isoformat(),
            "source_ip": request.source_ip,
        },
        "client": result.call.client.name if result.call.client else None,
        "route": result.call.route.kind if result.call.route else None,
        "steps": [
            {
                "step": verdict.step,
                "verdict": verdict.verdict,
                "summary": verdict.summary,
                "details": verdict.details,
            }
            for verdict in result.trace
        ],
        "decision": decision,
    }
