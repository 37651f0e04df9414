"""What a crossing's e-mail needs before it is queued: its client, an address to send to,
and a mailer. Without one of them nothing is queued and nothing fails: the CDR that made
the crossing is written all the same."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.config import Config
from callcontrol.guards import Guards
from callcontrol.mailer import Mailer
from models.cdrs import BalanceCrossing, Crossing
from models.tenants import Client

pytest_plugins = ["tests.test_service"]

DAY = date(2026, 12, 1)
GONE = 99_999
"""A client id that no client has (removed since its CDR was written)."""


def crossings(client_id: int) -> list[Crossing | BalanceCrossing]:
    return [
        Crossing(client_id, DAY, Decimal("10.0000"), "c-day"),
        BalanceCrossing(client_id, Decimal("1.0000"), Decimal("5.0000"), "c-balance"),
    ]


async def test_no_e_mail_is_queued_without_a_client_an_address_or_a_mailer(
    demo_engine: AsyncEngine,
) -> None:
    async with demo_engine.begin() as connection:
        client_id = await connection.scalar(select(Client.id).where(Client.name == "acme-north"))
        await connection.execute(
            update(Client)
            .where(Client.id == client_id)
            .values(
                max_daily_usage=Decimal("10"),
                max_daily_usage_email=None,
                low_balance_threshold=Decimal("5"),
                low_balance_email=None,
            )
        )
    assert isinstance(client_id, int)
    mailer = Mailer(Config(smtp_host="127.0.0.1", smtp_port=9, smtp_from="cc@example.net"))
    guards = Guards(demo_engine, "as-1", 20.0, mailer=mailer)
    for crossing in [*crossings(GONE), *crossings(client_id)]:  # gone; no address
        await guards.crossed(crossing)
    assert mailer.pending == 0
    async with demo_engine.begin() as connection:
        await connection.execute(
            update(Client)
            .where(Client.id == client_id)
            .values(
                max_daily_usage_email="ops@acme.example.com",
                low_balance_email="ops@acme.example.com",
            )
        )
    without_mailer = Guards(demo_engine, "as-1", 20.0)
    for crossing in crossings(client_id):  # an address, but this server sends no e-mail
        await without_mailer.crossed(crossing)
    for crossing in crossings(client_id):  # with the mailer: both are queued
        await guards.crossed(crossing)
    assert mailer.pending == 2
