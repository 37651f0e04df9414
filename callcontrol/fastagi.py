"""The FastAGI front (DESIGN §1): the same pipeline, asked from Asterisk's own dialplan.

Rendered with ``fastagi`` set (``callcontrol asterisk render --fastagi HOST:PORT``), every
call first runs ``AGI(agi://HOST:PORT/decide,<origin>,<source address>[,<header>])``. The
answer is one channel variable, ``CC``, the decision packed (see
:mod:`callcontrol.handback`), and the dialplan carries the call out natively, with no
ARI request at all:

- ``dial``: the rendered ``[callcontrol-dial]`` context dials it, as it does the ARI
  app's handed-back calls (caller id set on the caller so the callee sees it, ``S(n)``
  caps a prepaid call, a pre-dial handler adds a Diversion header);
- ``reject``: the Q.850 cause, the locution (empty when the client has no
  notifications) and its language: early media, the locution, the cause;
- ``stasis``: the call needs mid-call control (it may be recorded), so the dialplan
  hands it to the ARI app, which decides it again and carries it.

When nothing answers on the FastAGI port the dialplan hands the call to the ARI app too.
At hang-up the ``h`` extension of dialled and refused calls runs
``AGI(agi://HOST:PORT/end,<action>,${DIALSTATUS},${ANSWEREDTIME_MS},${HANGUPCAUSE},${CC_BY})``:
the call's outcome is logged and counted, its CDR written and its slot released.

panoramisk gives the protocol (``Request.send_command``, result parsing); the connection
is read here, with a deadline and an end, because panoramisk 1.4's handler loops forever
on a connection closed before its headers end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from panoramisk.fast_agi import Request

from callcontrol import handback
from callcontrol.admission import admit, decide_taking_slot
from callcontrol.config import Config
from callcontrol.geoip import GeoIp
from callcontrol.guards import Guards
from callcontrol.handback import VARIABLE, dial_variables, needs_control, packed
from callcontrol.session import Outcome, call_cdr, caller_number, endpoint_of, notice_sound
from callcontrol.source import source_address
from callcontrol.writer import EndWriter, own_writer
from dialplan.call import CallRequest, Origin
from dialplan.decisions import Decision, Dial, Reject, RunService
from dialplan.errors import DatabaseUnavailable
from dialplan.pipeline import Pipeline, Result
from dialplan.reasons import Reason
from models.cdrs import CdrStore

log = logging.getLogger("callcontrol.fastagi")

Q850 = {
    "normal": 16,
    "busy": 17,
    "no_answer": 19,
    "rejected": 21,
    "number_incomplete": 28,
    "congestion": 34,
    "unallocated": 1,
}
"""The Q.850 cause of each ARI hang-up reason the pipeline uses (Hangup() takes numbers)."""

HEADER_LIMIT = 200
"""Lines of AGI environment accepted before a connection is dropped as garbage."""
REMEMBERED = 10_000
"""Decided calls waiting for their end, at most (older ones are decided again at the end)."""


def quoted(value: str) -> str:
    """An AGI argument: double-quoted, with quotes and backslashes escaped, on one line."""
    flat = " ".join(value.splitlines())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def agi_variables(decision: Decision, dial_timeout: float, sound: str = "") -> dict[str, str]:
    """The channel variables that tell the rendered dialplan what to do with a call.

    ``sound`` is the locution a refusal plays (``callcontrol/<reason>`` or the client's
    own); it is only used when the refusal notifies."""
    if isinstance(decision, Reject):
        return {
            "CC_ACTION": "reject",
            "CC_CAUSE": str(Q850[decision.cause.ari]),
            "CC_SOUND": sound if decision.notify else "",
            "CC_LANG": decision.language,
        }
    if isinstance(decision, RunService):  # no service is wired yet: like an unknown number
        return {
            "CC_ACTION": "reject",
            "CC_CAUSE": str(Q850["unallocated"]),
            "CC_SOUND": "",
            "CC_LANG": "en",
        }
    if needs_control(decision):
        return {"CC_ACTION": "stasis"}
    return dial_variables(decision, dial_timeout)


@dataclass(slots=True)
class Decided:
    """A call this front answered, until its end."""

    result: Result
    start: datetime
    decision_seconds: float
    slot: bool = False
    by_operator: bool = False
    """True once an operator asked for the call to be hung up (through ARI)."""

    @property
    def call_id(self) -> str:
        return self.result.call.request.call_id

    def snapshot(self) -> dict[str, Any]:
        """What the console shows of this call: Asterisk's dialplan carries it, so its
        state is ``dialplan`` (a refusal: ``refusing``) until its end is reported."""
        call, decision = self.result.call, self.result.decision
        route = call.route
        return {
            "id": self.call_id,
            "client": call.client.name if call.client is not None else None,
            "kind": route.kind if route is not None else None,
            "from": caller_number(self.result),
            "to": decision.number if isinstance(decision, Dial) else call.request.dialled,
            "state": "refusing" if isinstance(decision, Reject) else "dialplan",
            "started_at": self.start.isoformat(),
            "answered_seconds": None,
            "recordable": False,
            "recording": False,
        }


class AgiFront:
    """The FastAGI server: ``decide`` and ``end`` requests, one connection each."""

    def __init__(
        self,
        config: Config,
        pipeline: Pipeline,
        *,
        cdrs: CdrStore | None = None,
        guards: Guards | None = None,
        geoip: GeoIp | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        writer: EndWriter | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.cdrs = cdrs
        self.guards = guards
        self.geoip = geoip
        self.on_outcome = on_outcome
        self._writer = writer
        self.exchanges = 0
        """``decide`` requests answered (the benchmark counts them)."""
        self.decided: OrderedDict[str, Decided] = OrderedDict()
        self.shed: OrderedDict[str, None] = OrderedDict()
        """Calls refused undecided (a deadline or an outage), until their end."""
        self.accepting = True
        """False once stopping: ``decide`` refuses, ``end`` is still heard."""
        self._quiet = asyncio.Event()
        """Set when the last decided call has ended (``stop`` waits for it)."""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def writer(self) -> EndWriter:
        """Where calls' ends go (CDRs, slot releases), in batches: the one given, else one
        of its own, made at first use from ``cdrs`` and ``guards`` as they are then."""
        self._writer = own_writer(self._writer, self.cdrs, self.guards)
        return self._writer

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> int:
        """Listen; the port (useful with 0)."""
        self._server = await asyncio.start_server(self._connection, host, port)
        log.info("FastAGI listening on %s:%d", host, self.port)
        return self.port

    async def stop(self, grace: float = 0.0) -> None:
        """Stop taking calls; for up to ``grace`` s keep hearing the ends of those decided
        (their CDRs and slots), then close. A call deciding meanwhile is refused with
        congestion, so a proxy can try another server."""
        self.accepting = False
        if self.decided and grace > 0:
            self._quiet.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), grace)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # A connection accepted just now has its handler task scheduled but not yet run
        # (it registers itself first thing): let it, so it is waited for like the others.
        await asyncio.sleep(0)
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=self.config.teardown_timeout)
        for handler in list(self._handlers):  # past the grace: a CDR cut short is spooled
            handler.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._writer is not None:
            await self._writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            headers = await read_headers(reader, self.config.agi_timeout)
            if headers is None:
                return
            script = headers.get("agi_network_script", "")
            if script == "decide":
                await self._decide_in_time(Request(None, headers, reader, writer), headers)
            elif script == "end":
                await self.end(headers)
            else:
                log.warning("FastAGI: no such script %r", script)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.warning("FastAGI: connection dropped: %s: %s", type(exc).__name__, exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def _decide_in_time(self, request: Any, headers: dict[str, str]) -> None:
        """Decide within ``agi_timeout``; past it, refuse the call with congestion (503)
        rather than leave it to be decided again by the ARI app: an overloaded server
        sheds load instead of doubling it."""
        call_id = headers.get("agi_uniqueid", "")
        self.exchanges += 1
        if not self.accepting:
            log.info("call %s: refused, server stopping", call_id)
            await self._shed(request, call_id, "refused, server stopping")
            return
        try:
            async with asyncio.timeout(self.config.agi_timeout):
                await self.decide(request, headers)
            return
        except TimeoutError:
            log.warning("call %s: not decided in %.1f s: refused", call_id, self.config.agi_timeout)
            why = f"refused, not decided in {self.config.agi_timeout:g} s"
        except DatabaseUnavailable as exc:
            log.warning("call %s: database unavailable: %s", call_id, exc)
            why = "refused, database unavailable"
        await self._shed(request, call_id, why)

    def _forget(self, call_id: str) -> Decided | None:
        decided = self.decided.pop(call_id, None)
        if not self.decided:
            self._quiet.set()
        return decided

    async def _shed(self, request: Any, call_id: str, why: str) -> None:
        """Refuse a call undecided: congestion without sound (a proxy may try elsewhere)."""
        if self.on_outcome is not None:
            self.on_outcome(
                Outcome(call_id, "-", why, Reason.SERVICE_UNAVAILABLE.value, "congestion")
            )
        self._forget(call_id)
        self.shed[call_id] = None
        while len(self.shed) > REMEMBERED:
            self.shed.popitem(last=False)
        await self.writer.end(call_id, None, release=True)  # a slot taken before the deadline
        overloaded = {
            "CC_ACTION": "reject",
            "CC_CAUSE": str(Q850["congestion"]),
            "CC_SOUND": "",
            "CC_LANG": "en",
        }
        async with asyncio.timeout(self.config.agi_timeout):
            await request.send_command(f"SET VARIABLE {VARIABLE} {quoted(packed(overloaded))}")

    async def decide(self, request: Any, headers: dict[str, str]) -> None:
        """Run the pipeline on the call Asterisk describes; answer with variables."""
        call_id = headers.get("agi_uniqueid", "")
        args = arguments(headers)
        source = source_address(args, self.config.trusted_proxies)
        caller = headers.get("agi_callerid", "")
        first = args[0] if args else ""
        origin: Origin | None = (
            "terminal" if first == "terminal" else "carrier" if first == "carrier" else None
        )
        started = time.perf_counter()
        result, ticket = await decide_taking_slot(
            self.pipeline,
            self.guards,
            CallRequest(
                call_id=call_id,
                endpoint=endpoint_of({"name": headers.get("agi_channel", "")}),
                dialled=headers.get("agi_extension", ""),
                at=datetime.now(UTC),
                caller_id=caller if caller and caller != "unknown" else None,
                source_ip=source,
                source_country=(
                    self.geoip.country(source) if self.geoip is not None and source else None
                ),
                origin=origin,
            ),
        )
        decided = Decided(result, datetime.now(UTC), time.perf_counter() - started)
        decided.slot = ticket is not None and ticket.holds
        decision = result.decision
        if isinstance(decision, Dial) and not needs_control(decision):
            admission = await admit(
                self.guards, self.config, result.call, decision, call_id, ticket
            )
            decided.slot = admission.slot
            if admission.decision is not decision:
                decision = admission.decision
                decided.result = Result(result.call, decision, result.trace)
        sound = (
            await notice_sound(self.pipeline.directory, result.call.client, decision)
            if isinstance(decision, Reject)
            else ""
        )
        variables = agi_variables(decision, self.config.dial_timeout, sound)
        if variables["CC_ACTION"] == "stasis" and decided.slot and self.guards is not None:
            # The ARI app decides it again and takes its slot: free before it is sent there.
            await self.guards.release(call_id)
        if variables["CC_ACTION"] != "stasis":
            self.decided[call_id] = decided
            while len(self.decided) > REMEMBERED:
                self.decided.popitem(last=False)
        answer = await request.send_command(f"SET VARIABLE {VARIABLE} {quoted(packed(variables))}")
        if answer.get("error"):
            log.info("call %s: left while being told what to do: %s", call_id, answer)
            return
        log.info("call %s: FastAGI %s", call_id, variables["CC_ACTION"])

    async def end(self, headers: dict[str, str]) -> None:
        """A dialled or refused call hung up: its outcome, CDR and slot."""
        call_id = headers.get("agi_uniqueid", "")
        action, *report = [*arguments(headers), "", "", "", "", ""][:5]
        if action not in ("dial", "reject"):
            return
        decided = self._forget(call_id)
        if decided is None and call_id in self.shed:  # refused undecided: nothing to write
            del self.shed[call_id]
            return
        if decided is None:  # decided before this process started
            log.warning("call %s: ended unknown to this process: no CDR written", call_id)
            await self.writer.end(call_id, None, release=True)
            return
        end = datetime.now(UTC)
        dialled = decided.result.decision
        cap = dialled.max_duration if isinstance(dialled, Dial) else None
        ended = handback.ended(["end", *report], cap)
        seconds = ended.answered_seconds
        outcome = self._outcome(decided, ended)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        log.info("call %s: %s, %s", call_id, outcome.decision, outcome.result)
        cdr = None
        if self.cdrs is not None:
            answer = end - timedelta(seconds=seconds) if outcome.answered else None
            try:
                cdr = call_cdr(
                    decided.result,
                    outcome,
                    start=decided.start,
                    answer=answer,
                    end=end,
                    server=self.config.server,
                )
            except ValueError as exc:  # a CDR the table would refuse: a bug, logged
                log.error("call %s: CDR not written: %s", call_id, exc)
        await self.writer.end(call_id, cdr, release=decided.slot)

    def _outcome(self, decided: Decided, ended: handback.Ended) -> Outcome:
        result = decided.result
        decision = result.decision
        client = result.call.client.name if result.call.client else None
        call_id = result.call.request.call_id
        if isinstance(decision, Reject):
            return Outcome(
                call_id,
                "reject",
                "refused",
                decision.reason.value,
                decision.cause.ari,
                decision_seconds=decided.decision_seconds,
                client=client,
            )
        if isinstance(decision, RunService):
            return Outcome(
                call_id,
                f"service *{decision.code}",
                "no such service",
                None,
                "unallocated",
                decision_seconds=decided.decision_seconds,
                client=client,
            )
        assert isinstance(decision, Dial)
        label = f"dial {decision.target} {decision.endpoint}"
        text, cause, answered = handback.result_of(
            ended, decision.max_duration, decided.by_operator
        )
        seconds = ended.answered_seconds
        return Outcome(
            call_id,
            label,
            text,
            None,
            cause,
            answered,
            seconds if answered else 0.0,
            decided.decision_seconds,
            client,
        )


def arguments(headers: dict[str, str]) -> list[str]:
    """``agi_arg_1``, ``agi_arg_2``, … in order."""
    found = []
    for number in range(1, 32):
        value = headers.get(f"agi_arg_{number}")
        if value is None:
            break
        found.append(value)
    return found


async def read_headers(reader: asyncio.StreamReader, within: float) -> dict[str, str] | None:
    """The AGI environment (``agi_name: value`` lines up to a blank one), or None for a
    connection that ends, stalls for ``within`` s or sends too much first."""
    headers: dict[str, str] = {}
    try:
        async with asyncio.timeout(within):
            for _ in range(HEADER_LIMIT):
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    return None  # closed before the blank line
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if not text:
                    return headers
                name, separator, value = text.partition(": ")
                if separator:
                    headers[name] = value
    except (TimeoutError, ValueError, ConnectionError):
        return None
    return None
