"""``callcontrol demo --platform`` without a platform: what it says when something is
missing, and how it reads the demo's terminals and a server's /metrics (the run itself is
tests/e2e/test_platform_demo.py)."""

from __future__ import annotations

import socket

import pytest
import yaml
from typer.testing import CliRunner

from callcontrol.cli import app
from callcontrol.platform.demo import Counter, Handled, demo_terminals, parse_counted
from callcontrol.platform.processes import PlatformError
from models.provisioning import DEMO_DATASET
from tests.ports import free_port


def test_without_a_postgresql_url_it_says_which_option_to_give_and_exits_1() -> None:
    result = CliRunner().invoke(app, ["demo", "--platform"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: demo --platform needs a PostgreSQL server")
    assert "--postgresql postgresql://" in lines[0]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://root@127.0.0.1/test", "--postgresql: a postgresql:// URL, not mysql"),
        ("not a url", "--postgresql 'not a url': not a database URL"),
    ],
)
def test_a_url_of_another_kind_is_refused_before_anything_starts(url: str, said: str) -> None:
    result = CliRunner().invoke(app, ["demo", "--platform", "--postgresql", url])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {said}")


def test_the_platform_options_go_with_platform_only() -> None:
    result = CliRunner().invoke(app, ["demo", "--postgresql", "postgresql://x@127.0.0.1/db"])
    assert result.exit_code == 1
    assert result.stderr == "error: --postgresql and --cache go with --platform\n"


def test_every_demo_terminal_is_known_with_its_clients_domain() -> None:
    document = yaml.safe_load(DEMO_DATASET.read_text(encoding="utf-8"))
    terminals = demo_terminals(document)
    assert terminals["acme-north-ana"].domain == "acme-north.iberia-voice.example.es"
    assert terminals["hudson-front-desk"].domain == "hudson-dental.atlantic-tel.example.com"
    assert len(terminals) == 11
    # A password is never shown in a terminal's repr.
    assert "ana-demo-secret" not in repr(terminals["acme-north-ana"])


def test_the_calls_counted_are_read_from_a_metrics_page() -> None:
    page = "\n".join(
        [
            "# TYPE callcontrol_calls_total counter",
            'callcontrol_calls_total{client="acme-north",outcome="answered"} 2.0',
            'callcontrol_calls_total{client="-",outcome="no_client"} 1.0',
            'callcontrol_active_calls{client="acme-north"} 0.0',
        ]
    )
    assert parse_counted(page) == {("acme-north", "answered"): 2.0, ("-", "no_client"): 1.0}


def test_each_call_line_says_who_handled_it() -> None:
    assert Handled("200 OK", "as-1", "acme-north", "answered").line() == (
        "on the platform: server as-1 handled it (client acme-north, outcome answered); "
        "the caller got 200 OK"
    )
    assert Handled("404 No such number", by_edge=True).line() == (
        "on the platform: the edge answered 404 No such number itself; no server saw it"
    )
    assert Handled("no final answer within 30 s").line() == (
        "on the platform: the caller got no final answer within 30 s; no server counted the call"
    )


async def test_a_server_whose_metrics_do_not_answer_stops_the_demo_with_one_line() -> None:
    port = free_port(socket.SOCK_STREAM)  # nothing listens there
    counter = Counter({"as-1": "127.0.0.1"}, port)
    with pytest.raises(PlatformError, match=rf"^http://127.0.0.1:{port}/metrics did not answer: "):
        await counter.start()
