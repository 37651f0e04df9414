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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from callcontrol.ari_ import Ari, Event, Json
from callcontrol.config import Config
from dialplan.call import CallRequest, Origin
from dialplan.decisions import Decision, Dial, Reject, RunService
from dialplan.errors import AriError, ChannelGone
from dialplan.pipeline import Pipeline
from dialplan.reasons import Reason

log = logging.getLogger("callcontrol.calls")

GONE_EVENTS = frozenset({"StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"})

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


class CallSession:
    """One call, from StasisStart of its A leg to the hang-up of every leg."""

    def __init__(self, host: CallHost, channel: Json, origin: Origin | None) -> None:
        self.host = host
        self.a = str(channel["id"])
        self.call_id = self.a
        self.channel = channel
        self.origin = origin
        self.b: str | None = None
        self.bridge: str | None = None
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.gone: set[str] = set()
        self.started = time.monotonic()
        self.answered_at: float | None = None
        self.decision_seconds = 0.0

    def deliver(self, event: Event) -> None:
        self.queue.put_nowait(event)

    async def run(self) -> Outcome:
        """Decide and carry out; always tears down; logs the outcome once."""
        return await self._guarded(self._decide_and_execute)

    async def run_adopted(self) -> Outcome:
        """A call found bridged after a reconnect: wait for either side to leave."""
        self.answered_at = time.monotonic()
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
            outcome = self.outcome("-", "caller left while the call was being set up")
        except AriError as exc:
            if await self._caller_left():  # a request raced the caller's hang-up
                outcome = self.outcome("-", "caller left while the call was being set up")
            else:
                log.warning("call %s: %s", self.call_id, exc)
                outcome = self.outcome(
                    "-", "failed", Reason.SERVICE_UNAVAILABLE.value, "congestion"
                )
        finally:
            await self.teardown()
        log.info(
            "call %s: %s, %s%s",
            self.call_id,
            outcome.decision,
            outcome.result,
            f" ({outcome.reason}, cause {outcome.cause})" if outcome.reason else "",
        )
        return outcome

    async def decide(self) -> Decision:
        caller = self.channel.get("caller") or {}
        dialplan = self.channel.get("dialplan") or {}
        request = CallRequest(
            call_id=self.call_id,
            endpoint=endpoint_of(self.channel),
            dialled=str(dialplan.get("exten", "")),
            at=datetime.now(UTC),
            caller_id=caller.get("number") or None,
            origin=self.origin,
        )
        started = time.perf_counter()
        result = await self.host.pipeline.run(request)
        self.decision_seconds = time.perf_counter() - started
        return result.decision

    async def execute(self, decision: Decision) -> Outcome:
        if isinstance(decision, Reject):
            await self.hang_up(self.a, decision.cause.ari)
            return self.outcome("reject", "refused", decision.reason.value, decision.cause.ari)
        if isinstance(decision, RunService):
            # No service is wired yet: the code is answered like an unknown number.
            await self.hang_up(self.a, "unallocated")
            return self.outcome(f"service *{decision.code}", "no such service", None, "unallocated")
        return await self.dial(decision)

    async def dial(self, decision: Dial) -> Outcome:
        ari, config = self.host.ari, self.host.config
        self.b = callee_leg_id(self.call_id)
        self.host.claim(self.b, self)
        endpoint = (
            f"PJSIP/{decision.endpoint}"
            if decision.target == "terminal"
            else f"PJSIP/{decision.number}@{decision.endpoint}"
        )
        label = f"dial {decision.target} {decision.endpoint}"
        await ari.create(endpoint, config.app, self.b, "dialled")
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
                return await self.bridged(label)
            elif status in DIAL_FAILURES:
                cause = DIAL_FAILURES[status]
                await self.hang_up(self.a, cause)
                return self.outcome(label, "callee failed", None, cause)

    async def _ended_before_answer(self, event: Event, label: str) -> Outcome | None:
        """The outcome when ``event`` says either leg left before the answer, else None."""
        if event["type"] not in GONE_EVENTS:
            return None
        subject = _subject(event)
        if subject == self.a:
            return self.outcome(label, "caller hung up before answer", None, "normal")
        if subject == self.b and event["type"] == "ChannelDestroyed":
            # Only ChannelDestroyed carries the dialled leg's real cause: the hang-up request
            # of a dial timeout says 32 (soft), and StasisEnd says nothing.
            cause = _reason_of(event)
            await self.hang_up(self.a, cause)
            return self.outcome(label, "callee failed", None, cause)
        return None

    async def bridged(self, label: str) -> Outcome:
        """The callee answered: answer the caller, bridge both, wait for either to leave."""
        assert self.b is not None
        ari = self.host.ari
        await ari.answer(self.a)
        self.answered_at = time.monotonic()
        self.bridge = f"{self.call_id}-bridge"
        self.host.claim(self.bridge, self)
        await ari.create_bridge(self.bridge)
        await ari.add_to_bridge(self.bridge, [self.a, self.b])
        return await self._until_one_leaves(label)

    async def _until_one_leaves(self, label: str) -> Outcome:
        while True:
            event = await self.next_event(None)
            assert event is not None
            subject = _subject(event)
            if event["type"] in GONE_EVENTS and subject in (self.a, self.b):
                who = "caller" if subject == self.a else "callee"
                other = self.b if subject == self.a else self.a
                await self.hang_up(other, "normal")
                return self.outcome(label, f"answered, {who} hung up", None, "normal", True)

    async def next_event(self, deadline: float | None) -> Event | None:
        """The next event, or None once ``deadline`` (monotonic) passes."""
        if deadline is None:
            event = await self.queue.get()
        else:
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    event = await self.queue.get()
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
        steps: list[Awaitable[Any]] = [
            self.hang_up(self.b, "normal"),
            self.hang_up(self.a, "normal"),
        ]
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
        return Outcome(
            self.call_id, decision, result, reason, cause, answered, seconds, self.decision_seconds
        )


def _subject(event: Event) -> str | None:
    channel = event.get("channel")
    return str(channel["id"]) if isinstance(channel, dict) and "id" in channel else None


def _reason_of(event: Event) -> str:
    """The ARI hang-up reason matching a ChannelDestroyed/HangupRequest cause (Q.850)."""
    return _Q850.get(int(event.get("cause", 16) or 16), "normal")


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


def _loop_time(deadline: float) -> float:
    """A ``time.monotonic`` deadline on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
