"""``callcontrol run``: the ARI application of one application server.

One :class:`AsteriskLink` per Asterisk keeps the events websocket up (reconnect
with backoff), routes each event to the session that owns its channel or bridge
(one task and ordered queue per call), re-adopts channels still in the app after
a reconnect or restart, and on SIGTERM stops taking calls and lets live calls
finish up to ``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol import handback
from callcontrol.ari_ import Ari, Event, Json
from callcontrol.config import Config
from callcontrol.console_api import ConsoleApi, check_exposure
from callcontrol.errors import AriError, AriUnavailable, ChannelGone
from callcontrol.fastagi import AgiFront
from callcontrol.geoip import GeoIp
from callcontrol.guards import Guards
from callcontrol.masking import shown_url
from callcontrol.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from callcontrol.metrics import Metrics
from callcontrol.session import ENDED_UNSEEN, CallSession, Outcome, caller_of_leg
from callcontrol.watch import ConfigWatcher
from callcontrol.writer import EndWriter, own_writer
from dialplan.call import Origin
from dialplan.directory import Directory
from dialplan.errors import CallControlError, ConfigError
from dialplan.pipeline import Pipeline
from models.cdrs import CdrStore
from models.db import first_line
from models.directory import SqlDirectory
from models.recordings import RecordingStore
from models.slots import reconcile

log = logging.getLogger("callcontrol.service")

ENDED_REMEMBERED = 10_000
"""How many ids of finished calls' objects a link remembers (see ``release``)."""

LinkState = Literal["connecting", "connected", "disconnected", "stopped"]

EVENTS: tuple[str, ...] = (
    "StasisStart",
    "ChannelHangupRequest",
    "ChannelDestroyed",
    "Dial",
    "ChannelDtmfReceived",
    "PlaybackStarted",
    "PlaybackFinished",
    "RecordingStarted",
    "RecordingFinished",
    "RecordingFailed",
)
"""The only events the service acts on; Asterisk is asked to send nothing else. Not
StasisEnd: a call leaves the app either hung up (ChannelHangupRequest and
ChannelDestroyed say so) or handed back by the app itself, so each call's StasisEnd (two
for a handed-back call) would be one more event for Asterisk to write and the app to read."""


def owner_ids(event: Event) -> list[str]:
    """Every channel or bridge id an event is about, most specific first."""
    ids: list[str] = []
    for field in ("peer", "channel", "caller", "bridge"):
        value = event.get(field)
        if isinstance(value, dict) and "id" in value:
            ids.append(str(value["id"]))
    for field in ("playback", "recording"):
        value = event.get(field)
        if isinstance(value, dict):
            kind, _, target = str(value.get("target_uri", "")).partition(":")
            if kind in ("channel", "bridge"):
                ids.append(target)
    return ids


