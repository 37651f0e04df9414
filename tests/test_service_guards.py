"""Max calls across servers and daily usage, through the service on the simulated Asterisk
and a real shared database (DESIGN §3.4, §3.5).

acme-north of the demo may hold 10 concurrent external calls, spends at most 50 EUR a day
(postpaid, standard-eur: Spanish mobiles 0.02 + 0.035/min in 30/6 increments).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.guards import Guards
from callcontrol.mailer import Mailer
from callcontrol.service import AsteriskLink, Service
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from dialplan.pipeline import Pipeline
from models.billing import ActiveCallSlot, DailyUsage
from models.cdrs import CdrStore
from models.db import create_engine
from models.directory import SqlDirectory
from models.platform import NotificationTemplate, NotificationTemplateContent
from models.provisioning import DEMO_DATASET, load_file
from models.slots import SlotKeeper
from models.tenants import Client
from tests.simulator_helpers import APP, PASSWORD, USER, fast_config
from tests.test_notifications_mail import Inbox, free_port, settings, smtp_server
from tests.test_service import (
    CONFIG,
    Running,
    _free_port,
    _has_app,
    _lacks_app,
    bridged,
    until,
)
from tests.test_template_worker import NESTED_LOOPS

pytest_plugins = ["tests.test_service"]


class Server(Running):
    """One application server: a simulated Asterisk and the service's link to it."""

    def __init__(
        self,
        sim: Simulator,
        engine: AsyncEngine,
        name: str,
        spool: Path,
        mailer: Mailer | None = None,
    ) -> None:
        self.sim = sim
        config = replace(CONFIG, server=name, teardown_timeout=5.0)
        self.guards = Guards(engine, name, 60.0, SlotKeeper(engine, name, config), mailer)
        self.cdrs = CdrStore(engine, spool, on_crossing=self.guards.crossed)
        pipeline = Pipeline(SqlDirectory(engine))
        super().__init__(
            AsteriskLink(sim.url, config, pipeline, cdrs=self.cdrs, guards=self.guards)
        )

    async def stop(self, grace: float = 2.0, within: float = 10.0) -> None:
        await super().stop(grace, within)
        await self.cdrs.close()


async def slots(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(ActiveCallSlot)) or 0)


@pytest.fixture
async def demo(engine: AsyncEngine) -> AsyncEngine:
    await load_file(engine, DEMO_DATASET)
    return engine


