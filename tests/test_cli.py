"""The command line, as an operator uses it: one-line errors, non-zero exits, JSON explain."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from callcontrol.cli import app
from models.migrate import head
from models.provisioning import DEMO_DATASET

AT = "2026-11-25T11:30:00+01:00"


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'demo.db'}"
    assert cli("db", "upgrade", "--database-url", url)[0] == 0
    code, out, _ = cli("provision", str(DEMO_DATASET), "--database-url", url)
    assert code == 0, out
    return url


def explain(url: str, frm: str, to: str, *extra: str) -> dict[str, Any]:
    code, out, err = cli(
        "explain", "--from", frm, "--to", to, "--at", AT, "--json", "--database-url", url, *extra
    )
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def test_db_upgrade_twice_reports_the_same_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    first = cli("db", "upgrade", "--database-url", url)
    second = cli("db", "upgrade", "--database-url", url)
    assert first[0] == second[0] == 0
    assert first[1] == second[1]
    assert first[1].startswith("database at revision ")


def test_explain_internal_call(demo_db: str) -> None:
    result = explain(demo_db, "acme-north-ana", "102", "--client", "acme-north")
    assert result["route"] == "internal"
    assert result["decision"]["kind"] == "dial"
    assert result["decision"]["endpoint"] == "acme-north-bruno"
    assert [s["step"] for s in result["steps"]] == [
        "identify",
        "source_filter",
        "emergency",
        "route",
        "call_acl",
        "max_calls",
        "daily_usage",
        "outgoing_ddi",
        "billing",
        "recording",
        "connect",
    ]


def test_explain_external_call(demo_db: str) -> None:
    result = explain(demo_db, "acme-north-ana", "600123123", "--duration", "61")
    assert result["route"] == "external"
    assert result["decision"]["number"] == "+34600123123"
    assert result["decision"]["caller_id"] == "+34910000100"
    ddi = next(s for s in result["steps"] if s["step"] == "outgoing_ddi")
    assert ddi["details"]["rule"] == "acme-north-presentation (client's)"
    # standard-eur's 346 rate: 0.02 fee + 0.035/min, 30/6 increments: 61 s bill 66 s.
    assert result["decision"]["billing"] == {
        "rating_plan": "standard-eur",
        "profile_active_since": "2024-12-31T23:00:00+00:00",
        "prefix": "346",
        "destination": "Spain mobile",
        "currency": "EUR",
        "price_per_minute": "0.0350",
        "connection_fee": "0.0200",
        "increments": "30/6",
        "max_duration": None,
        "answered": True,
        "duration": 61,
        "billed_seconds": 66,
        "price": "0.0585",
    }


def test_explain_prints_the_ddi_the_rate_and_the_price_in_words(demo_db: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "explain",
            "--from",
            "acme-north-ana",
            "--to",
            "111*600123123",
            "--duration",
            "0",
            "--at",
            "2026-11-25T10:30:00",
            "--database-url",
            demo_db,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "pattern 1 prefix 111* forces +34910000102" in result.output
    assert "rating plan" in result.output or "standard-eur" in result.output
    assert "answered for 0 s: price 0.0200 EUR (0 s billed, increments 30/6" in result.output


def test_explain_says_whether_a_call_is_recorded_and_why(demo_db: str) -> None:
    recorded = explain(demo_db, "acme-north-ana", "*5600123123")
    plain = explain(demo_db, "thames-george", "02079460123")  # thames has no recordings
    assert recorded["decision"]["number"] == "+34600123123"
    assert recorded["decision"]["recording"] == {
        "from_answer": True,
        "dtmf_code": "5",
        "why": "service code *5 dialled: recorded from answer;"
        " *5 during the call starts and stops a segment",
    }
    step = next(s for s in plain["steps"] if s["step"] == "recording")
    assert plain["decision"]["recording"] is None
    assert (step["verdict"], step["summary"]) == ("skip", "feature recordings is off")


def test_explain_service_code(demo_db: str) -> None:
    result = explain(demo_db, "acme-north-ana", "*5")
    assert result["decision"] == {"code": "5", "kind": "service"}


def test_explain_inter_vpbx_within_a_corporation(demo_db: str) -> None:
    result = explain(demo_db, "acme-south-dario", "102")
    assert result["route"] == "inter_vpbx"
    assert result["decision"]["endpoint"] == "acme-north-bruno"


def test_explain_inter_vpbx_across_corporations_is_refused(demo_db: str) -> None:
    result = explain(demo_db, "hudson-front-desk", "101")
    assert result["decision"]["reason"] == "invalid_number"
    assert result["decision"]["cause"] == {"ari": "number_incomplete", "sip": 484}


def test_explain_invalid_number(demo_db: str) -> None:
    result = explain(demo_db, "thames-george", "998")
    assert result["decision"]["reason"] == "invalid_number"
    assert result["decision"]["locution"]["played"] is True


def test_explain_an_emergency_number_of_the_clients_country(demo_db: str) -> None:
    # 999 is the UK's (the demo's list): thames-george (GB) dials it through the carrier.
    result = explain(demo_db, "thames-george", "999")
    assert result["decision"]["kind"] == "dial"
    assert result["decision"]["number"] == "999"
    emergency = next(s for s in result["steps"] if s["step"] == "emergency")
    assert emergency["details"]["emergency"] == "yes"


def test_explain_unknown_ddi_is_no_client(demo_db: str) -> None:
    result = explain(demo_db, "carrier-uk", "+442079460999")
    assert result["client"] is None
    assert result["decision"]["reason"] == "no_client"
    assert result["decision"]["cause"]["sip"] == 404


def test_explain_acl_deny_says_which_rule_and_speaks_spanish(demo_db: str) -> None:
    result = explain(demo_db, "acme-north-bruno", "905123456")
    assert result["decision"]["reason"] == "not_allowed"
    acl = next(s for s in result["steps"] if s["step"] == "call_acl")
    assert acl["verdict"] == "decide"
    assert acl["details"]["match_list"] == "premium"
    assert result["decision"]["locution"]["language"] == "es"
    assert result["decision"]["locution"]["text"].startswith("No tiene permiso")


def test_explain_human_output_lists_every_step_and_the_decision(demo_db: str) -> None:
    code, out, _ = cli(
        "explain", "--from", "acme-north-bruno", "--to", "905123456", "--database-url", demo_db
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("call acme-north-bruno → 905123456 at ")
    assert lines[5].split()[:2] == ["call_acl", "decide"]
    assert lines[-1].startswith("decision: reject not_allowed: hang up with rejected (SIP 403)")


def test_explain_refuses_a_call_of_another_client(demo_db: str) -> None:
    code, out, err = cli(
        "explain",
        "--client",
        "acme-south",
        "--from",
        "acme-north-ana",
        "--to",
        "102",
        "--database-url",
        demo_db,
    )
    assert code == 1
    assert out == ""
    assert err == "error: acme-north-ana → 102 is a call of client 'acme-north', not 'acme-south'\n"


def test_explain_with_a_bad_time_is_one_line(demo_db: str) -> None:
    code, _, err = cli(
        "explain", "--from", "a", "--to", "1", "--at", "yesterday", "--database-url", demo_db
    )
    assert code == 1
    assert err.count("\n") == 1
    assert "--at 'yesterday' is not an ISO 8601 time" in err


def test_explain_on_an_unmigrated_database_says_what_to_run(tmp_path: Path) -> None:
    code, _, err = cli(
        "explain", "--from", "a", "--to", "1", "--database-url", f"sqlite:///{tmp_path / 'new.db'}"
    )
    assert code == 1
    assert err.count("\n") == 1
    assert "run `callcontrol db upgrade`" in err


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    code, _, err = cli(
        "explain",
        "--from",
        "a",
        "--to",
        "1",
        "--database-url",
        "postgresql://nobody@127.0.0.1:9/none",
    )
    assert code == 1
    assert err.count("\n") == 1
    assert "unavailable" in err


def test_an_unknown_url_scheme_is_one_line() -> None:
    code, _, err = cli("db", "upgrade", "--database-url", "oracle://x/y")
    assert code == 1
    assert err == "error: unsupported database URL scheme 'oracle'\n"


def test_provision_an_invalid_file_changes_nothing_and_says_where(
    tmp_path: Path, demo_db: str
) -> None:
    before = cli("provision", "--export", "--database-url", demo_db)[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        DEMO_DATASET.read_text(encoding="utf-8").replace("max_calls: 4", "max_calls: -4"),
        encoding="utf-8",
    )
    code, out, err = cli("provision", str(bad), "--database-url", demo_db)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: clients[1].max_calls: ")
    assert cli("provision", "--export", "--database-url", demo_db)[1] == before


def test_provision_a_missing_file_is_one_line(demo_db: str) -> None:
    code, _, err = cli("provision", "/nonexistent/platform.yaml", "--database-url", demo_db)
    assert code == 1
    assert err.count("\n") == 1


def test_provision_needs_a_file_or_export(demo_db: str) -> None:
    code, _, err = cli("provision", "--database-url", demo_db)
    assert code == 1
    assert err == "error: give a YAML file to load, or --export\n"


def test_export_to_a_file_reloads_with_no_change(tmp_path: Path, demo_db: str) -> None:
    target = tmp_path / "export.yaml"
    assert cli("provision", "--export", str(target), "--database-url", demo_db)[0] == 0
    code, out, _ = cli("provision", str(target), "--database-url", demo_db)
    assert code == 0
    assert out == "no changes\n"


def test_export_into_a_missing_folder_writes_nothing(tmp_path: Path, demo_db: str) -> None:
    code, _, err = cli(
        "provision", "--export", str(tmp_path / "no" / "x.yaml"), "--database-url", demo_db
    )
    assert code == 1
    assert "does not exist" in err
    assert not (tmp_path / "no").exists()


def test_the_demo_explains_its_calls_and_ends() -> None:
    code, out, _ = cli("demo")
    assert code == 0
    assert "provisioned demo.yaml: " in out
    assert out.count("\ndecision: ") == 8
    assert out.count("\non the line: ") == 8
    assert "on the line: answered, caller hung up" in out
    assert "on the line: callee failed, hang-up cause busy" in out
    assert "on the line: no outcome" not in out
    counted = [line for line in out.splitlines() if line.startswith("  callcontrol_calls_total{")]
    assert sum(float(line.split()[-1]) for line in counted) == 8
    assert '  callcontrol_calls_total{client="acme-north",outcome="answered"} 2.0' in counted
    assert out.rstrip().endswith("callcontrol simulate --help")


def test_bench_explain_runs_small_and_every_variant_decides_the_same() -> None:
    code, out, _ = cli(
        "bench", "explain", "--clients", "20", "--users", "2", "--decisions", "300", "--rate", "300"
    )
    assert code == 0
    assert re.search(
        r"sqlite: configuration snapshot of 20 clients, 40 terminals, .* loaded in", out
    )
    assert "outcomes (identical in every variant)" in out


def test_explain_shows_the_source_filter_slots_and_daily_usage(demo_db: str) -> None:
    # seine-studio filters by source: its studio network (198.51.100.0/24) or France.
    inside = explain(demo_db, "seine-margaux", "22", "--source-ip", "198.51.100.20")
    outside = explain(demo_db, "seine-margaux", "22", "--source-ip", "203.0.113.9")
    external = explain(demo_db, "acme-north-ana", "600123123")
    assert inside["decision"]["kind"] == "dial"
    source = next(s for s in inside["steps"] if s["step"] == "source_filter")
    assert source["details"]["matched"] == "198.51.100.0/24"
    assert outside["decision"]["reason"] == "ip_not_allowed"
    assert outside["decision"]["locution"]["played"]  # the platform speaks, feature or not
    slots = next(s for s in external["steps"] if s["step"] == "max_calls")
    daily = next(s for s in external["steps"] if s["step"] == "daily_usage")
    assert slots["summary"] == "0 of 10 concurrent external calls in use"
    assert daily["details"] == {
        "day": "2026-11-25",
        "spent": "0.0000",
        "limit": "50.0000",
    }


def test_run_refuses_to_start_when_a_client_filters_by_country_without_geoip(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'geo.db'}"
    assert cli("db", "upgrade", "--database-url", url)[0] == 0
    document = DEMO_DATASET.read_text(encoding="utf-8").replace(
        '    authorized_sources: [198.51.100.0/24, "2001:db8:100::/48"]\n',
        '    authorized_sources: [198.51.100.0/24, "2001:db8:100::/48"]\n'
        "    geoip_countries: [FR]\n",
    )
    assert "geoip_countries: [FR]" in document
    (tmp_path / "geo.yaml").write_text(document, encoding="utf-8")
    assert cli("provision", str(tmp_path / "geo.yaml"), "--database-url", url)[0] == 0
    code, _, err = cli("run", "--database-url", url, "--health-port", "0")
    assert code == 1
    assert err.strip().splitlines() == [
        "error: client seine-studio filters calls by country (GeoIP) but geoip_database is not set"
    ]


@pytest.mark.parametrize(("what", "option"), [("health", "--health-port"), ("FastAGI", None)])
def test_run_names_a_port_it_cannot_listen_on_in_one_line(
    what: str, option: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'ports.db'}"
    assert cli("db", "upgrade", "--database-url", url)[0] == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["run", "--database-url", url, "--health-port", "0"]
        if option is None:
            monkeypatch.setenv("CALLCONTROL_FASTAGI_PORT", str(port))
        else:
            args[-1] = str(port)
        code, _, err = cli(*args)
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} for {what} ({os.strerror(errno.EADDRINUSE)}): "
        f"change {what.lower()}_port or stop what holds it"
    ]


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--to", "\udcff", "--to holds invalid Unicode U+DCFF at position 1"),
        ("--to", "6001\x01", "--to holds the control character U+0001 at position 5"),
        ("--from", "north\nana", "--from holds the control character U+000A at position 6"),
    ],
)
def test_explain_refuses_control_characters_and_invalid_unicode_in_one_line(
    demo_db: str, option: str, value: str, says: str
) -> None:
    args = {"--from": "acme-north-ana", "--to": "600123123", option: value}
    code, out, err = cli(
        "explain", "--from", args["--from"], "--to", args["--to"], "--database-url", demo_db
    )
    assert code == 1
    assert out == ""
    assert err == f"error: {says}: not a name or a number\n"


@pytest.mark.parametrize(
    "command",
    [
        ["asterisk", "render", "out"],
        ["asterisk", "kamailio", "out"],
        ["asterisk", "sandbox", "up"],
        ["explain", "--from", "a", "--to", "1"],
        ["provision", "x.yaml"],
        ["db", "upgrade"],
    ],
)
def test_a_config_file_that_is_not_toml_is_one_line_for_every_command(
    tmp_path: Path, command: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("ari_password = [\n")
    code, out, err = cli(*command, "--config", str(bad))
    assert out == ""
    assert code == 1
    assert err == f"error: config file {bad}: Invalid value (at end of document)\n"


# -- a first run ----------------------------------------------------------------------------


def test_provision_creates_the_schema_of_a_new_sqlite_file_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "first.db"
    code, out, err = cli("provision", str(DEMO_DATASET), "--database-url", f"sqlite:///{path}")
    assert code == 0, err
    created, loaded = out.splitlines()
    assert created == f"created the schema (revision {head()}) in {path}"
    assert loaded.endswith(" created, 0 updated, 0 deleted")
    again = cli("provision", str(DEMO_DATASET), "--database-url", f"sqlite:///{path}")
    assert again[0] == 0
    assert "created the schema" not in again[1]


def test_provision_leaves_a_sqlite_file_holding_other_tables_alone(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    connection.close()
    code, out, err = cli("provision", str(DEMO_DATASET), "--database-url", f"sqlite:///{path}")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert f"is at revision none, not {head()}: run `callcontrol db upgrade`" in err


async def test_provision_creates_no_schema_on_a_server(db_url: str) -> None:
    import asyncio

    from models.migrate import current_revision, downgrade, upgrade

    await asyncio.to_thread(downgrade, db_url, "base")
    try:
        code, out, err = await asyncio.to_thread(
            cli, "provision", str(DEMO_DATASET), "--database-url", db_url
        )
        revision = await current_revision(db_url)
    finally:
        await asyncio.to_thread(upgrade, db_url)
    if db_url.startswith("sqlite"):  # a file emptied by the downgrade: a first run
        assert code == 0, err
        assert out.startswith(f"created the schema (revision {head()}) in ")
        assert revision == head()
    else:
        assert code == 1
        assert err.count("\n") == 1
        assert f"is at revision none, not {head()}: run `callcontrol db upgrade`" in err
        assert revision is None