class AsteriskLink:
    """The calls of one Asterisk: events in, one task per call, reconnect when dropped."""

    def __init__(
        self,
        url: str,
        config: Config,
        pipeline: Pipeline,
        on_outcome: Callable[[Outcome], None] | None = None,
        cdrs: CdrStore | None = None,
        recordings: RecordingStore | None = None,
        geoip: GeoIp | None = None,
        guards: Guards | None = None,
        writer: EndWriter | None = None,
    ) -> None:
        self.url = url
        self.shown = shown_url(url)
        """The URL as logs show it (no credentials)."""
        self.config = config
        self.pipeline = pipeline
        self.on_outcome = on_outcome
        self.cdrs = cdrs
        self.recordings = recordings
        self.geoip = geoip
        self.guards = guards
        self._writer = writer
        self.state: LinkState = "connecting"
        self.accepting = True
        self.owners: dict[str, CallSession] = {}
        self.sessions: set[CallSession] = set()
        self.ended: OrderedDict[str, None] = OrderedDict()
        """Ids of the channels and bridges of calls this link finished, most recent last."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._ari: Ari | None = None
        self._stopped = asyncio.Event()
        self.connected = asyncio.Event()
        """Set while the events websocket is up."""
        self.adopted = asyncio.Event()
        """Set once the calls found in the app at the last connect are taken over."""
        self.journal: list[tuple[str, dict[str, Any]]] | None = None
        """Give a list to record every ARI request of this link (see ``Ari.journal``)."""

    @property
    def writer(self) -> EndWriter:
        """Where calls' ends go (CDRs, slot releases), in batches: the one given, else one
        of its own, made at first use from ``cdrs`` and ``guards`` as they are then."""
        self._writer = own_writer(self._writer, self.cdrs, self.guards)
        return self._writer

    @property
    def calls(self) -> int:
        """Calls in progress on this Asterisk."""
        return len(self.sessions)

    @property
    def ari(self) -> Ari:
        assert self._ari is not None, "not connected"
        return self._ari

    # CallHost

    def claim(self, object_id: str, session: CallSession) -> None:
        self.owners[object_id] = session

    def release(self, session: CallSession) -> None:
        # A session claims only its channels and its bridge: no scan of every live call's.
        for object_id in (session.a, session.b, session.bridge):
            if object_id is None or self.owners.get(object_id) is not session:
                continue  # claimed again since by another call
            del self.owners[object_id]
            # Its channels may still be listed for a moment while Asterisk destroys them:
            # adoption must not take them for calls left by an earlier connection.
            self.ended[object_id] = None
        while len(self.ended) > ENDED_REMEMBERED:
            self.ended.popitem(last=False)
        self.sessions.discard(session)

    # Connection

    async def run(self) -> None:
        """Connect, adopt, stream events; reconnect with backoff until stopped."""
        delay = self.config.reconnect_min
        while not self._stopped.is_set():
            self.state = "connecting"
            try:
                self._ari = await Ari.connect(
                    self.url, self.config.ari_user, self.config.ari_password
                )
            except AriUnavailable as exc:
                self.state = "disconnected"
                log.warning("ARI %s unavailable, retrying in %.1f s: %s", self.shown, delay, exc)
                await self._sleep(delay)
                delay = min(delay * 2, self.config.reconnect_max)
                continue
            if self._stopped.is_set():  # stopped while connecting: nobody would close it
                await self._ari.close()
                break
            self.ari.journal = self.journal
            delay = self.config.reconnect_min
            self.state = "connected"
            self.connected.set()
            log.info("ARI %s connected as app %s", self.shown, self.config.app)
            adoption = asyncio.create_task(self._adopt())
            try:
                await self.ari.events(self.config.app, self.deliver)
            except AriUnavailable as exc:
                log.warning("ARI %s events stopped: %s", self.shown, exc)
            finally:
                adoption.cancel()
                self.connected.clear()
                await self.ari.close()
            self.state = "disconnected"
            if not self._stopped.is_set():
                log.warning("ARI %s disconnected; reconnecting", self.shown)
                await self._sleep(delay)
        self.state = "stopped"

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    def deliver(self, event: Event) -> None:
        """Called inline by the websocket reader: route, never await."""
        channel = event.get("channel")
        if isinstance(channel, dict) and "peer" not in event:
            # Most events of a call are about one channel, which is then the most specific
            # id: looked up first, without listing the others.
            session = self.owners.get(channel.get("id", ""))
            if session is not None:
                session.deliver(event)
                return
            if event.get("type") == "StasisStart":  # about its channel only: a new call
                self._stasis_start(event, channel)
                return
        # Otherwise the most specific of its ids that a call owns (a Dial's peer, a
        # bridge's, a playback's or recording's target); none: not an event of ours.
        for object_id in owner_ids(event):
            session = self.owners.get(object_id)
            if session is not None:
                session.deliver(event)
                return

    def _stasis_start(self, event: Event, channel: Json) -> None:
        """A channel no call owns entered the app: a new call, or the end of one."""
        args = list(map(str, event.get("args") or ()))
        if handback.is_end(args):  # handed back by an earlier run of this server
            self._spawn(self._ended_unknown(str(channel["id"])), f"end-{channel['id']}")
            return
        self.start(channel, args)

    def start(self, channel: Json, args: list[str]) -> None:
        """A new call; ``args`` are its Stasis arguments: origin, source address, header."""
        if not self.accepting:
            self._spawn(self._refuse(str(channel["id"])), f"refuse-{channel['id']}")
            return
        origin = args[0] if args else None
        known: Origin | None = (
            "terminal" if origin == "terminal" else "carrier" if origin == "carrier" else None
        )
        session = CallSession(self, channel, known, args)
        self.claim(session.a, session)
        self.sessions.add(session)
        self._spawn(self._report(session.run()), f"call-{session.a}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a task of this link; ``stop`` waits for (then cancels) it."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, outcome: Awaitable[Outcome]) -> None:
        finished = await outcome
        if self.on_outcome is not None:
            self.on_outcome(finished)

    async def _ended_unknown(self, channel_id: str) -> None:
        """The end of a call this process did not hand back (it was restarted meanwhile):
        nothing to price it by, but its slot, if it held one, is freed."""
        log.warning("call %s: ended unknown to this process: no CDR written", channel_id)
        await self.writer.end(channel_id, None, release=True)

    async def _refuse(self, channel_id: str) -> None:
        """While stopping: a new call is turned away so a proxy can try another server."""
        with contextlib.suppress(ChannelGone):
            await self.ari.hangup(channel_id, "congestion")
        log.info("call %s: refused, server stopping", channel_id)

    async def _filter(self) -> None:
        """Once the app exists (the websocket registers it), narrow its events."""
        for _ in range(20):
            try:
                if not await self.ari.filter_events(self.config.app, EVENTS):
                    log.info("ARI %s cannot filter events; receiving all", self.shown)
                return
            except ChannelGone:  # 404: the app is not registered yet
                await asyncio.sleep(0.05)
            except AriError as exc:
                log.warning("ARI %s: event filter refused: %s", self.shown, exc)
                return

    async def _adopt(self) -> None:
        """Take over channels already in our app (after a reconnect or a restart)."""
        self.adopted.clear()
        try:
            await self._take_over()
        finally:
            self.adopted.set()

    async def _take_over(self) -> None:
        await self._filter()
        try:
            listed_at = datetime.now(UTC)
            channels = await self.ari.channels()
            bridges = await self.ari.bridges()
        except AriError as exc:
            log.warning("ARI %s: could not list channels to adopt: %s", self.shown, exc)
            return
        await self._reconcile_slots(channels, listed_at)
        listed = {str(channel["id"]) for channel in channels}
        for session in list(self.sessions):
            if session.handed_back and session.a not in listed:  # its end went unseen
                session.deliver({"type": ENDED_UNSEEN, "channel": {"id": session.a}})
        ours = {
            str(c["id"]): c
            for c in channels
            if (c.get("dialplan") or {}).get("app_name") == "Stasis"
            and str((c.get("dialplan") or {}).get("app_data", "")).split(",")[0] == self.config.app
            and str(c["id"]) not in self.owners
            and str(c["id"]) not in self.ended
        }
        in_bridge = {str(cid): b for b in bridges for cid in b.get("channels", [])}
        legs: dict[str, list[Json]] = {}
        for channel_id, channel in ours.items():
            caller = caller_of_leg(channel_id)
            if caller is not None:
                legs.setdefault(caller, []).append(channel)
        adopted = 0
        for channel_id, channel in ours.items():
            if caller_of_leg(channel_id) is not None:
                continue
            adopted += 1
            peers = legs.pop(channel_id, [])
            bridge = in_bridge.get(channel_id)
            partner = next((p for p in peers if in_bridge.get(str(p["id"])) is bridge), None)
            if bridge is not None and partner is not None:
                self._adopt_bridged(channel, partner, bridge)
                peers.remove(partner)
            elif channel.get("state") == "Up":
                # Answered but alone: its partner left while nobody watched.
                await self._hang_up_orphan(channel_id)
            else:
                # Not answered yet: decide the call again, from the start.
                # app_data is "<app>,<origin>,<source>…": what StasisStart's args were.
                args = str((channel.get("dialplan") or {}).get("app_data", "")).split(",")
                self.start(channel, args[1:])
            for stale in peers:
                await self._hang_up_orphan(str(stale["id"]))
        for orphans in legs.values():  # dialled legs whose caller is gone
            for orphan in orphans:
                adopted += 1
                await self._hang_up_orphan(str(orphan["id"]))
        if adopted:
            log.info("ARI %s: adopted %d call(s) already in the app", self.shown, adopted)

    async def _reconcile_slots(self, channels: list[Json], listed_at: datetime) -> None:
        """Slots this server holds for calls Asterisk no longer has are freed (a restart
        or a lost connection ended them unseen)."""
        if self.guards is None:
            return
        live = [str(channel["id"]) for channel in channels]
        try:
            keeper = self.guards.keeper
            if keeper is not None and keeper.stock is not None:
                # The slots its calls took from the stock carry their names first; the
                # unused ones are given back (the stock starts again, empty).
                await keeper.stock.flush()
                await keeper.release_all(keeper.stock.unused(everything=True))
            freed = await reconcile(self.guards.engine, self.guards.server, live, listed_at)
        except Exception as exc:  # the lease frees them anyway, later
            log.warning("ARI %s: slots not reconciled: %s", self.shown, exc)
            return
        if freed:
            log.info("ARI %s: freed %d slot(s) of calls that ended unseen", self.shown, freed)

    def _adopt_bridged(self, a: Json, b: Json, bridge: Json) -> None:
        session = CallSession(self, a, None)
        session.b = str(b["id"])
        session.bridge = str(bridge["id"])
        for object_id in (session.a, session.b, session.bridge):
            self.claim(object_id, session)
        self.sessions.add(session)
        self._spawn(self._report(session.run_adopted(bridge)), f"call-{session.a}")

    async def _hang_up_orphan(self, channel_id: str) -> None:
        with contextlib.suppress(ChannelGone):
            await self.ari.hangup(channel_id, "normal")
        log.info("call %s: orphan channel hung up after adoption", channel_id)

    async def stop(self, grace: float) -> None:
        """Stop taking calls; let live ones finish for ``grace`` s, then end them."""
        self.accepting = False
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._writer is not None:
            await self._writer.close()
        self._stopped.set()
        if self._ari is not None:
            await self._ari.close()


class Service:
    """Every AsteriskLink of this server; the /health, /metrics and console endpoints;
    signal handling."""

    def __init__(
        self,
        config: Config,
        directory: Directory,
        cdrs: CdrStore | None = None,
        recordings: RecordingStore | None = None,
        geoip: GeoIp | None = None,
        guards: Guards | None = None,
        *,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        """The shared database, probed for ``/health``; None: not probed."""
        self.database: Literal["unknown", "ok", "not answering"] = "unknown"
        self.cdrs = cdrs
        self.guards = guards
        self.watcher = (
            ConfigWatcher(directory.snapshots, config.config_poll_interval, config.db_timeout)
            if isinstance(directory, SqlDirectory)
            else None
        )
        pipeline = Pipeline(directory, deadline=config.decision_timeout or None, trace=False)
        urls = [url.strip() for url in config.ari_url.split(",") if url.strip()]
        for url in urls:
            _check_ari_url(url)
        self.writer = own_writer(None, cdrs, guards)
        self.links = [
            AsteriskLink(
                url,
                config,
                pipeline,
                cdrs=cdrs,
                recordings=recordings,
                geoip=geoip,
                guards=guards,
                writer=self.writer,
            )
            for url in urls
        ]
        self.metrics = Metrics(self.links)
        for link in self.links:
            link.on_outcome = self.metrics.observe
        self.fastagi = (
            AgiFront(
                config,
                pipeline,
                cdrs=cdrs,
                guards=guards,
                geoip=geoip,
                on_outcome=self.metrics.observe,
                writer=self.writer,
            )
            if config.fastagi_port
            else None
        )
        self._stop = asyncio.Event()

    def health(self) -> Json:
        healthy = (
            all(link.state == "connected" for link in self.links)
            and self.database != "not answering"
        )
        return {
            "status": "ok" if healthy else "degraded",
            "server": self.config.server,
            "app": self.config.app,
            "database": self.database,
            "configuration": self._configuration(),
            "asterisk": [
                {"url": shown_url(link.url), "state": link.state, "calls": link.calls}
                for link in self.links
            ],
        }

    def _configuration(self) -> Json:
        """The snapshot in force: its version and seconds since it was loaded."""
        snapshot = self.watcher.snapshots.loaded if self.watcher is not None else None
        if snapshot is None:
            return {"version": None, "age": None}
        return {"version": snapshot.version, "age": round(snapshot.age(), 1)}

    async def _health(self, _request: web.Request) -> web.Response:
        body = self.health()
        return web.json_response(body, status=200 if body["status"] == "ok" else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE}
        )

    async def probe_database(self) -> None:
        """Ask the database for ``SELECT 1`` every ``db_probe_interval`` s; ``/health``
        says "not answering" while the last probe failed or took over ``db_timeout``."""
        engine = self.engine
        if engine is None:
            return
        while True:
            try:
                async with asyncio.timeout(self.config.db_timeout or 5.0):
                    async with engine.connect() as connection:
                        await connection.exec_driver_sql("SELECT 1")
            except Exception as exc:  # whatever the driver raises: the database is not serving
                if self.database != "not answering":
                    log.warning("database not answering: %s", first_line(exc) or "timed out")
                self.database = "not answering"
            else:
                if self.database == "not answering":
                    log.info("database answering again")
                self.database = "ok"
            await asyncio.sleep(self.config.db_probe_interval)

    async def _load_configuration(self, watcher: ConfigWatcher) -> None:
        """The snapshot in memory before the first call, and how long that took in the log;
        through an outage the service starts without it (the watcher tries again)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(watcher.timeout):
                snapshot = await watcher.snapshots.current()
        except Exception as exc:
            log.warning(
                "configuration not loaded in %.1f s, starting without it: %s",
                time.monotonic() - started,
                "no answer" if isinstance(exc, TimeoutError) else first_line(exc),
            )
            return
        log.info(
            "configuration %s in memory: %s, loaded in %.2f s",
            snapshot.version,
            snapshot.size.text(),
            time.monotonic() - started,
        )

    async def hang_up_channel(self, channel_id: str) -> bool:
        """End ``channel_id`` on whichever Asterisk has it (a call the FastAGI front
        decided lives in a dialplan); False when none does."""
        for link in self.links:
            if link.state != "connected":
                continue
            try:
                await link.ari.hangup(channel_id, "normal")
            except AriError:  # 404 here: another Asterisk's, or gone
                continue
            return True
        return False

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`), then stop gracefully."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.request_stop)
        runner: web.AppRunner | None = None
        if self.config.health_port:
            # Before anything listens: an open console without a token is refused.
            check_exposure(
                self.config.health_host, self.config.health_port, self.config.console_token
            )
            app = web.Application()
            app.router.add_get("/health", self._health)
            app.router.add_get("/metrics", self._metrics)
            ConsoleApi(
                self.config.server,
                self.links,
                self.config.console_token,
                agi=self.fastagi,
                hang_up=self.hang_up_channel,
            ).install(app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
        try:
            if runner is not None:
                host, port = self.config.health_host, self.config.health_port
                await _listening("health", host, port, web.TCPSite(runner, host, port).start())
            if self.fastagi is not None:
                host, port = self.config.fastagi_host, self.config.fastagi_port
                await _listening("FastAGI", host, port, self.fastagi.start(host, port))
        except CallControlError:
            if runner is not None:
                await runner.cleanup()
            raise
        if self.watcher is not None:  # the configuration in memory before the first call
            await self._load_configuration(self.watcher)
        settle_collector()
        tasks = [asyncio.create_task(link.run()) for link in self.links]
        tasks.append(asyncio.create_task(self.probe_database()))
        if self.watcher is not None:
            tasks.append(asyncio.create_task(self.watcher.run()))
        if self.cdrs is not None:
            tasks.append(asyncio.create_task(self.cdrs.run_flusher(self.config.cdr_flush_interval)))
        guards = self.guards
        if guards is not None and guards.mailer is not None:
            # run() starts the template worker process (its start-up off the first e-mail's
            # path); stop() below ends it.
            tasks.append(asyncio.create_task(guards.mailer.run()))
        if guards is not None and guards.keeper is not None:
            guards.keeper.start()
        try:
            await self._stop.wait()
            log.info("stopping: no new calls; live calls have %.0f s", self.config.shutdown_timeout)
            grace = self.config.shutdown_timeout
            stopping = [link.stop(grace) for link in self.links]
            if self.fastagi is not None:
                stopping.append(self.fastagi.stop(grace))
            await asyncio.gather(*stopping)
            await asyncio.gather(*tasks[: len(self.links)], return_exceptions=True)
            await self.writer.close()
            if guards is not None and guards.mailer is not None:
                await guards.mailer.stop(self.config.smtp_timeout)
            if guards is not None and guards.keeper is not None:
                await guards.keeper.stop()
        finally:
            for task in tasks:
                task.cancel()
            if runner is not None:
                await runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)


def _check_ari_url(url: str) -> None:
    """A ConfigError naming the setting (never the URL's credentials) unless ``url`` is an
    http(s) URL with a host and, if any, a valid port."""
    try:
        parts = urllib.parse.urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        valid = False
    if not valid:
        # Only what follows a user:password@, never the credentials.
        shown = url.rpartition("@")[2]
        raise ConfigError(f"ari_url {shown[:80]!r} is not an http(s) URL")


def settle_collector() -> None:
    """Once started: what lives for the whole run (modules, the configuration) leaves the
    cycle collector's view, and its full passes are ten times rarer. A full pass over two
    thousand live calls stalled the event loop for 130 ms, and every call deciding then.

    A middle pass looks at every object made since the last one that is still alive,
    most of them live calls': at most 5,000 × 5 objects here (about 10 ms), where 20
    young passes between two middle ones let 100,000 pile up and stalled the loop for
    50 ms while two thousand calls arrived. Full passes stay as rare (one per 2,000
    young ones, against 2,100)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 4, 400)


async def _listening(what: str, host: str, port: int, start: Awaitable[object]) -> None:
    """Await ``start``, a server starting on ``host:port``; a port that cannot be had is
    one line naming the setting, not a traceback (nor a database error)."""
    try:
        await start
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CallControlError(
            f"cannot listen on {host}:{port} for {what} ({reason}): "
            f"change {what.lower()}_port or stop what holds it"
        ) from None
