"""The FastAGI front against hostile peers, on PostgreSQL (which refuses a NUL in text).

Each example is a few exchanges: decided calls with hostile values and hostile end
reports (infinite, huge, negative, not numbers, longer than the call), garbage, huge
lines, requests cut short and requests without the secret. After each example: nothing
escaped a handler, every dialled external call has exactly one CDR whose duration is
within the time since its decision and its cap, no slot is left held, and a valid call
is still decided and ended as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.fastagi import AgiFront
from callcontrol.guards import Guards
from callcontrol.handback import unpack
from callcontrol.writer import EndWriter
from dialplan.pipeline import Pipeline
from models.billing import ActiveCallSlot, BillableCall
from models.cdrs import CdrStore
from models.directory import SqlDirectory
from models.slots import SlotKeeper
from tests.fuzz.conftest import Loop, count
from tests.test_fastagi import Clock, FakeAsterisk
from tests.test_service import CONFIG

TARGET = "fastagi"
BACKENDS = ("postgresql",)
SECRET = "fuzz-secret-0"

_junk = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="0123456789+*#\x00\n\r\t \udcff\u202e\"'\\;:=-abc", max_size=16),
    st.sampled_from(["x" * 5000, "9" * 300, ""]),
)
_known = st.sampled_from(["thames-george", "thames-harriet", "acme-north-ana", "acme-south-dario"])
_numbers = st.sampled_from(["02079460123", "+442079460123", "101", "600123123", "+12025550100"])
_dialled = st.one_of(
    st.from_regex(r"\+?[0-9]{3,14}", fullmatch=True),
    _junk,
)
_milliseconds = st.one_of(
    st.integers(min_value=0, max_value=4_000_000).map(str),
    st.sampled_from(["inf", "-inf", "nan", "1e300", "-5", "99999999999999999999999", "", "x"]),
    _junk,
)


@dataclass
class Call:
    endpoint: str
    dialled: str
    values: dict[str, str]
    talk: int
    """Seconds the clock moves on between the decision and the end report."""
    status: str
    milliseconds: str
    cause: str
    cut: int | None
    """Cut the decide request after this many bytes (and close), when set."""
    secret: str


_header = st.sampled_from(["agi_callerid", "agi_arg_1", "agi_arg_2", "agi_language", "agi_x"])


@st.composite
def calls(draw: st.DrawFn) -> Call:
    """Mostly a real terminal dialling a real number, each part hostile one time in four."""

    def often(usual: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
        return draw(hostile) if draw(st.integers(0, 3)) == 0 else draw(usual)

    return Call(
        endpoint=often(_known, _junk),
        dialled=often(_numbers, _dialled),
        values=often(st.just({}), st.dictionaries(_header, _junk, max_size=2)),
        talk=draw(st.integers(min_value=0, max_value=3_600)),
        status=often(st.just("ANSWER"), st.sampled_from(["NOANSWER", "BUSY", "", "bogus"])),
        milliseconds=draw(_milliseconds),
        cause=often(st.just("16"), st.sampled_from(["17", "", "x", "-1"])),
        cut=often(st.none(), st.integers(min_value=0, max_value=400)),
        secret=often(st.just(SECRET), st.sampled_from(["", "wrong"])),
    )


_garbage = st.one_of(
    st.binary(max_size=600),
    st.just(b"agi_network: yes\nagi_x: " + b"a" * 200_000 + b"\n\n"),
    st.just(b"\n" * 10),
    st.just(b"agi_network_script: decide?secret=" + SECRET.encode() + b"\n"),
)


class Served:
    """The front under test, with its engine, clock and the log records it wrote."""

    def __init__(self, front: AgiFront, engine: AsyncEngine, clock: Clock) -> None:
        self.front = front
        self.engine = engine
        self.clock = clock
        self.errors: list[logging.LogRecord] = []
        self.serial = 0

    def call_id(self) -> str:
        self.serial += 1
        return f"fz-{self.serial}"


class _Errors(logging.Handler):
    def __init__(self, found: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:  # a traceback: something escaped a handler's own care
            self.found.append(record)


@pytest.fixture(scope="module")
def served(
    loop: Loop, demo_loaded: dict[str, AsyncEngine], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    engine = demo_loaded["postgresql"]
    config = replace(CONFIG, server="as-fuzz", fastagi_secret=SECRET)
    keeper = SlotKeeper(engine, "as-fuzz", config)
    clock = Clock()
    store = CdrStore(engine, Path(tmp_path_factory.mktemp("agi")) / "spool")
    loop.run(store.__aenter__())
    front = AgiFront(
        config,
        Pipeline(SqlDirectory(engine)),
        cdrs=store,
        guards=Guards(engine, "as-fuzz", 60.0, keeper),
        writer=EndWriter(store, keeper, linger=0),
        clock=clock,
    )
    loop.run(front.start("127.0.0.1", 0))
    found = Served(front, engine, clock)
    handler = _Errors(found.errors)
    logging.getLogger().addHandler(handler)
    try:
        yield found
    finally:
        logging.getLogger().removeHandler(handler)
        loop.run(front.stop())
        loop.run(store.__aexit__(None, None, None))


async def _raw(port: int, data: bytes) -> None:
    """Send ``data``, answer nothing, and wait (bounded) for the front to close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(10):
            while await reader.read(65536):
                pass
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _variables(commands: list[str]) -> dict[str, str] | None:
    for command in commands:
        if command.startswith("SET VARIABLE CC "):
            return unpack(command.removeprefix("SET VARIABLE CC ").strip('"'))
    return None


