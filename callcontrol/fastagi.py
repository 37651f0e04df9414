"""The FastAGI front (DESIGN §1): the same pipeline, asked from Asterisk's own dialplan.

Rendered with ``fastagi`` set (``callcontrol asterisk render --fastagi HOST:PORT``), every
call first runs ``AGI(agi://HOST:PORT/decide,<origin>,<source address>[,<header>])`` (in
edge mode ``…/decide,edge,<source address>,<X-CC-Terminal>,<X-CC-Carrier>[,<header>]``, see
:mod:`callcontrol.source`). The
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

Nothing a request says is taken on trust:

- with ``fastagi_secret`` set, the rendered URLs carry it (``…/decide?secret=…``) and a
  request without it is refused (a call asking is refused with congestion), in one log
  line that never shows it; the front listens on loopback unless told otherwise, and
  says so when it listens further without a secret;
- a call id that is not one of Asterisk's, or values with NUL bytes, control characters
  or broken UTF-8 are refused before they reach the database;
- an end report is believed only for a call this process decided and has not ended yet,
  and only up to the time since its decision and its cap (see :func:`handback.ended`);
- whatever fails while a call is handled (a fault of ours, the caller or Asterisk gone
  mid-exchange, a request cut short), the call still ends here once: its outcome logged,
  its CDR written, its slot released.

panoramisk gives the protocol (``Request.send_command``, result parsing); the connection
is read here, with a deadline and an end, because panoramisk 1.4's handler loops forever
on a connection closed before its headers end, and its answers are read here too, because
it raises on a connection closed before Asterisk answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl

from panoramisk.fast_agi import Request
from panoramisk.utils import parse_agi_result

from callcontrol import handback
from callcontrol.admission import admit, decide_taking_slot
from callcontrol.config import Config, checked_secret
from callcontrol.edge import EdgeLeg, edge_leg
from callcontrol.geoip import GeoIp
from callcontrol.guards import Guards
from callcontrol.handback import VARIABLE, dial_variables, needs_control, packed
from callcontrol.session import (
    Outcome,
    call_cdr,
    caller_number,
    dial_notice,
    endpoint_of,
    notice_sound,
)
from callcontrol.source import arrival
from callcontrol.writer import EndWriter, own_writer
from dialplan.call import CallRequest
from dialplan.deadlines import deadline
from dialplan.decisions import Decision, Dial, Reject, RunService
from dialplan.errors import DatabaseUnavailable
from dialplan.pipeline import Pipeline, Result
from dialplan.reasons import Reason
from models.cdrs import Cdr, CdrStore
from models.db import first_line
from models.slots import release_earlier

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
ENVIRONMENT_LIMIT = 64 * 1024
"""Bytes of AGI environment read at most (Asterisk's is a few hundred)."""
REMEMBERED = 10_000
"""Decided calls waiting for their end, at most (an older one's end only frees its slot);
as many ended ones are remembered, so that another report of theirs writes nothing."""
CALL_ID = re.compile(r"[!-~]{1,64}")
"""An Asterisk channel's unique id: printable ASCII, no spaces, as long as a slot's."""
VALUES = ("agi_channel", "agi_extension", "agi_callerid")
"""The request's values a decision reads (besides the call id and the arguments)."""
CONGESTION = {"CC_ACTION": "reject", "CC_CAUSE": "34", "CC_SOUND": "", "CC_LANG": "en"}
"""The answer to a call refused undecided: congestion without sound (a proxy may try
another server)."""
INVALID = {"CC_ACTION": "reject", "CC_CAUSE": "28", "CC_SOUND": "", "CC_LANG": "en"}
"""The answer to a call whose request holds what no Asterisk sends (NUL bytes, …)."""


def quoted(value: str) -> str:
    """An AGI argument: double-quoted, with quotes and backslashes escaped, on one line."""
    flat = " ".join(value.splitlines())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def clean(value: str) -> bool:
    """True for a value Asterisk can have sent: no NUL byte, no control character, no
    broken UTF-8 (read as U+FFFD)."""
    return value.isprintable() and "\ufffd" not in value


def agi_variables(
    decision: Decision,
    dial_timeout: float,
    sound: str = "",
    language: str = "en",
    edge: EdgeLeg | None = None,
    no_relay: str = "",
) -> dict[str, str]:
    """The channel variables that tell the rendered dialplan what to do with a call.

    ``sound`` is the locution a refusal plays (``callcontrol/<reason>`` or the client's
    own), used only when the refusal notifies; for a dial, the one the caller hears (in
    ``language``) when the callee has no contact to call; ``edge``: the leg a dial goes
    through the edge with (edge mode), and ``no_relay`` the sound the caller hears when the
    edge has no media relay for it."""
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
    return dial_variables(decision, dial_timeout, sound, language, edge, no_relay)


ACCEPTED = b"200 result=1\n"
"""Asterisk's answer to a command it carried out (``SET VARIABLE``): read as
``parse_agi_result`` reads it, without parsing it."""


class AgiRequest(Request):  # type: ignore[misc]
    """panoramisk's request, whose answers from Asterisk are read here: a connection closed
    before the answer, or a line that is none, reads as an error (the caller gone), never
    as an exception."""

    async def _read_result(self) -> dict[str, Any]:
        line = await self.reader.readline()
        if line == ACCEPTED:  # the answer to nearly every command: no parsing
            return {"status_code": 200, "result": ("1", ""), "msg": ""}
        if not line.endswith(b"\n"):
            return {"error": "AGIResultHangup", "msg": "connection closed"}
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        try:
            return dict(parse_agi_result(text))
        except ValueError:
            return {"error": "AGIUnknownError", "msg": f"not an AGI answer: {text[:80]!r}"}


@dataclass(slots=True)
class Decided:
    """A call this front answered, until its end."""

    result: Result
    start: datetime
    decision_seconds: float
    at: float = 0.0
    """When it was decided, on the front's monotonic clock (an end report cannot claim
    more talk than the time since)."""
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
            "client_id": call.client.id if call.client is not None else None,
            "kind": route.kind if route is not None else None,
            "from": caller_number(self.result),
            "to": decision.number if isinstance(decision, Dial) else call.request.dialled,
            "state": "refusing" if isinstance(decision, Reject) else "dialplan",
            "started_at": self.start.isoformat(),
            "answered_seconds": None,
            "recordable": False,
            "recording": False,
        }