@pytest.fixture
async def two_servers(
    demo: AsyncEngine, db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Server, Server, AsyncEngine]]:
    # Each server has its own connection pool, as two machines would.
    engines = [create_engine(db_url, pool_size=30, max_overflow=0) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for number, engine in enumerate(engines, start=1):
            # Each Asterisk has its systemname, so the two never give a call the same id.
            sim = await stack.enter_async_context(
                Simulator(fast_config(tmp_path / f"rec-{number}", channel_id_prefix=f"as-{number}"))
            )
            servers.append(Server(sim, engine, f"as-{number}", tmp_path / f"spool-{number}"))
        try:
            for server in servers:
                # Connected and done looking for calls to adopt: calls may come now.
                await asyncio.wait_for(server.link.adopted.wait(), 10)
            yield servers[0], servers[1], demo
        finally:
            for server in servers:
                await server.stop()
            for engine in engines:
                await engine.dispose()


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
async def test_fifty_calls_through_two_servers_admit_exactly_the_clients_ten(
    two_servers: tuple[Server, Server, AsyncEngine],
) -> None:
    first, second, engine = two_servers
    servers = (first, second)

    def settled() -> int:
        """Calls decided one way or the other: refused (an outcome) or up (bridged)."""
        up = sum(1 for server in servers for s in server.link.sessions if s.bridge is not None)
        return up + sum(len(server.outcomes) for server in servers)

    async with ControlClient(first.sim.url) as one, ControlClient(second.sim.url) as two:
        controls = [one, two] * 25
        placed = await asyncio.gather(
            *(control.call("acme-north-ana", "600123123") for control in controls)
        )
        ids = [str(call["id"]) for call in placed]
        try:
            await until(lambda: settled() == 50, within=60)
        finally:
            print(f"settled {settled()}: {[o for s in servers for o in s.outcomes.values()]}")
        refused = [o for server in servers for o in server.outcomes.values()]
        assert {(o.reason, o.cause) for o in refused} == {
            ("max_calls_reached", "rejected")  # outbound: 403
        }, [o for o in refused if o.reason != "max_calls_reached"]
        assert (len(refused), await slots(engine)) == (40, 10)
        for control, call_id in zip(controls, ids, strict=True):
            with contextlib.suppress(Exception):
                await control.hang_up(call_id)
        await until(lambda: sum(len(server.outcomes) for server in servers) == 50, within=60)
    outcomes = [o for server in servers for o in server.outcomes.values()]
    assert sum(o.answered for o in outcomes) == 10
    assert {o.result for o in outcomes if not o.answered} == {
        "refused after its voice notification"
    }
    await until(lambda: _no_slots(engine), within=10)


async def _no_slots(engine: AsyncEngine) -> bool:
    return await slots(engine) == 0


async def test_a_killed_servers_slots_are_freed_by_its_successor(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    async with Simulator(fast_config(tmp_path / "rec")) as sim, ControlClient(sim.url) as control:
        environment = {
            **os.environ,
            "CALLCONTROL_DATABASE_URL": str(demo_engine.url),
            "CALLCONTROL_ARI_URL": sim.url,
            "CALLCONTROL_ARI_USER": USER,
            "CALLCONTROL_ARI_PASSWORD": PASSWORD,
            "CALLCONTROL_APP": APP,
            "CALLCONTROL_HEALTH_PORT": "0",
            "CALLCONTROL_SERVER": "as-doomed",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callcontrol", "run", env=environment, cwd=tmp_path
        )
        try:
            await until(lambda: _has_app(control), within=20)
            calls = [
                str((await control.call("acme-north-ana", "600123123"))["id"]) for _ in range(3)
            ]
            for call in calls:
                await bridged(control, call)
            await until(lambda: _slots_are(demo_engine, 3), within=5)
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        await until(lambda: _lacks_app(control))
        # Two calls end while no server watches; one is still up.
        await control.hang_up(calls[0])
        await control.hang_up(calls[1])
        successor = Server(sim, demo_engine, "as-doomed", tmp_path / "spool")
        try:
            await asyncio.wait_for(successor.link.adopted.wait(), 10)
            assert await slots(demo_engine) == 1  # the ended calls' slots are freed
            await control.hang_up(calls[2])  # the adopted one releases its own
            await until(lambda: calls[2] in successor.outcomes, within=5)
            await until(lambda: _no_slots(demo_engine), within=5)
        finally:
            await successor.stop()


async def _slots_are(engine: AsyncEngine, expected: int) -> bool:
    return await slots(engine) == expected


async def test_crossing_the_daily_limit_refuses_the_next_call_and_mails_once(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # acme-north's limit lowered to 0.03 EUR: an answered mobile call hung up at once costs
    # its connection fee, 0.02: the first stays under, the second crosses (one e-mail, in
    # Spanish, from acme-north's own template), the third is refused; a fourth call after
    # the crossing sends nothing more.
    async with demo_engine.begin() as connection:
        await connection.execute(
            update(Client)
            .where(Client.name == "acme-north")
            .values(max_daily_usage=Decimal("0.03"))
        )
    inbox, port = Inbox(), free_port()
    async with (
        smtp_server(port, inbox),
        Simulator(fast_config(tmp_path / "rec")) as sim,
        ControlClient(sim.url) as control,
    ):
        mailer = Mailer(settings(port))
        server = Server(sim, demo_engine, "as-1", tmp_path / "spool", mailer)
        sending = asyncio.create_task(mailer.run())
        try:
            await until(lambda: server.link.state == "connected", 10)
            for _ in range(2):
                call = str((await control.call("acme-north-ana", "600123123"))["id"])
                await bridged(control, call)
                await control.hang_up(call)
                await until(lambda call=call: call in server.outcomes, within=5)
            refused = []
            for _ in range(2):
                third = str((await control.call("acme-north-ana", "600123123"))["id"])
                await until(lambda third=third: third in server.outcomes, within=5)
                refused.append(server.outcomes[third].reason)
            await until(lambda: mailer.sent >= 1, within=10)
        finally:
            await server.stop()
            await mailer.stop(grace=5)  # ends run(), by cancelling it
            with contextlib.suppress(asyncio.CancelledError):
                await sending
    assert refused == ["daily_limit_reached", "daily_limit_reached"]
    [(envelope, message)] = inbox.messages
    assert envelope.rcpt_tos == ["finance@acme.example.com"]
    assert message["Subject"] == "acme-north: límite diario de consumo alcanzado"
    assert "ha llegado a 0.0400 €" in message.get_content()  # its template, in Spanish
    async with demo_engine.connect() as connection:
        row = (await connection.execute(select(DailyUsage))).one()
    assert Decimal(row.amount) == Decimal("0.04")
    assert row.notified_at is not None


async def test_the_source_filter_judges_the_address_asterisk_reports(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # seine-studio's terminals may call only from 198.51.100.0/24 (its studio network).
    async with Simulator(fast_config(tmp_path / "rec")) as sim, ControlClient(sim.url) as control:
        server = Server(sim, demo_engine, "as-1", tmp_path / "spool")
        try:
            await until(lambda: server.link.state == "connected", 10)
            inside = str(
                (await control.call("seine-margaux", "22", source_ip="198.51.100.20"))["id"]
            )
            await bridged(control, inside)
            await control.hang_up(inside)
            outside = str(
                (await control.call("seine-margaux", "22", source_ip="203.0.113.9"))["id"]
            )
            await until(lambda: {inside, outside} <= server.outcomes.keys(), within=5)
        finally:
            await server.stop()
    assert server.outcomes[inside].answered
    assert (server.outcomes[outside].reason, server.outcomes[outside].cause) == (
        "ip_not_allowed",
        "rejected",
    )


class Prober(threading.Thread):
    """Asks ``url`` every 20 ms from a thread of its own, so a blocked event loop shows as a
    slow answer; ``answers`` holds (when asked, seconds to answer, status)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[tuple[float, float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            asked = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as response:
                    status = response.status
            except OSError as exc:
                status = getattr(exc, "code", 0)
            self.answers.append((asked, time.monotonic() - asked, status))

    def during(self, start: float, end: float) -> list[tuple[float, int]]:
        return [(took, status) for asked, took, status in self.answers if start <= asked <= end]


async def test_a_hostile_template_renders_aside_while_health_and_other_tenants_calls_go_on(
    demo_engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # acme-north's limit lowered to 0.03 EUR: its second call crosses it, and the e-mail
    # renders its brand's template, changed (behind provisioning's back) into the body of
    # the hostile-tenant test: 625 million loop turns, 26 s of a blocked service before.
    caplog.set_level(logging.WARNING, logger="callcontrol")
    async with demo_engine.begin() as connection:
        await connection.execute(
            update(Client)
            .where(Client.name == "acme-north")
            .values(max_daily_usage=Decimal("0.03"))
        )
        hostile = select(NotificationTemplate.id).where(
            NotificationTemplate.name == "iberia-daily-limit"
        )
        await connection.execute(
            update(NotificationTemplateContent)
            .where(NotificationTemplateContent.template_id == hostile.scalar_subquery())
            .values(body=NESTED_LOOPS)
        )
    inbox, port = Inbox(), free_port()
    async with (
        smtp_server(port, inbox),
        Simulator(fast_config(tmp_path / "rec")) as sim,
        ControlClient(sim.url) as control,
    ):
        config = replace(
            settings(port),
            ari_user=CONFIG.ari_user,
            ari_password=CONFIG.ari_password,
            app=CONFIG.app,
            ari_url=sim.url,
            health_port=_free_port(),
            template_cpu_limit=3.0,  # a window wide enough to measure in
            template_timeout=20.0,
        )
        mailer = Mailer(config)
        guards = Guards(
            demo_engine, config.server, 60.0, SlotKeeper(demo_engine, config.server, config), mailer
        )
        cdrs = CdrStore(demo_engine, tmp_path / "spool", on_crossing=guards.crossed)
        service = Service(config, SqlDirectory(demo_engine), cdrs, guards=guards)
        running = asyncio.create_task(service.run())
        prober = Prober(f"http://127.0.0.1:{config.health_port}/health")
        try:
            await until(lambda: service.links[0].state == "connected", within=10)
            prober.start()
            for _ in range(2):
                call = str((await control.call("acme-north-ana", "600123123"))["id"])
                await bridged(control, call)
                await control.hang_up(call)
            await until(lambda: mailer.pending == 1, within=10)  # crossed: now rendering
            rendering = time.monotonic()

            other = str((await control.call("thames-george", "2002"))["id"])
            await bridged(control, other)  # thames-consulting's call, decided and answered
            decided = time.monotonic() - rendering
            still_rendering = (mailer.pending, mailer.refused)
            await control.hang_up(other)

            await until(lambda: mailer.refused == 1, within=30)
            refused = time.monotonic()
        finally:
            prober.done.set()
            await asyncio.to_thread(prober.join, 60)
            service.request_stop()
            await asyncio.wait_for(running, 30)
            await cdrs.close()
    assert decided < 1.0, decided
    assert still_rendering == (1, 0)  # that call came through while the template rendered
    answers = prober.during(rendering, refused)
    assert len(answers) >= 20, answers  # 3 s of rendering, 20 ms apart
    assert {status for _, status in answers} == {200}
    assert max(took for took, _ in answers) < 0.5, answers
    assert (mailer.sent, inbox.messages) == (0, [])
    assert [r.getMessage() for r in caplog.records if "acme-north" in r.getMessage()] == [
        "client acme-north: daily limit e-mail not sent: brand's template "
        "'iberia-daily-limit' (es) body refused: renders over the CPU limit (3 s)"
    ]
