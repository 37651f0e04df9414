"""``callcontrol bench explain``: pipeline decisions on a generated platform, per backend.

The dataset: one brand, ``clients`` clients in corporations of two, each with ``users``
users (terminal + extension), a DDI, and a call ACL that denies premium numbers.
The calls are a fixed, seeded mix of internal, inter-VPBX, external, denied,
invalid and inbound calls, so every backend decides exactly the same calls.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.call import CallRequest
from dialplan.directory import Directory
from dialplan.pipeline import Pipeline
from models import (
    Brand,
    CallAcl,
    CallAclRule,
    Carrier,
    Client,
    ClientFeature,
    Corporation,
    Currency,
    Ddi,
    Extension,
    MatchList,
    MatchListPattern,
    OutboundRoute,
    Terminal,
    User,
)
from models.changes import bump
from models.db import create_engine, execute_autocommit
from models.directory import SqlDirectory
from models.migrate import upgrade_async
from models.provisioning.passwords import sip_ha1

CHUNK = 5_000


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


async def generate(
    engine: AsyncEngine, clients: int, users: int, *, offset: int = 0, brand: str = "bench"
) -> None:
    """Fill a migrated database with the benchmark platform: ``clients`` clients of a new
    ``brand``, every id above ``offset`` (so it can join a provisioned platform)."""
    b = offset + 1
    tables: list[tuple[Any, list[dict[str, Any]]]] = [
        (Currency, [{"code": "EUR", "name": "Euro", "symbol": "€"}] if not offset else []),
        (Brand, [{"id": b, "name": brand, "default_currency": "EUR"}]),
        (
            Carrier,
            [
                {
                    "id": b,
                    "brand_id": b,
                    "name": f"{brand}-trunk",
                    "endpoint": f"{brand}-trunk",
                    "host": "127.0.0.1",
                }
            ],
        ),
        (OutboundRoute, [{"brand_id": b, "carrier_id": b, "prefix": "", "priority": 0}]),
        (
            Corporation,
            [
                {"id": offset + c, "brand_id": b, "name": f"{brand}-corp{c}"}
                for c in range(1, clients // 2 + 2)
            ],
        ),
    ]
    client_rows, features, ddis, lists, patterns, acls, rules = [], [], [], [], [], [], []
    user_rows, terminals, extensions = [], [], []
    for c in range(1, clients + 1):
        i = offset + c
        client_rows.append(
            {
                "id": i,
                "brand_id": b,
                "name": f"client{c}",
                "sip_domain": f"client{c}.{brand}.example",
                "corporation_id": offset + (c + 1) // 2,
                "language": "es",
                "timezone": "Europe/Madrid",
                "currency": "EUR",
                "country": "ES",
            }
        )
        features.append({"client_id": i, "feature": "voice_notifications"})
        features.append({"client_id": i, "feature": "friends"})  # inter-VPBX calls
        ddis.append({"id": i, "client_id": i, "e164": f"34{910000000 + i}", "route": "user"})
        lists.append({"id": i, "client_id": i, "name": "premium"})
        patterns.append({"match_list_id": i, "kind": "regexp", "value": r"^\+34(80|90)"})
        acls.append({"id": i, "client_id": i, "name": "no-premium", "default_policy": "allow"})
        rules.append({"call_acl_id": i, "priority": 1, "match_list_id": i, "policy": "deny"})
        for u in range(users):
            uid = offset * users + (c - 1) * users + u + 1
            user_rows.append({"id": uid, "client_id": i, "name": f"user{u}", "call_acl_id": i})
            name = f"t{c}-{u}"
            ha1 = sip_ha1(name, f"client{c}.{brand}.example", "x" * 16)
            terminals.append({"client_id": i, "user_id": uid, "name": name, "ha1": ha1})
            # Corporation siblings number their extensions apart: odd 1xx.., even 5xx..
            extensions.append(
                {"client_id": i, "number": str((100 if c % 2 else 500) + u), "user_id": uid}
            )
    tables += [
        (Client, client_rows),
        (ClientFeature, features),
        (MatchList, lists),
        (MatchListPattern, patterns),
        (CallAcl, acls),
        (CallAclRule, rules),
        (User, user_rows),
        (Terminal, terminals),
        (Extension, extensions),
        (Ddi, ddis),
    ]
    async with engine.begin() as connection:
        for model, rows in tables:
            for chunk in _chunks(rows):
                await connection.execute(insert(model), chunk)
        await connection.execute(
            text(
                "UPDATE ddis SET user_id ="
                " (SELECT min(id) FROM users WHERE users.client_id = ddis.client_id)"
                " WHERE client_id > :offset"
            ),
            {"offset": offset},
        )
        await connection.execute(
            text("UPDATE clients SET outgoing_ddi_id = id WHERE id > :offset"), {"offset": offset}
        )
        await bump(connection)
        if engine.dialect.name == "postgresql":
            await connection.execute(text("ANALYZE"))


def calls(clients: int, users: int, count: int, seed: int = 7) -> list[CallRequest]:
    """A seeded mix: 30 % internal, 10 % inter-VPBX, 35 % external, 10 % premium (denied),
    5 % invalid, 10 % inbound from the carrier."""
    rng = random.Random(seed)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    result = []
    for n in range(count):
        c = rng.randrange(1, clients + 1)
        u = rng.randrange(users)
        terminal = f"t{c}-{u}"
        kind = rng.random()
        if kind < 0.30:
            dialled = str((100 if c % 2 else 500) + rng.randrange(users))
        elif kind < 0.40 and c < clients:
            dialled = str((500 if c % 2 else 100) + rng.randrange(users))
        elif kind < 0.75:
            dialled = f"6{rng.randrange(10**7, 10**8)}"
        elif kind < 0.85:
            dialled = f"905{rng.randrange(10**5, 10**6)}"
        elif kind < 0.90:
            dialled = "12345"
        else:
            result.append(
                CallRequest(f"b{n}", "trunk", f"+34{910000000 + c}", now, origin="carrier")
            )
            continue
        result.append(CallRequest(f"b{n}", terminal, dialled, now))
    return result


@dataclass(frozen=True)
class Figures:
    variant: str
    decisions: int
    per_second: float
    p50_ms: float
    p99_ms: float
    paced_rate: int
    paced_p50_ms: float
    paced_p99_ms: float
    outcomes: dict[str, int]


def _quantiles(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1e3, cuts[98] * 1e3


async def measure(
    variant: str, directory: Directory, requests: list[CallRequest], rate: int
) -> Figures:
    """Back to back (throughput, latency alone), then paced at ``rate`` calls/s (latency
    under a steady offered load, each decision its own task as in the service)."""
    pipeline = Pipeline(directory, trace=False)  # as the service runs it
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for request in requests:
        begin = time.perf_counter()
        result = await pipeline.run(request)
        latencies.append(time.perf_counter() - begin)
        key = str(getattr(result.decision, "reason", None) or result.decision.kind)
        outcomes[key] = outcomes.get(key, 0) + 1
    elapsed = time.perf_counter() - started
    p50, p99 = _quantiles(latencies)

    paced: list[float] = []

    async def one(request: CallRequest) -> None:
        begin = time.perf_counter()
        await pipeline.run(request)
        paced.append(time.perf_counter() - begin)

    count = min(len(requests), rate * 10)  # at most ten seconds of offered load
    origin = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n, request in enumerate(requests[:count]):
            delay = origin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one(request))
    paced_p50, paced_p99 = _quantiles(paced)
    return Figures(
        variant,
        len(requests),
        len(requests) / elapsed,
        p50,
        p99,
        rate,
        paced_p50,
        paced_p99,
        outcomes,
    )


async def bench_explain(
    clients: int,
    users: int,
    decisions: int,
    postgresql: str | None,
    echo: Callable[[str], None],
    rate: int = 200,
) -> list[Figures]:
    requests = calls(clients, users, decisions)
    figures: list[Figures] = []
    with tempfile.TemporaryDirectory() as folder:
        targets = [("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}")]
        if postgresql:
            name = f"cc_bench_{uuid.uuid4().hex[:8]}"
            targets.append(
                ("postgresql", make_url(postgresql).set(database=name).render_as_string(False))
            )
        for backend, url in targets:
            scratch = make_url(url).database
            if backend == "postgresql":
                assert postgresql is not None
                await execute_autocommit(postgresql, f"CREATE DATABASE {scratch}")
            try:
                echo(f"{backend}: generating {clients:,} clients, {clients * users:,} users …")
                await upgrade_async(url)
                engine = create_engine(url, pool_size=20)
                try:
                    begin = time.perf_counter()
                    await generate(engine, clients, users)
                    echo(
                        f"{backend}: generated in {time.perf_counter() - begin:.1f} s;"
                        f" deciding {decisions:,} calls, then {rate}/s …"
                    )
                    sql = SqlDirectory(engine)
                    begin = time.perf_counter()
                    size = (await sql.snapshots.current()).size
                    loaded = time.perf_counter() - begin
                    begin = time.perf_counter()
                    await sql.snapshots.refresh(force=True)
                    reloaded = time.perf_counter() - begin
                    echo(
                        f"{backend}: configuration snapshot of {size.text()}: loaded in"
                        f" {loaded * 1000:.0f} ms, reloaded in {reloaded * 1000:.0f} ms"
                    )
                    await measure(backend, sql, requests[: min(200, len(requests))], rate)
                    figures.append(await measure(backend, sql, requests, rate))
                finally:
                    await engine.dispose()
            finally:
                if backend == "postgresql":
                    assert postgresql is not None
                    await execute_autocommit(postgresql, f"DROP DATABASE IF EXISTS {scratch}")
    echo(render(figures, clients, users))
    return figures


def render(figures: list[Figures], clients: int, users: int) -> str:
    lines = [
        f"pipeline decisions, {clients:,} clients / {clients * users:,} users"
        " (configuration in memory, counters from the database)",
        f"{'variant':<18}{'decisions':>10}{'per s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'paced/s':>9}{'p50 ms':>8}{'p99 ms':>8}",
    ]
    for f in figures:
        lines.append(
            f"{f.variant:<18}{f.decisions:>10}{f.per_second:>8.0f}{f.p50_ms:>8.2f}{f.p99_ms:>8.2f}"
            f"{f.paced_rate:>9}{f.paced_p50_ms:>8.2f}{f.paced_p99_ms:>8.2f}"
        )
    base = figures[0]
    for f in figures[1:]:
        lines.append(
            f"ratio {f.variant} / {base.variant} decisions per second: "
            f"{f.per_second / base.per_second:.2f}"
        )
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(base.outcomes.items()))
    same = all(f.outcomes == base.outcomes for f in figures)
    lines.append(f"outcomes ({'identical in every variant' if same else 'DIFFER'}): {outcomes}")
    return "\n".join(lines)