def _remember(memory: OrderedDict[str, Any], key: str, value: Any) -> None:
    memory[key] = value
    while len(memory) > REMEMBERED:
        memory.popitem(last=False)


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.cdrs = cdrs
        self.guards = guards
        self.geoip = geoip
        self.on_outcome = on_outcome
        self.clock = clock
        """The monotonic clock end reports are bounded by."""
        self._writer = writer
        secret = checked_secret(config.fastagi_secret)
        self._secret = hashlib.sha256(secret.encode()).digest() if secret else None
        """The secret's digest: what a request's is compared with (in constant time)."""
        self.born = datetime.now(UTC)
        """A slot taken before this belongs to an earlier run of this server."""
        self.exchanges = 0
        """``decide`` requests answered (the benchmark counts them)."""
        self.decided: OrderedDict[str, Decided] = OrderedDict()
        self.shed: OrderedDict[str, None] = OrderedDict()
        """Calls refused undecided (a deadline, an outage, a fault), until their end."""
        self.finished: OrderedDict[str, None] = OrderedDict()
        """Calls whose end is written: another report of theirs writes nothing."""
        self.evicted: OrderedDict[str, None] = OrderedDict()
        """Decided calls forgotten to keep ``decided`` bounded: their end frees the slot."""
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
        """Listen; the port (useful with 0). Listening beyond loopback without a secret
        is logged as a warning: whoever reaches the port can decide calls."""
        self._server = await asyncio.start_server(self._connection, host, port)
        log.info("FastAGI listening on %s:%d", host, self.port)
        addresses = [str(sock.getsockname()[0]) for sock in self._server.sockets]
        if self._secret is None and not all(_loopback(address) for address in addresses):
            log.warning(
                "FastAGI listens beyond loopback (%s) without fastagi_secret: whoever reaches"
                " port %d can decide calls and report their ends",
                ", ".join(addresses),
                self.port,
            )
        return self.port

    async def settled(self) -> None:
        """Return once every request in hand is handled and the ends they handed over are
        written: an end report's connection is closed before its CDR is written, so this
        is when that write is done. Waiting is all it does: cancelled, it leaves the
        handlers and the writer running."""
        while self._handlers:
            await asyncio.wait(set(self._handlers))
        if self._writer is not None:
            await self._writer.close()

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
            headers, whole = await read_request(reader, self.config.agi_timeout)
            if not headers:
                return
            script, allowed = self._script(headers, writer)
            request = AgiRequest(None, headers, reader, writer)
            if not allowed:
                if script == "decide" and whole:  # a call waits for an answer: a defined one
                    await self._tell(request, CONGESTION)
            elif script == "decide" and whole:
                await self._decide_in_time(request, headers)
            elif script == "end":
                # Nothing is said back to a report: closed now, Asterisk's channel ends at
                # once rather than with the batch its CDR joins (up to a linger later).
                writer.close()
                await self.end(headers, whole=whole)
            elif whole:
                log.warning("FastAGI: no such script %r", script[:80])
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.warning("FastAGI: connection dropped: %s: %s", type(exc).__name__, exc)
        except Exception as exc:
            # The last resort of a handler (each call's own faults are met inside): the
            # front goes on serving, and says what went wrong in one line.
            log.error("FastAGI: request failed: %s: %s", type(exc).__name__, first_line(exc))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    def _script(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> tuple[str, bool]:
        """The script a request names (``decide``, ``end``), and whether the request
        carries the secret (one line says why not). Either way the values that carry it
        leave ``headers``, so nothing after this can show it."""
        script = headers.pop("agi_network_script", "")
        headers.pop("agi_request", None)
        name, _, query = script.partition("?")
        if self._secret is None:
            return name, True
        given = dict(parse_qsl(query, keep_blank_values=True)).get("secret")
        digest = hashlib.sha256((given or "").encode()).digest()
        if hmac.compare_digest(digest, self._secret):
            return name, True
        peer = writer.get_extra_info("peername")
        log.warning(
            "FastAGI: request for call %r from %s refused: %s",
            headers.get("agi_uniqueid", "")[:80],
            peer[0] if isinstance(peer, tuple) else "?",
            "wrong secret" if given else "no secret",
        )
        return name, False

    async def _decide_in_time(self, request: Any, headers: dict[str, str]) -> None:
        """Decide within ``agi_timeout``; past it, refuse the call with congestion (503)
        rather than leave it to be decided again by the ARI app: an overloaded server
        sheds load instead of doubling it. Whatever fails on the way ends the call the
        same way, its slot released."""
        call_id = headers.get("agi_uniqueid", "")
        self.exchanges += 1
        if not CALL_ID.fullmatch(call_id):
            log.warning("FastAGI: call id %r is not Asterisk's: refused", call_id[:80])
            await self._tell(request, CONGESTION)
            return
        if call_id in self.decided or call_id in self.finished or call_id in self.shed:
            log.warning("call %s: asked to be decided again: refused", call_id)
            await self._tell(request, CONGESTION)
            return
        if not self.accepting:
            log.info("call %s: refused, server stopping", call_id)
            await self._shed(request, call_id, "refused, server stopping", release=False)
            return
        args = arguments(headers)
        if not clean("".join([headers.get(name, "") for name in VALUES] + args)):
            log.warning("call %s: request holds what Asterisk never sends: refused", call_id)
            refused = Outcome(
                call_id, "reject", "refused", Reason.INVALID_NUMBER.value, "number_incomplete"
            )
            await self._refuse(request, refused, INVALID, release=False)
            return
        try:
            async with deadline(self.config.agi_timeout):
                decided, variables = await self.decide(headers, args)
        except TimeoutError:
            log.warning("call %s: not decided in %.1f s: refused", call_id, self.config.agi_timeout)
            why = f"refused, not decided in {self.config.agi_timeout:g} s"
        except DatabaseUnavailable as exc:
            log.warning("call %s: database unavailable: %s", call_id, exc)
            why = "refused, database unavailable"
        except Exception as exc:
            # A fault of ours: the call is still answered (refused) and its slot freed.
            log.error("call %s: not decided: %s: %s", call_id, type(exc).__name__, first_line(exc))
            why = "refused, not decided"
        else:
            await self._answer(request, call_id, decided, variables)
            return
        await self._shed(request, call_id, why)

    def _forget(self, call_id: str) -> Decided | None:
        decided = self.decided.pop(call_id, None)
        if not self.decided:
            self._quiet.set()
        return decided

    async def _shed(self, request: Any, call_id: str, why: str, *, release: bool = True) -> None:
        """Refuse a call undecided: congestion without sound (a proxy may try elsewhere)."""
        outcome = Outcome(call_id, "-", why, Reason.SERVICE_UNAVAILABLE.value, "congestion")
        await self._refuse(request, outcome, CONGESTION, release=release)

    async def _refuse(
        self, request: Any, outcome: Outcome, variables: dict[str, str], *, release: bool
    ) -> None:
        """End a call refused undecided (counted now; its end writes nothing), freeing the
        slot its decision may have taken (``release``), and tell Asterisk ``variables``."""
        call_id = outcome.call_id
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        _remember(self.shed, call_id, None)
        if release:
            await self.writer.end(call_id, None, release=True)
        await self._tell(request, variables)

    async def _tell(self, request: Any, variables: dict[str, str]) -> bool:
        """Set ``CC`` on the call; False when Asterisk did not take it (the caller left,
        the connection broke, or no answer within ``agi_timeout``)."""
        command = f"SET VARIABLE {VARIABLE} {quoted(packed(variables))}"
        try:
            async with deadline(self.config.agi_timeout):
                answer = await request.send_command(command)
        except (ConnectionError, TimeoutError, ValueError):  # ValueError: panoramisk's
            return False  # reading of a usage error's text that is not UTF-8
        return not answer.get("error")

    async def _answer(
        self, request: Any, call_id: str, decided: Decided | None, variables: dict[str, str]
    ) -> None:
        """Tell Asterisk the decision. A call that left meanwhile may report no end (the
        dialplan never reaches it): it ends here (a dialled one, hung up before answer)."""
        if decided is not None:
            self.decided[call_id] = decided
            while len(self.decided) > REMEMBERED:
                forgotten, _ = self.decided.popitem(last=False)
                _remember(self.evicted, forgotten, None)
        try:
            told = await self._tell(request, variables)
        except Exception as exc:  # a fault of ours: the call still ends below, once
            log.error("call %s: not told: %s: %s", call_id, type(exc).__name__, first_line(exc))
            told = False
        if told:
            log.info("call %s: FastAGI %s", call_id, variables["CC_ACTION"])
            return
        log.info("call %s: left while being told what to do", call_id)
        if decided is not None and self.decided.get(call_id) is decided:
            self._forget(call_id)
            self._finish(decided, [])

    async def decide(
        self, headers: dict[str, str], args: list[str]
    ) -> tuple[Decided | None, dict[str, str]]:
        """Run the pipeline on the call Asterisk describes (``args``: its arguments): the
        variables that answer it, and the call to remember until its end (None when the
        ARI app is to carry it)."""
        call_id = headers.get("agi_uniqueid", "")
        came = arrival(
            args,
            endpoint_of({"name": headers.get("agi_channel", "")}),
            self.config.trusted_proxies,
        )
        source = came.source_ip
        caller = headers.get("agi_callerid", "")
        started = time.perf_counter()
        result, ticket = await decide_taking_slot(
            self.pipeline,
            self.guards,
            CallRequest(
                call_id=call_id,
                endpoint=came.endpoint,
                dialled=headers.get("agi_extension", ""),
                at=datetime.now(UTC),
                caller_id=caller if caller and caller != "unknown" else None,
                source_ip=source,
                source_country=(
                    self.geoip.country(source) if self.geoip is not None and source else None
                ),
                origin=came.origin,
                unidentified=came.unidentified,
            ),
        )
        decided = Decided(result, datetime.now(UTC), time.perf_counter() - started, at=self.clock())
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
        directory = self.pipeline.directory
        if isinstance(decision, Reject):
            sound, language = await notice_sound(directory, result.call.client, decision), "en"
        else:
            sound, language = await dial_notice(directory, result)
        edge, no_relay = None, ""
        if self.config.mode == "edge" and isinstance(decision, Dial):
            edge = await edge_leg(directory, result.call.client, decision)
            no_relay, _ = await dial_notice(directory, result, Reason.SERVICE_UNAVAILABLE)
        variables = agi_variables(
            decision, self.config.dial_timeout, sound, language, edge, no_relay
        )
        if variables["CC_ACTION"] == "stasis":
            if decided.slot and self.guards is not None:
                # The ARI app decides it again and takes its slot: free before it is sent there.
                await self.guards.release(call_id)
            return None, variables
        return decided, variables

    async def end(self, headers: dict[str, str], *, whole: bool = True) -> None:
        """A dialled or refused call hung up: its outcome, CDR and slot, once, for a call
        this process decided. A report cut short (``whole`` False) still ends the call,
        with what it said."""
        call_id = headers.get("agi_uniqueid", "")
        args = arguments(headers)
        action = args[0] if args else ""
        if whole and action not in ("dial", "reject"):
            log.warning("call %r: end report of no known action: ignored", call_id[:80])
            return
        decided = self._forget(call_id)
        if decided is None:
            await self._unknown_end(call_id)
            return
        if not whole:
            log.warning("call %s: end report cut short: ended with what it said", call_id)
        self._finish(decided, args[1:])

    async def _unknown_end(self, call_id: str) -> None:
        """The end of a call not waiting for one: nothing is written for it, but a slot
        that an earlier run of this server (or its own forgetting) left held is freed."""
        if call_id in self.shed:  # refused undecided: counted then, nothing to write
            del self.shed[call_id]
            return
        if call_id in self.finished:
            log.info("call %s: end reported again: nothing written", call_id)
            return
        if call_id in self.evicted:
            del self.evicted[call_id]
            log.warning("call %s: ended after it was forgotten: slot freed, no CDR", call_id)
            await self.writer.end(call_id, None, release=True)
            return
        log.warning("call %r: ended unknown to this process: no CDR written", call_id[:80])
        if self.guards is None or not CALL_ID.fullmatch(call_id):
            return
        try:
            freed = await release_earlier(
                self.guards.engine, self.guards.server, call_id, self.born
            )
        except DatabaseUnavailable as exc:
            log.warning("call %s: an earlier run's slot not freed: %s", call_id, exc)
            return
        if freed:
            log.info("call %s: the slot an earlier run took is freed", call_id)

    def _finish(self, decided: Decided, report: list[str]) -> None:
        """End a decided call once: its outcome logged and counted, its CDR and its slot's
        release handed to the writer, whatever fails on the way."""
        call_id = decided.call_id
        _remember(self.finished, call_id, None)
        cdr = None
        try:
            cdr = self._ended(decided, report)
        except Exception as exc:  # a fault of ours: the slot is still released below
            log.error(
                "call %s: end not recorded: %s: %s", call_id, type(exc).__name__, first_line(exc)
            )
        # Handed over, not awaited: nothing is said back to a report, so the handler is
        # done here; ``settled`` and ``stop`` wait for the batch.
        self.writer.hand(call_id, cdr, release=decided.slot)

    def _ended(self, decided: Decided, report: list[str]) -> Cdr | None:
        """The outcome of a decided call's end (logged and counted) and its CDR."""
        call_id = decided.call_id
        end = datetime.now(UTC)
        dialled = decided.result.decision
        cap = dialled.max_duration if isinstance(dialled, Dial) else None
        ended = handback.ended(["end", *report], cap, self.clock() - decided.at)
        outcome = self._outcome(decided, ended)
        if ended.clamped and outcome.answered:
            log.warning("call %s: end report clamped: %s", call_id, ended.clamped)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        log.info("call %s: %s, %s", call_id, outcome.decision, outcome.result)
        if self.cdrs is None:
            return None
        answer = max(decided.start, end - timedelta(seconds=outcome.seconds))
        try:
            return call_cdr(
                decided.result,
                outcome,
                start=decided.start,
                answer=answer if outcome.answered else None,
                end=end,
                server=self.config.server,
            )
        except ValueError as exc:  # a CDR the table would refuse: a bug, logged
            log.error("call %s: CDR not written: %s", call_id, exc)
            return None

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
            handback.reason_of(ended),
            cause,
            answered,
            seconds if answered else 0.0,
            decided.decision_seconds,
            client,
        )


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


