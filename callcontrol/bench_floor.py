"""The benchmark's floor (DESIGN §5): the same hook and call flow as callcontrol, with a
fixed decision and nothing else: no pipeline, no database.

``FloorAri`` answers every StasisStart with the packed decision and a continue (the
hand-back, two requests) and takes the ``h`` extension's report; ``FloorAgi`` answers
every ``decide`` with one ``SET VARIABLE CC`` and reads every ``end``. Whatever
callcontrol spends beyond these is the price of its own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from panoramisk import Manager
from panoramisk.message import Message

from callcontrol import handback
from callcontrol.ari_ import Ari, Event
from callcontrol.asterisk.render import AmiUser
from callcontrol.errors import AriError, AriUnavailable
from callcontrol.fastagi import quoted, read_headers
from dialplan.decisions import Dial
from dialplan.errors import CallControlError

log = logging.getLogger("callcontrol.bench")


def fixed_decision(carrier: str, number: str, caller_id: str, ring_seconds: float) -> str:
    """The packed decision every floor call gets: dial ``number`` at ``carrier``."""
    return handback.pack(Dial(carrier, "carrier", number, caller_id=caller_id), ring_seconds)


class FloorAri:
    """A minimal ARI app: hand every call back with the same decision."""

    def __init__(self, url: str, user: str, password: str, app: str, packed: str) -> None:
        self.url, self.user, self.password, self.app = url, user, password, app
        self.packed = packed
        self.requests = 0
        self.ended = 0
        self._ari: Ari | None = None
        self._events: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._ari = await Ari.connect(self.url, self.user, self.password)
        self._events = asyncio.create_task(self._ari.events(self.app, self._deliver))
        for _ in range(100):  # the app exists once its websocket is up
            with contextlib.suppress(AriError):
                await self._ari.filter_events(self.app, ("StasisStart",))
                break
            await asyncio.sleep(0.05)
        self.connected.set()

    def _deliver(self, event: Event) -> None:
        if event.get("type") != "StasisStart":
            return
        args = list(map(str, event.get("args") or ()))
        if handback.is_end(args):
            self.ended += 1
            return
        task = asyncio.create_task(self._hand_back(str(event["channel"]["id"])))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_back(self, channel_id: str) -> None:
        assert self._ari is not None
        try:
            self.requests += 2
            await self._ari.set_variable(channel_id, handback.VARIABLE, self.packed)
            await self._ari.continue_in_dialplan(channel_id, handback.CONTEXT)
        except (AriError, AriUnavailable) as exc:
            log.warning("floor: call %s not handed back: %s", channel_id, exc)

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ari is not None:
            await self._ari.close()
        if self._events is not None:
            self._events.cancel()
            with contextlib.suppress(asyncio.CancelledError, AriUnavailable):
                await self._events
        self.connected.clear()


class FloorAgi:
    """A minimal FastAGI server: one ``SET VARIABLE CC`` per call, ends read and dropped."""

    def __init__(self, packed: str) -> None:
        self.command = f"SET VARIABLE {handback.VARIABLE} {quoted(packed)}\n".encode()
        self.requests = 0
        self.ended = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; the port (useful with 0)."""
        self._server = await asyncio.start_server(self._connection, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            headers = await read_headers(reader, 5.0)
            if headers is None:
                return
            if headers.get("agi_network_script", "").partition("?")[0] == "decide":
                self.requests += 1
                writer.write(self.command)
                await writer.drain()
                await reader.readline()  # 200 result=1
            else:
                self.ended += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


END_EVENT = "CallControlEnd"
"""The UserEvent a dialled call's ``h`` extension sends while ``CC_END_VIA`` is ``ami``."""


class FloorAmiEnds:
    """The FastAGI floor's end reports over AMI instead (``bench calls --ami-floor``): while
    connected, the dialplan's global ``CC_END_VIA`` is ``ami``, so every dialled call ends
    with a ``UserEvent`` on this login (which reads user events only) rather than with a
    second AGI connection. ``ended`` counts them."""

    def __init__(self, host: str, login: AmiUser) -> None:
        self.host, self.login = host, login
        self.ended = 0
        self._manager: Manager | None = None

    async def start(self, within: float = 10.0) -> None:
        """Log in and route the ends here; a login refused or unanswered within ``within``
        s is one line (``CallControlError``)."""
        logged_in: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def on_login(manager: Manager) -> None:
            if not logged_in.done():
                logged_in.set_result(True)

        manager = Manager(
            host=self.host,
            port=self.login.port,
            username=self.login.user,
            secret=self.login.password,
            events="user",
            ping_delay=3600,  # no pings: they would be the app's work, not the reports'
            on_login=on_login,
            log=logging.getLogger("callcontrol.bench.ami"),  # masked by callcontrol.masking
        )
        manager.register_event("UserEvent", self._event)
        self._manager = manager
        try:
            async with asyncio.timeout(within):
                await manager.connect()
                await logged_in
        except (OSError, TimeoutError) as exc:
            manager.close()
            self._manager = None
            raise CallControlError(
                f"bench: no AMI login on {self.host}:{self.login.port} within {within:g} s"
                f" ({type(exc).__name__})"
            ) from exc
        await self._route("ami")

    def _event(self, manager: Manager, event: Message) -> None:
        if event.get("UserEvent") == END_EVENT:
            self.ended += 1

    async def _route(self, via: str) -> None:
        assert self._manager is not None
        answer = await self._manager.send_action(
            {"Action": "Setvar", "Variable": "CC_END_VIA", "Value": via}
        )
        if not answer.success:
            raise CallControlError(f"bench: AMI refused to set CC_END_VIA: {answer}")

    async def stop(self, quiet: float = 0.3, within: float = 5.0) -> None:
        """Once no end has come for ``quiet`` s (the last calls' ``h`` extensions run after
        their BYE), or after ``within`` s: route the ends back to AGI and log off."""
        if self._manager is None:
            return
        try:
            until = time.monotonic() + within
            heard = -1
            while heard != self.ended and time.monotonic() < until:
                heard = self.ended
                await asyncio.sleep(quiet)
            await self._route("agi")
        finally:
            self._manager.close()
            self._manager = None
