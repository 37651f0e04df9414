"""One call on Asterisk: decide with the pipeline, carry the decision out, tear down.

A :class:`CallSession` owns the caller's channel (the A leg), the channel it
dials (the B leg) and the bridge between them. Its events arrive, in order, on
its own queue; nothing it awaits can stall another call. Every call ends in a
defined outcome, logged once with the call id, and its channels are hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from callcontrol import handback
from callcontrol.admission import admit, decide_taking_slot
from callcontrol.ari_ import Ari, Event, Json
from callcontrol.config import Config
from callcontrol.edge import NO_RELAY_CAUSE, NO_RELAY_RESULT, RELAY_SET_HEADER, EdgeLeg, edge_leg
from callcontrol.errors import AriError, ChannelGone
from callcontrol.geoip import GeoIp
from callcontrol.guards import Guards
from callcontrol.handback import needs_control
from callcontrol.recorder import CallFacts, CallRecorder, Party
from callcontrol.source import arrival
from callcontrol.writer import EndWriter
from dialplan.call import CallRequest, External, Inbound, Internal, InterVpbx, Origin
from dialplan.decisions import Decision, Dial, Reject, RunService
from dialplan.directory import Directory
from dialplan.pipeline import Pipeline, Result, reject
from dialplan.rating import billed_seconds, charge
from dialplan.reasons import Reason
from dialplan.recording import RecordingPlan
from dialplan.text import scrubbed
from dialplan.views import ClientView
from locutions.install import sound_uri
from models.cdrs import Cdr, CdrStore
from models.directory import Ticket
from models.locutions import override_sound
from models.recordings import RecordingStore

log = logging.getLogger("callcontrol.calls")

GONE_EVENTS = frozenset({"StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"})
ENDED_UNSEEN = "callcontrol.EndedUnseen"

"""An event the link puts in a handed-back call's queue when its channel ended while the
link was disconnected (the ``h`` extension's report was lost)."""
OPERATOR_RECORDING = "callcontrol.OperatorRecording"
"""An event the console puts in a call's queue: ``start`` True or False."""

# How a dialled leg that did not answer ends the caller's leg (ARI hang-up reasons).
DIAL_FAILURES: dict[str, str] = {
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "CHANUNAVAIL": "congestion",
    "CONGESTION": "congestion",
    "CANCEL": "normal",
}


class CallHost(Protocol):
    """What a session needs from the connection that runs it."""

    @property
    def ari(self) -> Ari: ...

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def config(self) -> Config: ...

    @property
    def cdrs(self) -> CdrStore | None:
        """Where external calls' CDRs go; None writes none (tests of other things)."""

    @property
    def recordings(self) -> RecordingStore | None:
        """Where recorded segments go; None records nothing."""

    @property
    def geoip(self) -> GeoIp | None:
        """The country of a source address; None when no GeoIP database is configured."""

    @property
    def guards(self) -> Guards | None:
        """Concurrent-call slots and daily usage in the shared database; None: not kept."""

    @property
    def writer(self) -> EndWriter:
        """Where a call's end goes: its CDR and the release of its slot, in batches."""

    def claim(self, object_id: str, session: CallSession) -> None:
        """Route events about ``object_id`` (a channel or bridge we create) to ``session``."""

    def release(self, session: CallSession) -> None:
        """Forget every object of ``session``."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended: what the pipeline decided and what happened after."""

    call_id: str
    decision: str
    result: str
    reason: str | None = None
    cause: str | None = None
    answered: bool = False
    seconds: float = 0.0
    decision_seconds: float = 0.0
    """How long the pipeline took to decide (0 for an adopted call)."""
    client: str | None = None
    """The client's name, once the pipeline found one."""


def callee_leg_id(caller_id: str) -> str:
    """A fresh id for the leg a call dials: ``<caller id>-b<6 hex>``.

    Fresh, because a call decided again after a restart must not reuse the id of a
    leg Asterisk may still be destroying.
    """
    return f"{caller_id}-b{secrets.token_hex(3)}"


def caller_of_leg(channel_id: str) -> str | None:
    """The caller's channel id if ``channel_id`` is a leg we dialled, else None."""
    match = _LEG.fullmatch(channel_id)
    return match["caller"] if match else None


_LEG = re.compile(r"(?P<caller>.+)-b[0-9a-f]{6}")


def endpoint_of(channel: Json) -> str:
    """``PJSIP/acme-north-ana-00000001`` → ``acme-north-ana``."""
    name = str(channel.get("name", ""))
    technology, _, rest = name.partition("/")
    return rest.rsplit("-", 1)[0] if rest else technology


class Inbox:
    """A call's events in the order they came, for its one task to take: what
    ``asyncio.Queue`` does for this case (unbounded, one reader), without its bookkeeping.
    An event put while the reader is being cancelled stays for its next ``get``."""

    __slots__ = ("_events", "_waiter")

    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, event: Event) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Event:
        """The oldest event, once there is one."""
        while not self._events:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._events.popleft()