_HEADER = re.compile(r"^(.*?): (.*)$", re.MULTILINE)
"""A ``name: value`` line: the name ends at the first ``": "``."""

_ARGUMENTS = tuple(f"agi_arg_{number}" for number in range(1, 32))


def arguments(headers: dict[str, str]) -> list[str]:
    """``agi_arg_1``, ``agi_arg_2``, … in order, up to the first missing one."""
    found = list(map(headers.get, _ARGUMENTS))  # 31 lookups in C: cheaper than a loop
    if None in found:
        del found[found.index(None) :]
    return cast(list[str], found)


async def read_request(reader: asyncio.StreamReader, within: float) -> tuple[dict[str, str], bool]:
    """The AGI environment (``agi_name: value`` lines up to a blank one) and whether it
    came whole: a connection that ends, stalls for ``within`` s or sends too much first
    gives what it sent until then, and False. Bytes that are not UTF-8 read as U+FFFD.

    Asterisk writes the whole environment at once and then waits for a command: it is
    read in as few reads as it arrives in (most often one), not line by line."""
    data = b""
    whole = False
    try:
        async with deadline(within):
            while len(data) <= ENVIRONMENT_LIMIT:
                chunk = await reader.read(ENVIRONMENT_LIMIT)
                if not chunk:
                    break  # closed before the blank line
                data += chunk
                if data.startswith(b"\n") or b"\n\n" in data or b"\n\r\n" in data:
                    whole = True
                    break
    except (TimeoutError, ConnectionError):
        pass
    return _environment(data, whole)


def _environment(data: bytes, whole: bool) -> tuple[dict[str, str], bool]:
    """The ``name: value`` lines of ``data`` up to the blank one (a line cut short says
    nothing), and ``whole`` unless the lines before it are more than ``HEADER_LIMIT``.
    Split and matched in C: Asterisk sends some thirty lines per request."""
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    del lines[-1]  # not ended by a newline
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    try:
        end = lines.index("")
    except ValueError:
        end, whole = len(lines), False
    if end > HEADER_LIMIT:
        end, whole = HEADER_LIMIT, False
    return dict(_HEADER.findall("\n".join(lines[:end]))), whole


async def read_headers(reader: asyncio.StreamReader, within: float) -> dict[str, str] | None:
    """The AGI environment, or None for a connection that ends, stalls for ``within`` s
    or sends too much first."""
    headers, whole = await read_request(reader, within)
    return headers if whole else None
