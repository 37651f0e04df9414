"""Mutations of the demo provisioning document on SQLite, PostgreSQL and MariaDB.

For every mutated document, on each backend: a refusal is one line that names a path
(or a line and column of the YAML) and leaves every row as it was; an accepted document
loads again as "no changes", and so does its export. All three backends give the same
answer.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import models
from dialplan.errors import ProvisioningError
from models.platform import ConfigVersion
from models.provisioning import DEMO_DATASET, dump_yaml, export_document, load_text
from models.provisioning.syntax import read_yaml
from tests.fuzz.conftest import Loop, count

BASE: dict[str, Any] = read_yaml(DEMO_DATASET.read_text(encoding="utf-8"))
BASE_TEXT = dump_yaml(BASE)
TARGET = "provisioning"

Path = tuple[str | int, ...]


def _paths(node: Any, at: Path = ()) -> list[Path]:
    found = [at] if at else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*at, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*at, index))
    return found


PATHS = _paths(BASE)

_hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="\x00\x01\x1b\n\r\t\u2028\u202e\ufeff '\"[]{};#,:\\&*!|>%@`", max_size=12),
    st.sampled_from(["x" * 64, "x" * 65, "x" * 128, "x" * 129, "x" * 256, "x" * 20_000]),
    st.sampled_from(["ACME-NORTH", "acme-north ", "acme-nórth", "PREMIUM", "+34910000101"]),
)
_values = st.recursive(
    st.one_of(
        _hostile_text,
        st.integers(min_value=-(2**70), max_value=2**70),
        st.decimals(allow_nan=False, allow_infinity=True),
        st.just(Decimal("NaN")),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_hostile_text, inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The demo document with one mutation, as YAML text."""
    document: Any = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["replace", "delete", "add-key", "duplicate", "text"]))
    if kind == "text":  # the YAML text itself: cut, or hostile characters inserted
        text = BASE_TEXT
        at = draw(st.integers(0, len(text)))
        insert = draw(st.one_of(st.just(""), _hostile_text))
        return text[:at] + insert if not insert else text[:at] + insert + text[at:]
    path = draw(st.sampled_from(PATHS))
    parent: Any = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if kind == "replace":
        parent[last] = draw(_values)
    elif kind == "delete":
        del parent[last]
    elif kind == "add-key" and isinstance(parent[last], dict):
        parent[last][draw(_hostile_text)] = draw(_values)
    elif kind == "duplicate" and isinstance(parent, list) and isinstance(last, int):
        parent.append(copy.deepcopy(parent[last]))
    else:
        parent[last] = draw(_values)
    return dump_yaml(document)


async def _state(engine: AsyncEngine) -> tuple[Any, ...]:
    """The configuration version and every table's row count, in one round trip: a load
    that wrote anything and committed changed the version; one that wrote part of the
    document without committing would show in the counts."""
    tables = models.Base.metadata.sorted_tables
    counts = [select(func.count()).select_from(table).scalar_subquery() for table in tables]
    async with engine.connect() as connection:
        row = (await connection.execute(select(_VERSION, *counts))).one()
    return tuple(row)


_VERSION = select(ConfigVersion.version).where(ConfigVersion.id == 1).scalar_subquery()
_LOCATED = re.compile(r"^fuzz\.yaml(, line \d+, column \d+)?: ")


def _clear(error: ProvisioningError) -> bool:
    """One line, short, and naming where: a path, or the YAML's line and column."""
    text = str(error)
    if "\n" in text or len(text) > 400 or not text.isprintable():
        return False
    if error.path:
        return text.startswith(f"{error.path}: ")
    return bool(_LOCATED.match(text)) and "database refused" not in text


async def _try(engine: AsyncEngine, text: str) -> str:
    """Load ``text``; the outcome as one comparable string, after checking its promises."""
    before = await _state(engine)
    refusal: ProvisioningError | None
    try:
        report = await load_text(engine, text, "fuzz.yaml")
    except ProvisioningError as error:
        refusal = error
    else:
        refusal = None
    if refusal is not None:
        assert _clear(refusal), f"unclear refusal: {refusal}"
        assert await _state(engine) == before, f"rows changed by a refused load: {refusal}"
        return f"refused {refusal}"
    assert str(await load_text(engine, text, "fuzz.yaml")) == "no changes"
    exported = dump_yaml(await export_document(engine))
    assert str(await load_text(engine, exported, "export.yaml")) == "no changes"
    # back to the demo for the next example (clients a mutation renamed stay: the same
    # on every backend, so the backends still see the same database)
    await load_text(engine, BASE_TEXT)
    return f"accepted {report}"


@settings(settings.get_profile("fuzz"), max_examples=120)
@given(text=mutated())
def test_a_mutated_document_is_loaded_or_refused_alike_on_every_backend(
    loop: Loop, demo_loaded: dict[str, AsyncEngine], text: str
) -> None:
    count(TARGET, "tried")
    outcomes = {}
    for backend, engine in demo_loaded.items():
        try:
            outcomes[backend] = loop.run(_try(engine, text))
        except AssertionError:
            count(TARGET, "broken promise")
            raise
        except Exception:
            count(TARGET, "escaped exception")
            raise
    count(TARGET, outcomes["sqlite"].split()[0])
    if len(set(outcomes.values())) != 1:
        count(TARGET, "backends differ")
    assert len(set(outcomes.values())) == 1, outcomes
