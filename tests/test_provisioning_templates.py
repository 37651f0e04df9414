"""Provisioning test-renders every notification template under the service's limits and
refuses one over them, naming its path; the database is left untouched."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.errors import ProvisioningError
from models.provisioning import dump_yaml, export_document, load_text
from models.template_worker import RenderLimits
from tests.test_cli import cli
from tests.test_provisioning_invalid import BASE, north
from tests.test_template_worker import DOUBLINGS, NESTED_LOOPS

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""The renders do not depend on the database: one backend is enough."""


def template(name: str, *, subject: str = "Limit for {{ client }}", body: str = "x") -> Any:
    return {
        "name": name,
        "type": "max_daily_usage",
        "contents": [
            {
                "language": "en",
                "from_name": "Ops",
                "from_address": "ops@example.com",
                "subject": subject,
                "body": body,
            }
        ],
    }


def with_template(where: str, entry: dict[str, Any]) -> str:
    document = copy.deepcopy(BASE)
    owner = {"generic": document, "brand": document["brands"][0], "client": north(document)}[where]
    owner.setdefault("templates", []).append(entry)
    return dump_yaml(document)


@SQLITE
@pytest.mark.parametrize(
    ("where", "entry", "error"),
    [
        (
            "client",
            template("bomb", body=NESTED_LOOPS),
            "clients[0].templates[1].contents[0].body: renders over the CPU limit (1 s)",
        ),
        (
            "generic",
            template("bomb", body=DOUBLINGS),
            "templates[0].contents[0].body: renders over the memory limit (256 MiB)",
        ),
        (
            "brand",
            template("long", subject="{{ 'x' * 1001 }}"),
            "brands[0].templates[0].contents[0].subject: renders more than 1000 characters",
        ),
    ],
    ids=["cpu", "memory", "output"],
)
async def test_a_template_over_a_limit_is_refused_with_its_path(
    engine: AsyncEngine, where: str, entry: dict[str, Any], error: str
) -> None:
    began = time.monotonic()
    with pytest.raises(ProvisioningError) as raised:
        await load_text(engine, with_template(where, entry))

    assert str(raised.value) == error
    assert time.monotonic() - began < 10
    assert (await export_document(engine)).get("clients", []) == []  # nothing written


@SQLITE
async def test_the_limits_given_are_the_ones_applied_and_only_overruns_are_refused(
    engine: AsyncEngine,
) -> None:
    limits = RenderLimits(cpu=0, wall=0.3)
    # A syntax error is refused, in one line, when the e-mail is rendered (as before).
    broken = with_template("client", template("broken", body="{% for x in lines %}"))
    bomb = with_template("client", template("bomb", body=NESTED_LOOPS))

    assert (await load_text(engine, broken, limits=limits)).created > 0
    with pytest.raises(ProvisioningError, match=r"renders over the time limit \(0.3 s\)$"):
        await load_text(engine, bomb, limits=limits)


def test_callcontrol_provision_renders_under_the_configured_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli("db", "upgrade", "--database-url", url)[0] == 0
    document = tmp_path / "platform.yaml"
    document.write_text(with_template("client", template("bomb", body=NESTED_LOOPS)))
    monkeypatch.setenv("CALLCONTROL_TEMPLATE_CPU_LIMIT", "0.25")

    code, out, err = cli("provision", str(document), "--database-url", url)

    assert (code, out) == (1, "")
    assert err == (
        "error: clients[0].templates[1].contents[0].body: renders over the CPU limit (0.25 s)\n"
    )
