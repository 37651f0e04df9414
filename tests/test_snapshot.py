"""The configuration snapshot's indexes answer as the scans they replace would."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.rating import RateView, RatingPlanView, RatingProfileView
from dialplan.snapshot import NARROWED, Route, Snapshot
from dialplan.views import CarrierView, ClientView, ExtensionView
from models.billing import Rate
from models.snapshot import load
from models.tenants import Ddi, Extension, Terminal
from tests.test_service import demo_engine  # noqa: F401 (a fixture)


def _client(client_id: int, brand_id: int = 1, corporation_id: int | None = None) -> ClientView:
    return ClientView(
        id=client_id,
        name=f"c{client_id}",
        brand_id=brand_id,
        corporation_id=corporation_id,
        corporation=None,
        country="ES",
        language="es",
        timezone="Europe/Madrid",
        currency="EUR",
        features=frozenset(),
    )


def _carrier(name: str) -> CarrierView:
    return CarrierView(id=len(name), name=name, endpoint=name, brand_id=1)


def test_a_clients_own_route_wins_over_a_longer_brand_route_and_priority_breaks_ties() -> None:
    mine, other = _client(1), _client(2)
    snapshot = Snapshot(
        routes=[
            Route(_carrier("brand-34"), "34", priority=5),
            Route(_carrier("brand-346"), "346", priority=5),
            Route(_carrier("brand-346-cheap"), "346", priority=1),
            Route(_carrier("own-3"), "3", client_id=1),
            Route(_carrier("other-brand"), "", brand_id=2),
        ]
    )
    assert snapshot.outbound_carrier(mine, "+34600111222") == _carrier("own-3")
    assert snapshot.outbound_carrier(other, "+34600111222") == _carrier("brand-346-cheap")
    assert snapshot.outbound_carrier(other, "+34911222333") == _carrier("brand-34")
    assert snapshot.outbound_carrier(other, "+44207946012") is None
    assert snapshot.outbound_carrier(_client(3, brand_id=2), "+1") == _carrier("other-brand")


def test_rating_profiles_hold_only_the_rates_of_the_numbers_prefixes() -> None:
    def rate(rate_id: int, prefix: str) -> RateView:
        return RateView(id=rate_id, prefix=prefix, price_per_minute=Decimal("0.01"))

    plan = RatingPlanView(
        7, "world", "EUR", (rate(1, ""), rate(2, "34"), rate(3, "346"), rate(4, "44"))
    )
    profile = RatingProfileView(1, datetime(2026, 1, 1, tzinfo=UTC), plan)
    snapshot = Snapshot(profiles={1: [profile]})
    [found] = snapshot.rating_profiles(_client(1), "+34600111222")
    assert [r.id for r in found.plan.rates] == [1, 2, 3]
    assert (found.id, found.plan.name) == (1, "world")
    assert snapshot.rating_profiles(_client(2), "+34600111222") == ()
    # Asked again, the same answer (built once); another number, its own rates.
    assert snapshot.rating_profiles(_client(1), "+34600111222") == (found,)
    [british] = snapshot.rating_profiles(_client(1), "+44207946012")
    assert [r.id for r in british.plan.rates] == [1, 4]


def test_the_rating_profiles_a_snapshot_keeps_built_are_bounded() -> None:
    plan = RatingPlanView(
        7, "world", "EUR", (RateView(id=1, prefix="", price_per_minute=Decimal("0.01")),)
    )
    snapshot = Snapshot(
        profiles={1: [RatingProfileView(1, datetime(2026, 1, 1, tzinfo=UTC), plan)]}
    )
    # Callers choose the numbers: as many as they like, never more than NARROWED kept.
    for number in range(NARROWED + 10):
        [found] = snapshot.rating_profiles(_client(1), f"+34{number}")
        assert [r.id for r in found.plan.rates] == [1]
    assert len(snapshot._narrowed) <= NARROWED


def test_a_corporation_extension_is_another_clients() -> None:
    first, second = _client(1, corporation_id=9), _client(2, corporation_id=9)
    outsider = _client(3)
    mine = ExtensionView("200", first, "user")
    theirs = ExtensionView("200", second, "user")
    snapshot = Snapshot(extensions=[mine, theirs, ExtensionView("200", outsider, "user")])
    assert snapshot.extension(first, "200") is mine
    assert snapshot.corporation_extension(first, "200") is theirs
    assert snapshot.corporation_extension(second, "200") is mine
    assert snapshot.corporation_extension(outsider, "200") is None
    assert snapshot.corporation_extension(first, "201") is None


async def test_the_demo_platform_loads_whole(demo_engine: AsyncEngine) -> None:  # noqa: F811
    snapshot = await load(demo_engine)
    async with demo_engine.connect() as connection:
        counted = [
            await connection.scalar(select(func.count()).select_from(model))
            for model in (Terminal, Ddi, Extension, Rate)
        ]
    size = snapshot.size
    assert [size.terminals, size.ddis, size.extensions, size.rates] == counted
    terminal = snapshot.terminal("thames-george")
    assert terminal is not None
    assert terminal.client.name == "thames-consulting"
    assert terminal.user is not None
    assert terminal.user.extension == "2001"
    assert snapshot.terminal("nobody") is None
