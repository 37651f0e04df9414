"""Low-balance e-mails: the case table on every backend (which written CDR crosses the
threshold), and prepaid calls through the service reaching a real SMTP server once per
crossing, from the template chosen as for every notification (DESIGN §3.10)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.mailer import Mailer
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from models.billing import BillableCall
from models.cdrs import BalanceCrossing, CdrStore, Crossings
from models.provisioning import export_document
from models.tenants import Client
from tests import test_cdrs
from tests.cases.low_balance import CASES, LowBalanceCase
from tests.simulator_helpers import fast_config
from tests.test_cdrs import AT, a_cdr
from tests.test_notifications_mail import Inbox, free_port, settings, smtp_server
from tests.test_service import bridged, until
from tests.test_service_guards import Server

pytest_plugins = ["tests.test_service"]

clients = test_cdrs.clients


async def set_client(engine: AsyncEngine, **values: object) -> None:
    async with engine.begin() as connection:
        await connection.execute(update(Client).where(Client.id == 1).values(**values))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_low_balance_case(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path, case: LowBalanceCase
) -> None:
    await set_client(
        engine,
        billing_method=case.method,
        balance=case.balance,
        low_balance_threshold=case.threshold,
        low_balance_email="finance@acme.example.com",
    )
    announced: list[Crossings] = []

    async def crossed(crossing: Crossings) -> None:
        announced.append(crossing)

    calls = 0
    mails: list[tuple[str, ...]] = []
    async with CdrStore(engine, tmp_path / "spool", on_crossing=crossed) as store:
        for kind, *amounts in case.events:
            announced.clear()
            if kind == "top_up":
                await set_client(engine, balance=Decimal(amounts[0]))
            else:
                batch = []
                for amount in amounts:
                    calls += 1
                    end = AT + timedelta(minutes=calls)
                    batch.append(a_cdr(f"c{calls}", end_time=end, price=Decimal(amount)))
                assert await store.write_batch(batch)
            crossings = [c for c in announced if isinstance(c, BalanceCrossing)]
            assert all(c.threshold == case.threshold for c in crossings)
            mails.append(tuple(c.call_id for c in crossings))
    assert tuple(mails) == case.mails


def test_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


async def test_the_crossing_names_the_balance_after_the_debit(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    await set_client(
        engine, billing_method="prepaid", balance=Decimal(10), low_balance_threshold=Decimal(5)
    )
    announced: list[Crossings] = []

    async def crossed(crossing: Crossings) -> None:
        announced.append(crossing)

    async with CdrStore(engine, tmp_path / "spool", on_crossing=crossed) as store:
        await store.write(a_cdr("c1", price=Decimal("5.1234")))
    assert announced == [BalanceCrossing(1, Decimal("4.8766"), Decimal("5.0000"), "c1")]


async def test_the_settings_are_provisioned_and_exported(demo_engine: AsyncEngine) -> None:
    exported = await export_document(demo_engine)
    clients_out = exported["clients"]
    assert isinstance(clients_out, list)
    [south] = [c for c in clients_out if c["name"] == "acme-south"]
    assert (south["low_balance_threshold"], south["low_balance_email"]) == (
        Decimal(5),
        "finance@acme.example.com",
    )


async def test_prepaid_calls_mail_the_low_balance_once_per_crossing(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # acme-south (prepaid, threshold 5 EUR, e-mail finance@…) at 5.03: an answered mobile
    # call hung up at once costs its connection fee, 0.02. The first stays above (5.01),
    # the second goes below (4.99: one e-mail, from the brand's choice,
    # generic-low-balance), the third stays below (4.97: no e-mail); topped up to 5.00
    # (at the threshold is not below it), the fourth goes below again (4.98: a second).
    await _set(demo_engine, Decimal("5.03"))
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
            for call, mails in enumerate((0, 1, 1, 2)):
                if call == 3:
                    await _set(demo_engine, Decimal("5.00"))
                caller = str((await control.call("acme-south-dario", "600123123"))["id"])
                await bridged(control, caller)
                await control.hang_up(caller)
                await until(lambda caller=caller: _written(demo_engine, caller), within=5)
                await until(lambda mails=mails: mailer.sent >= mails, within=10)
        finally:
            await server.stop()
            await mailer.stop(grace=5)
            with contextlib.suppress(asyncio.CancelledError):
                await sending
    # Announced in order by the one writer: an e-mail of the first or third call would
    # have been sent before the fourth's, and its balance (5.01, 4.97) would show.
    balances = []
    for envelope, message in inbox.messages:
        assert envelope.rcpt_tos == ["finance@acme.example.com"]
        balances.append(message["Subject"])
        assert "The balance of acme-south is" in message.get_content()
    assert balances == ["Low balance: 4.9900 EUR", "Low balance: 4.9800 EUR"]


async def _set(engine: AsyncEngine, balance: Decimal) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(Client).where(Client.name == "acme-south").values(balance=balance)
        )


async def _written(engine: AsyncEngine, call_id: str) -> bool:
    async with engine.connect() as connection:
        found = await connection.scalar(
            select(BillableCall.id).where(BillableCall.call_id == call_id)
        )
    return found is not None
