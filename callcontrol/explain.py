"""``callcontrol explain``: run one call through the pipeline, without side effects, and say why."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from dialplan.call import CallRequest
from dialplan.decisions import Decision, Dial, Reject, RunService
from dialplan.directory import Directory
from dialplan.errors import CallControlError
from dialplan.pipeline import Pipeline, Result
from dialplan.rating import Billed, billed_seconds, price
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
        what += f" as {decision.caller_id}" if decision.caller_id else ""
        what += f", Diversion {decision.diversion}" if decision.diversion else ""
        if decision.max_duration is not None:
            what += f", hung up after {decision.max_duration} s (prepaid balance)"
        if decision.recording is not None and decision.recording.from_answer:
            what += ", recorded from answer"
        return what
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


def price_line(decision: Decision, duration: int) -> str | None:
    """What an answered call of ``duration`` seconds would cost, when it is billed."""
    if not isinstance(decision, Dial) or decision.billing is None:
        return None
    billed = decision.billing
    return (
        f"price of a {duration} s call: {price(billed.rate, duration)} {billed.currency}"
        f" ({billed_seconds(billed.rate, duration)} s billed, increments"
        f" {billed.rate.increments}, connection fee {billed.rate.connection_fee})"
    )


def to_text(result: Result, duration: int | None = None) -> str:
    request = result.call.request
    width = max(len(verdict.step) for verdict in result.trace)
    lines = [f"call {request.endpoint} → {request.dialled} at {request.at.isoformat()}"]
    if request.source_ip:
        lines[0] += f" from {request.source_ip}"
    for verdict in result.trace:
        lines.append(f"  {verdict.step:<{width}}  {verdict.verdict:<6}  {verdict.summary}")
    lines.append(f"decision: {describe(result.decision)}")
    priced = price_line(result.decision, duration) if duration is not None else None
    if priced is not None:
        lines.append(priced)
    return "\n".join(lines)


def to_json(result: Result, duration: int | None = None) -> dict[str, Any]:
    request = result.call.request
    decision: dict[str, Any]
    if isinstance(result.decision, Dial):
        decision = {f.name: getattr(result.decision, f.name) for f in fields(Dial)}
        decision["billing"] = _billing_json(result.decision.billing, duration)
        recording = result.decision.recording
        decision["recording"] = (
            None
            if recording is None
            else {
                "from_answer": recording.from_answer,
                "dtmf_code": recording.dtmf_code,
                "why": recording.why,
            }
        )
    else:
        decision = asdict(result.decision)
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


def _billing_json(billed: Billed | None, duration: int | None) -> dict[str, Any] | None:
    if billed is None:
        return None
    rate = billed.rate
    document: dict[str, Any] = {
        "rating_plan": billed.profile.plan.name,
        "profile_active_since": billed.profile.activation_time.isoformat(),
        "prefix": rate.prefix,
        "destination": rate.destination,
        "currency": billed.currency,
        "price_per_minute": str(rate.price_per_minute),
        "connection_fee": str(rate.connection_fee),
        "increments": rate.increments,
        "max_duration": billed.max_duration,
    }
    if duration is not None:
        document["duration"] = duration
        document["billed_seconds"] = billed_seconds(rate, duration)
        document["price"] = str(price(rate, duration))
    return document
