"""Dialled numbers, caller ids, endpoints and sources through the pipeline on the three
backends: no exception escapes, and every backend decides the same, step by step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.call import CallRequest
from dialplan.pipeline import Pipeline, Result
from dialplan.text import unprintable
from models.directory import SqlDirectory
from models.provisioning import DEMO_DATASET
from models.provisioning.syntax import read_yaml
from tests.fuzz.conftest import Loop, count

TARGET = "pipeline"
DEMO: dict[str, Any] = read_yaml(DEMO_DATASET.read_text(encoding="utf-8"))
ENDPOINTS = sorted(
    [t["name"] for c in DEMO["clients"] for t in c.get("terminals", [])]
    + [k["endpoint"] for b in DEMO["brands"] for k in b.get("carriers", [])]
)
DDIS = sorted(d["e164"] for c in DEMO["clients"] for d in c.get("ddis", []))

_junk = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789+*#\x00\n\r\t \udcff\u202e.,;'\"-abcABC", max_size=20),
    st.sampled_from(["x" * 10_000, "9" * 300, "+" + "3" * 40, ""]),
)
_endpoint = st.one_of(
    st.sampled_from(ENDPOINTS),
    st.sampled_from(ENDPOINTS),
    st.sampled_from(ENDPOINTS),
    st.sampled_from(ENDPOINTS).map(str.upper),
    st.sampled_from(ENDPOINTS).map(lambda name: name + " "),
    _junk,
)
_number = st.one_of(
    st.from_regex(r"\+?[0-9]{1,16}", fullmatch=True),
    st.from_regex(r"[0-9]{1,3}\*[0-9]{3,12}", fullmatch=True),  # DDI prefix patterns
    st.from_regex(r"\*[0-9]{1,4}[0-9]{0,9}", fullmatch=True),  # service codes
    st.sampled_from(DDIS),
    st.sampled_from(DDIS).map(lambda ddi: ddi.lstrip("+")),
    st.sampled_from(["101", "102", "201", "600123123", "803123456", "911", "112"]),
    _junk,
)
_source = st.one_of(
    st.none(),
    st.ip_addresses().map(str),
    st.sampled_from(["198.51.100.20", "203.0.113.9", "not-an-ip", "1.2.3.4\x00", "::1%eth0"]),
)
_at = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


def _comparable(result: Result) -> tuple[Any, ...]:
    """The decision and every step's verdict, without timings."""
    trace = tuple(
        (v.step, v.verdict, v.summary, tuple(sorted(v.details.items()))) for v in result.trace
    )
    return (repr(result.decision), trace)


@st.composite
def requests(draw: st.DrawFn) -> CallRequest:
    return CallRequest(
        call_id="fuzz",
        endpoint=draw(_endpoint),
        dialled=draw(_number),
        at=draw(_at),
        caller_id=draw(st.one_of(st.none(), _number)),
        source_ip=draw(_source),
    )


async def _decide(engine: AsyncEngine, request: CallRequest) -> Result:
    return await Pipeline(SqlDirectory(engine)).run(request)


@settings(settings.get_profile("fuzz"), max_examples=600)
@given(request=requests())
def test_every_backend_decides_a_call_the_same_and_nothing_escapes(
    loop: Loop, demo_loaded: dict[str, AsyncEngine], request: CallRequest
) -> None:
    count(TARGET, "tried")
    decided = {}
    for backend, engine in demo_loaded.items():
        try:
            result = loop.run(_decide(engine, request))
        except Exception:
            count(TARGET, "escaped exception")
            raise
        decided[backend] = _comparable(result)
        # what the trace says goes to the logs: one printable line each
        for verdict in result.trace:
            if unprintable(verdict.summary) is not None:
                count(TARGET, "unprintable verdict")
            assert unprintable(verdict.summary) is None, verdict
    decision = result.decision
    count(TARGET, getattr(decision, "reason", None) or type(decision).__name__)
    if len(set(decided.values())) != 1:
        count(TARGET, "backends differ")
    assert len(set(decided.values())) == 1, decided
