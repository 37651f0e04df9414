"""``callcontrol explain``: run one call through the pipeline, without side effects, and say why."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callcontrol.source import EDGE, Arrival, arrival, edge_value, peer_address
from dialplan.call import CallRequest, Origin
from dialplan.decisions import Decision, Dial, Reject, RunService
from dialplan.directory import Directory
from dialplan.errors import CallControlError, shown
from dialplan.pipeline import Pipeline, Result
from dialplan.rating import Billed, billed_seconds, charge
from locutions import locution

if TYPE_CHECKING:
    from callcontrol.geoip import GeoIp


async def explain(
    directory: Directory,
    endpoint: str,
    to: str,
    at: datetime,
    client: str | None = None,
    source_ip: str | None = None,
    caller_id: str | None = None,
    *,
    geoip: GeoIp | None = None,
    source_country: str | None = None,
    origin: Origin | None = None,
    unidentified: str | None = None,
) -> Result:
    """The pipeline's verdicts for a call from ``endpoint`` (terminal or carrier) to ``to``.

    ``client``, when given, must be the client the call identifies as: a mismatch is
    the operator's mistake and raises instead of explaining someone else's call.

    As the service sees it: ``source_ip`` is read as the service reads the address
    Asterisk reports (a port or brackets dropped, IPv4-mapped IPv6 as IPv4) and its
    country looked up in ``geoip``; ``source_country`` (a what-if) replaces the lookup.
    A naive ``at`` is a wall-clock time in the zone of the client the call identifies as
    (UTC when no client is found); an aware one is that instant. ``origin`` and
    ``unidentified``: what the shell learnt of a call through the edge (:func:`edge_call`).
    """
    address = peer_address(source_ip) if source_ip else None
    source = str(address) if address is not None else (source_ip or None)
    if source_country is None and geoip is not None and address is not None:
        source_country = geoip.country(str(address))

    def request(moment: datetime) -> CallRequest:
        return CallRequest(
            call_id="explain",
            endpoint=endpoint,
            dialled=to,
            at=moment,
            caller_id=caller_id,
            source_ip=source,
            source_country=source_country,
            origin=origin,
            unidentified=unidentified,
        )

    pipeline = Pipeline(directory)
    result = await pipeline.run(request(at if at.tzinfo else at.replace(tzinfo=UTC)))
    found = result.call.client
    if client is not None and found is not None and found.name != client:
        raise CallControlError(
            f"{endpoint} → {to} is a call of client {found.name!r}, not {client!r}"
        )
    if at.tzinfo is None and found is not None:
        zone = client_zone(found.timezone)
        if zone is not UTC:
            result = await pipeline.run(request(at.replace(tzinfo=zone)))
    return result


def edge_call(
    terminal: str | None,
    carrier: str | None,
    peer: str,
    source_ip: str | None,
    trusted_proxies: str,
) -> Arrival:
    """A call through the edge as the service reads it: from ``peer`` (the address the
    INVITE came from), with the edge's ``X-CC-Terminal`` / ``X-CC-Carrier`` and
    ``source_ip`` as its X-Forwarded-For; believed only when ``peer`` is a trusted proxy."""
    args = [
        EDGE,
        peer,
        edge_value(terminal or ""),
        edge_value(carrier or ""),
        *([source_ip] if source_ip else []),
    ]
    return arrival(args, EDGE, trusted_proxies)


def client_zone(name: str) -> tzinfo:
    """The zone ``name`` (a client's ``timezone``); one line when it is not one."""
    if name in ("UTC", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CallControlError(f"timezone {shown(name)} is not a known time zone") from exc


def when(result: Result) -> str:
    """``2026-11-25 11:30 Europe/Madrid (+01:00)``: the call's time in its client's zone
    (UTC when the call has no client)."""
    moment = result.call.request.at
    client = result.call.client
    name = client.timezone if client is not None else "UTC"
    local = moment.astimezone(client_zone(name))
    offset = local.strftime("%z")
    seconds = f":{local.second:02d}" if local.second or local.microsecond else ""
    return f"{local:%Y-%m-%d %H:%M}{seconds} {name} ({offset[:3]}:{offset[3:5]})"


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


def price_line(decision: Decision, duration: int, answered: bool = True) -> str | None:
    """What the call would cost, answered for ``duration`` seconds or not answered at all
    (0, as its CDR says), when it is billed."""
    if not isinstance(decision, Dial) or decision.billing is None:
        return None
    billed = decision.billing
    if not answered:
        return f"not answered: 0 {billed.currency} (an unanswered call costs nothing)"
    return (
        f"answered for {duration} s: price {charge(billed.rate, duration, answered=True)}"
        f" {billed.currency} ({billed_seconds(billed.rate, duration)} s billed, increments"
        f" {billed.rate.increments}, connection fee {billed.rate.connection_fee})"
    )


def to_text(
    result: Result, duration: int | None = None, answered: bool = True, what_if: bool = False
) -> str:
    """The verdicts in words; ``what_if``: the source's country was given, not looked up."""
    request = result.call.request
    width = max(len(verdict.step) for verdict in result.trace)
    lines = [f"call {request.endpoint} → {request.dialled} at {when(result)}"]
    if request.source_ip:
        lines[0] += f" from {request.source_ip}"
        if request.source_country:
            how = "given" if what_if else "GeoIP"
            lines[0] += f" ({how}: {request.source_country})"
    for verdict in result.trace:
        lines.append(f"  {verdict.step:<{width}}  {verdict.verdict:<6}  {verdict.summary}")
    lines.append(f"decision: {describe(result.decision)}")
    priced = (
        price_line(result.decision, duration or 0, answered)
        if duration is not None or not answered
        else None
    )
    if priced is not None:
        lines.append(priced)
    return "\n".join(lines)


def to_json(result: Result, duration: int | None = None, answered: bool = True) -> dict[str, Any]:
    request = result.call.request
    decision: dict[str, Any]
    if isinstance(result.decision, Dial):
        decision = {f.name: getattr(result.decision, f.name) for f in fields(Dial)}
        decision["billing"] = _billing_json(result.decision.billing, duration, answered)
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
            "local_time": when(result),
            "source_ip": request.source_ip,
            "source_country": request.source_country,
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


def _billing_json(
    billed: Billed | None, duration: int | None, answered: bool = True
) -> dict[str, Any] | None:
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
    if not answered:
        document.update(
            answered=False, duration=0, billed_seconds=0, price=str(charge(rate, 0, answered=False))
        )
    elif duration is not None:
        document["answered"] = True
        document["duration"] = duration
        document["billed_seconds"] = billed_seconds(rate, duration)
        document["price"] = str(charge(rate, duration, answered=True))
    return document