async def _rows(engine: AsyncEngine, call_id: str) -> list[Any]:
    async with engine.connect() as connection:
        found = await connection.execute(
            select(BillableCall.duration).where(BillableCall.call_id == call_id)
        )
        return list(found.all())


async def _slots(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(ActiveCallSlot)) or 0)


_CAP = re.compile(r"S\((\d+)\)")


async def _call(served: Served, call: Call) -> None:
    asterisk = FakeAsterisk(served.front.port, call.secret, served.front.settled)
    call_id = served.call_id()
    request = asterisk.call(call_id, call.endpoint, call.dialled, **call.values)
    if call.cut is not None and call.cut < len(request):
        await _raw(served.front.port, request[: call.cut])
        decided = None
    else:
        decided = _variables(await asterisk.send(request))
    served.clock.now += call.talk
    action = decided.get("CC_ACTION") if decided else None
    count(TARGET, f"decided {action or 'nothing'} {decided.get('CC_CAUSE', '') if decided else ''}")
    report = "dial" if action == "dial" else "reject"
    await FakeAsterisk(served.front.port, SECRET, served.front.settled).end(
        call_id, report, call.status, call.milliseconds, call.cause, ""
    )
    rows = await _rows(served.engine, call_id)
    assert len(rows) <= 1, f"{len(rows)} CDRs for one call"
    if decided and action == "dial" and "@carrier" in decided.get("CC_DIAL", ""):
        assert len(rows) == 1, f"no CDR for a dialled external call {call}"
        [(duration,)] = rows
        assert 0 <= duration <= call.talk + 2, (duration, call)
        cap = _CAP.search(decided.get("CC_OPTIONS", "") + decided.get("CC_DIAL", ""))
        if cap is not None:
            assert duration <= int(cap[1]) + 1, (duration, decided)
        count(TARGET, "CDR checked")


async def _control(served: Served) -> None:
    """A valid call is still decided, dialled and ended with its one CDR."""
    asterisk = FakeAsterisk(served.front.port, SECRET, served.front.settled)
    call_id = served.call_id()
    decided = _variables(
        await asterisk.send(asterisk.call(call_id, "thames-george", "02079460123"))
    )
    assert decided is not None
    assert decided["CC_ACTION"] == "dial", decided
    served.clock.now += 10
    await asterisk.end(call_id, "dial", "ANSWER", "5000", "16", "")
    assert await _rows(served.engine, call_id) == [(5,)]


@settings(settings.get_profile("fuzz"), max_examples=500)
@given(exchanges=st.lists(st.one_of(calls(), calls(), calls(), _garbage), min_size=1, max_size=4))
def test_the_front_survives_hostile_peers_and_bills_each_call_once_within_bounds(
    loop: Loop, served: Served, exchanges: list[Call | bytes]
) -> None:
    for exchange in exchanges:
        count(TARGET, "tried")
        if isinstance(exchange, bytes):
            loop.run(_raw(served.front.port, exchange))
        else:
            loop.run(_call(served, exchange))
    assert loop.run(_slots(served.engine)) == 0, "a slot is still held"
    if served.errors:
        count(TARGET, "escaped exception")
    assert not served.errors, [r.getMessage() for r in served.errors]
    loop.run(_control(served))