class CallSession:
    """One call, from StasisStart of its A leg to the hang-up of every leg."""

    def __init__(
        self,
        host: CallHost,
        channel: Json,
        origin: Origin | None,
        args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.args = tuple(args)
        """Its Stasis arguments: the origin, the source address, a trusted proxy's header."""
        self.a = str(channel["id"])
        self.call_id = self.a
        self.channel = channel
        self.origin = origin
        self.b: str | None = None
        self.bridge: str | None = None
        self.inbox = Inbox()
        self.gone: set[str] = set()
        self.started = time.monotonic()
        self.answered_at: float | None = None
        self.decision_seconds = 0.0
        self.result: Result | None = None
        self.ticket: Ticket | None = None
        self.recorder: CallRecorder | None = None
        self.slot = False
        """True while this call holds a concurrent-call slot."""
        self.start_time = datetime.now(UTC)
        self.answer_time: datetime | None = None
        self.by_operator = False
        """True once an operator asked for this call to be hung up."""
        self.handed_back = False
        """True once the dialplan dials the call (see :meth:`hand_back`)."""

    def deliver(self, event: Event) -> None:
        self.inbox.put(event)

    # The operator console's view and actions

    def snapshot(self) -> dict[str, Any]:
        """What the console shows of this call."""
        call = self.result.call if self.result is not None else None
        decision = self.result.decision if self.result is not None else None
        if self.handed_back:
            state = "dialplan"
        elif self.answered_at is not None:
            state = "answered"
        elif self.b is not None:
            state = "ringing"
        elif isinstance(decision, Reject):
            state = "refusing"
        else:
            state = "deciding"
        dialled = str((self.channel.get("dialplan") or {}).get("exten", ""))
        route = call.route if call is not None else None
        return {
            "id": self.call_id,
            "client": call.client.name if call is not None and call.client else None,
            "client_id": call.client.id if call is not None and call.client else None,
            "kind": route.kind if route is not None else None,
            "from": self._caller_number() if call is not None else endpoint_of(self.channel),
            "to": decision.number if isinstance(decision, Dial) else dialled,
            "state": state,
            "started_at": self.start_time.isoformat(),
            "answered_seconds": (
                round(time.monotonic() - self.answered_at, 1)
                if self.answered_at is not None
                else None
            ),
            "recordable": self.recorder is not None,
            "recording": self.recorder is not None and self.recorder.live is not None,
        }

    async def hang_up_by_operator(self) -> None:
        """End the call for an operator; its outcome says who ended it."""
        self.by_operator = True
        with contextlib.suppress(ChannelGone):
            await self.host.ari.hangup(self.a, "normal")

    def record_by_operator(self, start: bool) -> bool:
        """Ask the call to start (or stop) recording, in its own order of events; False
        when it cannot be recorded (not answered yet, or no recordings feature)."""
        if self.recorder is None or self.answered_at is None:
            return False
        self.deliver({"type": OPERATOR_RECORDING, "start": start})
        return True

    async def run(self) -> Outcome:
        """Decide and carry out; always tears down; logs the outcome once."""
        return await self._guarded(self._decide_and_execute)

    async def run_adopted(self, bridge: Json | None = None) -> Outcome:
        """A call found bridged after a reconnect: wait for either side to leave.

        The pipeline decides it again (it only reads) so that its CDR is priced as the
        first decision was; Asterisk's creation times give its start and answer."""
        self.answered_at = time.monotonic()
        # Its slot (if it is external) was taken by the server that decided it: held on.
        self.slot = self.host.guards is not None
        self.start_time = _asterisk_time(self.channel.get("creationtime")) or self.start_time
        self.answer_time = _asterisk_time((bridge or {}).get("creationtime")) or datetime.now(UTC)
        self.answered_at -= (datetime.now(UTC) - self.answer_time).total_seconds()
        try:
            await self.decide(self.start_time)
        except Exception as exc:  # the call goes on; only its CDR may be unpriced
            log.warning("call %s: adopted call not decided again: %s", self.call_id, exc)
        return await self._guarded(lambda: self._until_one_leaves("adopted bridged call"))

    async def _caller_left(self) -> bool:
        if self.a in self.gone:
            return True
        try:
            await self.host.ari.request("channels", "get", channelId=self.a)
        except ChannelGone:
            self.gone.add(self.a)
            return True
        except AriError:
            return False
        return False

    async def _decide_and_execute(self) -> Outcome:
        return await self.execute(await self.decide())

    async def _guarded(self, body: Callable[[], Awaitable[Outcome]]) -> Outcome:
        outcome: Outcome
        try:
            outcome = await body()
        except ChannelGone:
            outcome = self._left_during_setup()
        except AriError as exc:
            if await self._caller_left():  # a request raced the caller's hang-up
                outcome = self._left_during_setup()
            else:
                log.warning("call %s: %s", self.call_id, exc)
                outcome = self.outcome(
                    "-", "failed", Reason.SERVICE_UNAVAILABLE.value, "congestion"
                )
        except Exception:  # a bug or an unforeseen failure: still a defined end, logged
            log.exception("call %s: failed", self.call_id)
            with contextlib.suppress(AriError):
                await self.hang_up(self.a, "congestion")
            outcome = self.outcome("-", "failed", Reason.SERVICE_UNAVAILABLE.value, "congestion")
        finally:
            await self.teardown()
            if self.recorder is not None:
                await self.recorder.finish(self.host.config.teardown_timeout)
        log.info(
            "call %s: %s, %s%s",
            self.call_id,
            outcome.decision,
            outcome.result,
            f" ({outcome.reason}, cause {outcome.cause})" if outcome.reason else "",
        )
        await self._write_end(outcome)
        return outcome

    def _left_during_setup(self) -> Outcome:
        """The caller's leg went while a request on it was under way: the caller hung up,
        or an operator did."""
        if self.by_operator:
            return self.outcome("-", "hung up by operator before answer", None, "normal")
        return self.outcome("-", "caller left while the call was being set up")

    async def _write_end(self, outcome: Outcome) -> None:
        """Hand the call's CDR and slot to the batched writer; back once they are written."""
        cdr = None
        if self.host.cdrs is not None:
            try:
                cdr = self.cdr(outcome)
            except ValueError as exc:  # a CDR the table would refuse: a bug, logged
                log.error("call %s: CDR not written: %s", self.call_id, exc)
        release, self.slot = self.slot, False
        await self.host.writer.end(self.call_id, cdr, release=release)

    def cdr(self, outcome: Outcome, end: datetime | None = None) -> Cdr | None:
        """The CDR of an external call (refused ones too), or None for any other call."""
        if self.result is None:
            return None
        return call_cdr(
            self.result,
            outcome,
            start=self.start_time,
            answer=self.answer_time,
            end=end or datetime.now(UTC),
            server=self.host.config.server,
        )

    async def decide(self, at: datetime | None = None) -> Decision:
        """Run the pipeline on the call; a new call (no ``at``) takes its slot with its
        counters' read, an adopted one (decided again to price it) reads only."""
        caller = self.channel.get("caller") or {}
        dialplan = self.channel.get("dialplan") or {}
        came = arrival(self.args, endpoint_of(self.channel), self.host.config.trusted_proxies)
        source = came.source_ip
        geoip = self.host.geoip
        request = CallRequest(
            call_id=self.call_id,
            endpoint=came.endpoint,
            dialled=str(dialplan.get("exten", "")),
            at=at or self.start_time,
            caller_id=caller.get("number") or None,
            source_ip=source,
            source_country=geoip.country(source) if geoip is not None and source else None,
            origin=came.origin if came.origin is not None else self.origin,
            unidentified=came.unidentified,
        )
        started = time.perf_counter()
        if at is None:
            self.result, self.ticket = await decide_taking_slot(
                self.host.pipeline, self.host.guards, request
            )
            self.slot = self.ticket is not None and self.ticket.holds
        else:
            self.result = await self.host.pipeline.run(request)
        self.decision_seconds = time.perf_counter() - started
        return self.result.decision

    async def execute(self, decision: Decision) -> Outcome:
        if isinstance(decision, Reject):
            notified = decision.notify and await self.notify(decision)
            await self.hang_up(self.a, decision.cause.ari)
            result = "refused after its voice notification" if notified else "refused"
            return self.outcome("reject", result, decision.reason.value, decision.cause.ari)
        if isinstance(decision, RunService):
            # No service is wired yet: the code is answered like an unknown number.
            await self.hang_up(self.a, "unallocated")
            return self.outcome(f"service *{decision.code}", "no such service", None, "unallocated")
        if self.result is not None:
            admission = await admit(
                self.host.guards,
                self.host.config,
                self.result.call,
                decision,
                self.call_id,
                self.ticket,
            )
            self.slot = admission.slot
            if isinstance(admission.decision, Reject):
                return await self.execute(admission.decision)
            decision = admission.decision
        if self.host.config.hand_back and not needs_control(decision):
            return await self.hand_back(decision)
        return await self.dial(decision)

    async def hand_back(self, decision: Dial) -> Outcome:
        """Let Asterisk's dialplan dial (see :mod:`callcontrol.handback`): one variable,
        one continue; the call's end comes back as the ``h`` extension's StasisStart."""
        ari, config = self.host.ari, self.host.config
        label = f"dial {decision.target} {decision.endpoint}"
        directory = self.host.pipeline.directory
        unreachable = await dial_notice(directory, self.result)
        edge = await self._edge_leg(decision)
        no_relay = ""
        if edge is not None:
            no_relay, _ = await dial_notice(directory, self.result, Reason.SERVICE_UNAVAILABLE)
        await ari.set_variable(
            self.a,
            handback.VARIABLE,
            handback.pack(
                decision, config.dial_timeout, *unreachable, edge=edge, no_relay=no_relay
            ),
        )
        handed = time.monotonic()
        await ari.continue_in_dialplan(self.a, handback.CONTEXT)
        self.handed_back = True
        self.gone.add(self.a)  # the dialplan has it now: not ours to hang up
        while True:
            event = await self.next_event(None)
            if event is None or _subject(event) != self.a:
                continue
            if event["type"] == ENDED_UNSEEN:
                return self.outcome(label, "ended while Asterisk was not connected", None, "normal")
            args = list(map(str, event.get("args") or ()))
            if event["type"] == "StasisStart" and handback.is_end(args):
                elapsed = time.monotonic() - handed
                end = handback.ended(args, decision.max_duration, elapsed)
                if end.clamped:
                    log.warning("call %s: end report clamped: %s", self.call_id, end.clamped)
                result, cause, answered = handback.result_of(
                    end, decision.max_duration, self.by_operator
                )
                if answered:
                    self.answered_at = time.monotonic() - end.answered_seconds
                    self.answer_time = datetime.now(UTC) - timedelta(seconds=end.answered_seconds)
                return self.outcome(label, result, handback.reason_of(end), cause, answered)

    async def _edge_leg(self, decision: Dial) -> EdgeLeg | None:
        """In edge mode, the leg ``decision`` dials addressed through the edge; else None."""
        if self.host.config.mode != "edge":
            return None
        caller = self.result.call.client if self.result is not None else None
        return await edge_leg(self.host.pipeline.directory, caller, decision)

    async def notify(self, decision: Reject) -> bool:
        """Early media, never an answer: 183, the reason's locution in the caller's
        language, until it ends (or ``notice_timeout``). False if the caller left."""
        ari = self.host.ari
        playback = f"{self.call_id}-notice"
        await ari.progress(self.a)
        await ari.play(self.a, await self._notice_media(decision), decision.language, playback)
        deadline = time.monotonic() + self.host.config.notice_timeout
        while True:
            event = await self.next_event(deadline)
            if event is None:
                log.warning("call %s: notification did not finish in time", self.call_id)
                return True
            if event["type"] in GONE_EVENTS and _subject(event) == self.a:
                return False
            if (
                event["type"] == "PlaybackFinished"
                and (event.get("playback") or {}).get("id") == playback
            ):
                return True

    async def _notice_media(self, decision: Reject) -> str:
        client = self.result.call.client if self.result is not None else None
        sound = await notice_sound(self.host.pipeline.directory, client, decision)
        return f"sound:{sound}"

    async def dial(self, decision: Dial) -> Outcome:
        ari, config = self.host.ari, self.host.config
        self.b = callee_leg_id(self.call_id)
        self.host.claim(self.b, self)
        edge = await self._edge_leg(decision)
        endpoint = handback.dial_string(decision, edge)
        label = f"dial {decision.target} {decision.endpoint}"
        try:
            await ari.create(endpoint, config.app, self.b, "dialled")
        except AriError as exc:
            # 500 "Allocation failed": the endpoint has no contact to call (a phone that
            # never registered, or whose contact stopped answering its qualify).
            if exc.status != 500 or isinstance(exc, ChannelGone):
                raise
            return await self.unreachable(decision, label)
        # Asterisk refuses to dial (409) until the new leg has entered the app.
        deadline = time.monotonic() + config.teardown_timeout
        while True:
            event = await self.next_event(deadline)
            if event is None:
                return self.outcome(label, "dialled leg never entered the app", None, "congestion")
            ended = await self._ended_before_answer(event, label)
            if ended is not None:
                return ended
            if event["type"] == "StasisStart" and _subject(event) == self.b:
                break
        if decision.caller_id:
            # Dialling with caller=A makes A's caller id the B leg's connected line, which is
            # what chan_pjsip presents (From, P-Asserted-Identity): so A carries the decision's.
            await ari.set_caller(self.a, decision.caller_id, decision.caller_name)
        if edge is not None:
            await ari.set_variable(self.b, f"PJSIP_HEADER(add,{RELAY_SET_HEADER})", edge.header)
        if decision.diversion:
            await ari.set_variable(
                self.b,
                "PJSIP_HEADER(add,Diversion)",
                f"<tel:{decision.diversion}>;reason=unconditional",
            )
        await ari.dial(self.b, self.a, round(config.dial_timeout))
        ringing = False
        # Asterisk ends the dial after dial_timeout; the margin only guards a lost event.
        deadline = time.monotonic() + config.dial_timeout + 10
        while True:
            event = await self.next_event(deadline)
            if event is None:
                return self.outcome(label, "no answer (no event from Asterisk)", None, "no_answer")
            ended = await self._ended_before_answer(event, label)
            if ended is not None:
                return ended
            if event["type"] != "Dial" or (event.get("peer") or {}).get("id") != self.b:
                continue
            status = str(event.get("dialstatus", ""))
            if status == "RINGING" and not ringing:
                ringing = True
                await ari.ring(self.a)
            elif status == "ANSWER":
                return await self.bridged(label, decision.max_duration, decision)
            elif status in DIAL_FAILURES:
                cause = DIAL_FAILURES[status]
                await self.hang_up(self.a, cause)
                return self.outcome(label, "callee failed", None, cause)

    async def unreachable(self, decision: Dial, label: str) -> Outcome:
        """Nothing to call at ``decision``'s endpoint: why, then 480."""
        log.info("call %s: %s has no reachable contact", self.call_id, decision.endpoint)
        return await self.dial_failed(
            label,
            Reason.DESTINATION_UNREACHABLE,
            handback.UNREACHABLE_CAUSE,
            handback.UNREACHABLE_RESULT,
        )

    async def relay_unavailable(self, label: str) -> Outcome:
        """The edge could not anchor the callee's leg (no live media relay in its set): why,
        then 503."""
        log.info("call %s: the edge has no media relay for the callee's leg", self.call_id)
        reason = Reason.SERVICE_UNAVAILABLE
        return await self.dial_failed(label, reason, reason.cause().ari, NO_RELAY_RESULT)

    async def dial_failed(self, label: str, reason: Reason, cause: str, result: str) -> Outcome:
        """A dial that found no way to the callee for ``reason``: the caller hears why (when
        its client has voice notifications) and is hung up with ``cause``; the outcome and
        CDR say the same (``result``)."""
        if self.result is not None:
            notice = reject(self.result.call, reason)
            if notice.notify and not await self.notify(notice):
                return self.outcome(label, "caller hung up before answer", None, "normal")
        await self.hang_up(self.a, cause)
        return self.outcome(label, result, reason.value, cause)

    async def _ended_before_answer(self, event: Event, label: str) -> Outcome | None:
        """The outcome when ``event`` says either leg left before the answer, else None."""
        if event["type"] not in GONE_EVENTS:
            return None
        subject = _subject(event)
        if subject == self.a:
            if self.by_operator:
                return self.outcome(label, "hung up by operator before answer", None, "normal")
            return self.outcome(label, "caller hung up before answer", None, "normal")
        if subject == self.b and event["type"] == "ChannelDestroyed":
            # Only ChannelDestroyed carries the dialled leg's real cause: the hang-up request
            # of a dial timeout says 32 (soft), and StasisEnd says nothing.
            if self.host.config.mode == "edge" and _cause_of(event) == NO_RELAY_CAUSE:
                return await self.relay_unavailable(label)
            cause = _reason_of(event)
            await self.hang_up(self.a, cause)
            return self.outcome(label, "callee failed", None, cause)
        return None

    async def bridged(
        self, label: str, max_duration: int | None = None, decision: Dial | None = None
    ) -> Outcome:
        """The callee answered: answer the caller, bridge both, wait for either to leave
        (or for ``max_duration`` seconds, what a prepaid balance pays, to run out)."""
        assert self.b is not None
        ari = self.host.ari
        await ari.answer(self.a)
        self.answered_at = time.monotonic()
        self.answer_time = datetime.now(UTC)
        self.bridge = f"{self.call_id}-bridge"
        self.host.claim(self.bridge, self)
        if decision is not None and decision.recording is not None:
            self.recorder = self._recorder(decision, decision.recording)
        dtmf = self.recorder is not None and self.recorder.plan.dtmf_code is not None
        await ari.create_bridge(self.bridge, dtmf_events=dtmf)
        await ari.add_to_bridge(self.bridge, [self.a, self.b])
        if self.recorder is not None:
            await self.recorder.answered()
        return await self._until_one_leaves(label, max_duration)

    def _recorder(self, decision: Dial, plan: RecordingPlan) -> CallRecorder | None:
        store, result = self.host.recordings, self.result
        if store is None or result is None:
            return None
        client = result.call.client
        if client is None:
            return None
        assert self.bridge is not None
        assert self.b is not None
        call = result.call
        callee = None
        if isinstance(call.route, Internal | InterVpbx):
            callee = call.route.extension.user
        elif isinstance(call.route, Inbound):
            callee = call.route.user
        parties = {
            self.a: Party(call.user.id, call.user.name) if call.user else Party(None, None),
            self.b: Party(callee.id, callee.name) if callee else Party(None, None),
        }
        facts = CallFacts(
            call_id=self.call_id,
            client_id=client.id,
            client_name=client.name,
            caller=self._caller_number(),
            callee=decision.number,
            language=call.language,
        )
        return CallRecorder(self.host.ari, store, self.bridge, plan, facts, parties)

    def _caller_number(self) -> str:
        assert self.result is not None
        return caller_number(self.result)

    async def _until_one_leaves(self, label: str, max_duration: int | None = None) -> Outcome:
        deadline = None if max_duration is None else self.answered_at_or_now() + max_duration
        while True:
            event = await self.next_event(deadline)
            if event is None:  # the balance's duration ran out
                # Timed now: the requests that end the call must not be billed to it.
                ran_out = self.outcome(label, "answered, balance ran out", None, "normal", True)
                if self.recorder is not None:
                    await self.recorder.stop()
                await self.hang_up(self.a, "normal")
                await self.hang_up(self.b, "normal")
                return ran_out
            if self.recorder is not None and await self.recorder.on_event(event):
                continue
            if event["type"] == OPERATOR_RECORDING:
                if self.recorder is not None:
                    await (self.recorder.start(None) if event["start"] else self.recorder.stop())
                continue
            subject = _subject(event)
            if event["type"] in GONE_EVENTS and subject in (self.a, self.b):
                if self.recorder is not None:
                    await self.recorder.stop()
                who = "caller" if subject == self.a else "callee"
                who = "operator" if self.by_operator else who
                other = self.b if subject == self.a else self.a
                await self.hang_up(other, "normal")
                return self.outcome(label, f"answered, {who} hung up", None, "normal", True)

    def answered_at_or_now(self) -> float:
        return self.answered_at if self.answered_at is not None else time.monotonic()

    async def next_event(self, deadline: float | None) -> Event | None:
        """The next event, or None once ``deadline`` (monotonic) passes."""
        if deadline is None:
            event = await self.inbox.get()
        else:
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    event = await self.inbox.get()
            except TimeoutError:
                return None
        if event["type"] in GONE_EVENTS:
            # A channel being hung up needs no hang-up request from us any more.
            self.gone.add(_subject(event) or "")
        return event

    async def hang_up(self, channel_id: str | None, reason: str) -> None:
        """Hang up ``channel_id`` unless it already left; a gone channel is not an error."""
        if channel_id is None or channel_id in self.gone:
            return
        with contextlib.suppress(ChannelGone):
            await self.host.ari.hangup(channel_id, reason)
        self.gone.add(channel_id)

    async def teardown(self) -> None:
        """Hang up what is left and destroy the bridge: shielded and time-boxed."""
        left = [channel for channel in (self.b, self.a) if channel and channel not in self.gone]
        if not left and self.bridge is None:  # a call handed back, or hung up by its caller
            self.host.release(self)
            return
        steps: list[Awaitable[Any]] = [self.hang_up(channel, "normal") for channel in left]
        if self.bridge is not None:
            steps.append(self._destroy_bridge(self.bridge))
        try:
            async with asyncio.timeout(self.host.config.teardown_timeout):
                await asyncio.shield(asyncio.gather(*steps, return_exceptions=True))
        except TimeoutError:
            log.warning("call %s: teardown did not finish in time", self.call_id)
        finally:
            self.host.release(self)

    async def _destroy_bridge(self, bridge_id: str) -> None:
        with contextlib.suppress(ChannelGone):
            await self.host.ari.destroy_bridge(bridge_id)

    def outcome(
        self,
        decision: str,
        result: str,
        reason: str | None = None,
        cause: str | None = None,
        answered: bool = False,
    ) -> Outcome:
        seconds = time.monotonic() - self.answered_at if self.answered_at else 0.0
        client = self.result.call.client if self.result is not None else None
        return Outcome(
            self.call_id,
            decision,
            result,
            reason,
            cause,
            answered,
            seconds,
            self.decision_seconds,
            client.name if client is not None else None,
        )


def _subject(event: Event) -> str | None:
    channel = event.get("channel")
    return str(channel["id"]) if isinstance(channel, dict) and "id" in channel else None


def _cause_of(event: Event) -> int:
    """A ChannelDestroyed/HangupRequest's Q.850 cause (16, normal clearing, when it has none)."""
    return int(event.get("cause", 16) or 16)


def _reason_of(event: Event) -> str:
    """The ARI hang-up reason matching a ChannelDestroyed/HangupRequest cause (Q.850)."""
    return _Q850.get(_cause_of(event), "normal")


_Q850: dict[int, str] = {
    1: "unallocated",
    16: "normal",
    17: "busy",
    18: "no_answer",
    19: "no_answer",
    21: "rejected",
    27: "congestion",
    28: "number_incomplete",
    34: "congestion",
    38: "failure",
    41: "congestion",
    42: "congestion",
}


def _asterisk_time(value: object) -> datetime | None:
    """An ARI timestamp (``2026-11-26T01:02:03.456+0000``) as an aware datetime."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    except ValueError:
        return None


def _loop_time(deadline: float) -> float:
    """A ``time.monotonic`` deadline on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


async def notice_sound(directory: Directory, client: ClientView | None, decision: Reject) -> str:
    """The sound a refusal plays: the client's own audio for the locution in the caller's
    language, if it has one (installed with ``callcontrol locutions install``), else the
    platform's; the same for both fronts."""
    if client is not None:
        overrides = await directory.locution_overrides(client)
        if (decision.locution, decision.language) in overrides:
            return override_sound(client.id, decision.locution)
    return sound_uri(decision.locution).removeprefix("sound:")


async def dial_notice(
    directory: Directory, result: Result | None, reason: Reason = Reason.DESTINATION_UNREACHABLE
) -> tuple[str, str]:
    """The sound (empty: none) and language of what a caller hears when its dial fails for
    ``reason`` (the endpoint has no contact to call; the edge has no media relay for the
    leg), for the dialplan to play (both fronts)."""
    if result is None:
        return "", "en"
    notice = reject(result.call, reason)
    sound = await notice_sound(directory, result.call.client, notice) if notice.notify else ""
    return sound, notice.language


def caller_number(result: Result) -> str:
    """Who called, as CDRs and recordings name them: a terminal's user by its extension
    (its SIP caller id is the endpoint), a carrier's caller by the number it sent."""
    call = result.call
    number = (
        (call.user.extension if call.user else None)
        or call.request.caller_id
        or call.request.endpoint
    )
    return scrubbed(number)[:64]


def call_cdr(
    result: Result,
    outcome: Outcome,
    *,
    start: datetime,
    answer: datetime | None,
    end: datetime,
    server: str,
) -> Cdr | None:
    """The CDR of an external call (refused ones too), or None for any other call; the
    same whichever front (ARI or FastAGI) carried the call."""
    if result.call.client is None or not result.call.is_external:
        return None
    call, decision, client = result.call, result.decision, result.call.client
    route = call.route
    ddi: str | None
    duration = int(outcome.seconds + 0.5) if outcome.answered else 0
    billing = decision.billing if isinstance(decision, Dial) else None
    if isinstance(route, Inbound):
        callee, ddi = route.ddi.e164, route.ddi.e164
        caller = scrubbed(call.request.caller_id or "anonymous")
    else:
        assert isinstance(route, External)
        callee = route.e164
        ddi = call.ddi.ddi if call.ddi is not None else None
        caller = caller_number(result)
    return Cdr(
        call_id=scrubbed(call.request.call_id),
        client_id=client.id,
        caller=caller[:64],
        callee=callee,
        direction=call.direction,
        ddi=ddi.lstrip("+") if ddi else None,
        start_time=start,
        answer_time=answer if outcome.answered else None,
        end_time=end,
        duration=duration,
        billed_seconds=billed_seconds(billing.rate, duration) if billing else 0,
        price=charge(billing.rate, duration, answered=outcome.answered) if billing else None,
        currency=billing.currency if billing else None,
        rating_plan=billing.profile.plan.name if billing else None,
        matched_prefix=billing.rate.prefix if billing else None,
        hangup_cause=outcome.cause or "normal",
        outcome_reason=outcome.reason,
        server=server,
        emergency=call.is_emergency,
    )
