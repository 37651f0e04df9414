"""No secret in any line callcontrol logs or prints: the service at DEBUG on the simulated
Asterisk, the commands' error lines, and the masking filter on captured records."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from panoramisk import actions
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol import masking
from callcontrol.cli import app
from callcontrol.config import Config
from callcontrol.masking import Masker, shown_url
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from tests.ports import free_port
from tests.simulator_helpers import APP, USER, fast_config
from tests.test_service import bridged, until

pytest_plugins = ["tests.test_service"]

ARI_SECRET = "Ari-Pw-7f3q"
TOKEN_SECRET = "Tok-9vX2-console"
SMTP_SECRET = "Smtp-Pw-k8z1"
DB_SECRET = "Db-Pw-m4n5"
BASIC = base64.b64encode(f"{USER}:{ARI_SECRET}".encode()).decode()
SECRETS = (ARI_SECRET, TOKEN_SECRET, SMTP_SECRET, DB_SECRET, BASIC)


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(fast_config(tmp_path / "recordings", password=ARI_SECRET)) as running:
        yield running


async def test_the_service_at_debug_logs_no_secret(
    sim: Simulator, demo_engine: AsyncEngine, control: ControlClient, tmp_path: Path
) -> None:
    port = free_port(socket.SOCK_STREAM)
    environment = {
        **os.environ,
        "CALLCONTROL_DATABASE_URL": str(demo_engine.url),
        "CALLCONTROL_ARI_URL": sim.url,
        "CALLCONTROL_ARI_USER": USER,
        "CALLCONTROL_ARI_PASSWORD": ARI_SECRET,
        "CALLCONTROL_APP": APP,
        "CALLCONTROL_HEALTH_PORT": str(port),
        "CALLCONTROL_CONSOLE_TOKEN": TOKEN_SECRET,
        "CALLCONTROL_SMTP_USER": "mailer",
        "CALLCONTROL_SMTP_PASSWORD": SMTP_SECRET,
        "CALLCONTROL_LOG_LEVEL": "DEBUG",
        "CALLCONTROL_SHUTDOWN_TIMEOUT": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcontrol",
        "run",
        env=environment,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: _has_app(control), within=20)
        call = str((await control.call("acme-north-ana", "102"))["id"])
        await bridged(control, call)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN_SECRET}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for path in ("/health", "/metrics", "/calls"):
                async with http.get(base + path) as response:
                    assert response.status == 200
                    assert not leaked(await response.text())
            async with http.post(f"{base}/calls/{call}/hangup") as response:
                assert response.status == 202
        assert (await control.wait_gone(call, within=5))["gone"]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 20)
    printed = out.decode() + err.decode()
    assert "api_key=***" in printed  # the request lines are there, masked
    assert f"operator at 127.0.0.1: hangup of call {call}: done (202)" in printed
    assert leaked(printed) == []


async def _has_app(control: ControlClient) -> bool:
    return APP in await control.apps()


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def unreachable_database() -> str:
    port = free_port(socket.SOCK_STREAM)  # nothing listens there
    return f"postgresql://callcontrol:{DB_SECRET}@127.0.0.1:{port}/platform"


@pytest.mark.parametrize(
    "command",
    [
        ["provision", "demo.yaml"],
        ["provision", "--export"],
        ["explain", "--from", "acme-north-ana", "--to", "102"],
        ["db", "upgrade"],
        ["run", "--health-port", "0"],
    ],
)
def test_a_command_on_an_unreachable_database_prints_no_password(command: list[str]) -> None:
    url = unreachable_database()
    code, printed = cli(*command, "--database-url", url)
    assert code == 1
    assert "unavailable" in printed
    assert leaked(printed) == []


def test_a_database_url_that_is_not_one_is_named_without_its_password() -> None:
    code, printed = cli(
        "provision", "demo.yaml", "--database-url", f"postgresql//u:{DB_SECRET}@h/x"
    )
    assert (code, printed) == (
        1,
        "error: 'h/x' is not a database URL (e.g. sqlite:///callcontrol.db)\n",
    )


async def test_an_unreachable_asterisk_is_named_without_the_credentials_in_its_url(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    port = free_port(socket.SOCK_STREAM)  # nothing listens there
    environment = {
        **os.environ,
        "CALLCONTROL_DATABASE_URL": str(demo_engine.url),
        "CALLCONTROL_ARI_URL": f"http://{USER}:{ARI_SECRET}@127.0.0.1:{port}/",
        "CALLCONTROL_HEALTH_PORT": "0",
        "CALLCONTROL_RECONNECT_MIN": "0.1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcontrol",
        "run",
        env=environment,
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    printed = ""
    try:
        async with asyncio.timeout(20):
            while "unavailable, retrying" not in printed:
                printed += (await process.stderr.readline()).decode()
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), 20)
    printed += rest.decode()
    assert f"ARI http://127.0.0.1:{port}/ unavailable" in printed
    assert leaked(printed) == []


def test_a_library_line_whose_arguments_change_after_it_is_logged_is_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aioswagger logs its parameters, then adds api_key to the very same dict.
    config = Config(ari_password=ARI_SECRET, console_token=TOKEN_SECRET)
    library = logging.getLogger("tests.secrets.library")
    with caplog.at_level(logging.DEBUG, logger="tests.secrets.library"):
        installed = masking.install(config, [caplog.handler])
        try:
            params = {"app": "callcontrol"}
            library.debug("GET %s(%r)", "http://127.0.0.1:8088/ari/events", params)
            params["api_key"] = f"{USER}:{ARI_SECRET}"
            library.debug("token %s, basic %s", TOKEN_SECRET, BASIC)
            try:
                raise OSError(f"cannot reach http://{USER}:{ARI_SECRET}@127.0.0.1:8088/")
            except OSError:
                library.exception("failed")
        finally:
            caplog.handler.removeFilter(installed)
    assert [record.getMessage() for record in caplog.records] == [
        "GET http://127.0.0.1:8088/ari/events({'app': 'callcontrol'})",
        "token ***, basic ***",
        "failed",
    ]
    assert leaked(caplog.text) == []
    assert "OSError: cannot reach http://***@127.0.0.1:8088/" in caplog.text  # the traceback


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            f"resp=<ClientResponse(http://h:8088/ari/channels?reason=normal&api_key=u:{ARI_SECRET}"
            ") [204 No Content]>",
            "resp=<ClientResponse(http://h:8088/ari/channels?reason=normal&api_key=***) "
            "[204 No Content]>",
        ),
        (
            f"database postgresql+asyncpg://cc:{DB_SECRET}@db/platform is unavailable",
            "database postgresql+asyncpg://cc:***@db/platform is unavailable",
        ),
        (f"{{'Authorization': 'Basic {BASIC}'}}", "{'Authorization': 'Basic ***'}"),
        (f"?password={DB_SECRET}&host=/run", "?password=***&host=/run"),
        (
            f"Action: Login\r\nSecret: {DB_SECRET}\r\nUsername: bench\r\n",
            "Action: Login\r\nSecret: ***\r\nUsername: bench\r\n",
        ),
        (f"{{'Action': 'Login', 'Secret': '{DB_SECRET}'}}", "{'Action': 'Login', 'Secret': '***'}"),
        ("ARI http://127.0.0.1:8088/ connected as app callcontrol", None),
        ("the secret: keep it", None),
    ],
)
def test_secret_shapes_are_masked_whatever_the_secret(text: str, masked: str | None) -> None:
    assert Masker().mask(text) == (text if masked is None else masked)


def test_known_secrets_are_masked_in_their_url_encodings_too() -> None:
    secret = "p@ss w/rd&x"
    config = replace(Config(), ari_password=secret, smtp_password="abc")
    masker = Masker(masking.secrets_of(config))
    assert masker.mask("a p%40ss%20w%2Frd%26x b p%40ss+w%2Frd%26x c p@ss w/rd&x") == (
        "a *** b *** c ***"
    )
    assert masker.mask("abc") == "abc"  # too short to be masked by value


def test_a_shown_url_carries_no_credentials() -> None:
    assert shown_url(f"postgresql://cc:{DB_SECRET}@db:5432/x?password={DB_SECRET}") == (
        "postgresql://db:5432/x?password=***"
    )
    assert shown_url("sqlite:///var/callcontrol.db") == "sqlite:///var/callcontrol.db"
    assert (
        shown_url(f"postgresql://cc:{DB_SECRET}@/x?host=/run/pg") == "postgresql:///x?host=/run/pg"
    )
    assert shown_url(f"https://ari:{ARI_SECRET}@[2001:db8::5]/ari") == "https://[2001:db8::5]/ari"


@pytest.mark.parametrize(
    "ari_url",
    [
        f"http://{USER}:{ARI_SECRET}@[2001:db8::5/",
        f"http://{USER}:{ARI_SECRET}@127.0.0.1:port/",
        f"{USER}:{ARI_SECRET}@127.0.0.1",
    ],
)
def test_an_ari_url_that_is_not_one_is_one_line_without_its_credentials(
    ari_url: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ari.db'}"
    assert cli("db", "upgrade", "--database-url", url)[0] == 0
    environment = {"CALLCONTROL_ARI_URL": ari_url, "CALLCONTROL_ARI_PASSWORD": ARI_SECRET}
    code, printed = cli("run", "--database-url", url, "--health-port", "0", env=environment)
    assert code == 1
    [line] = [line for line in printed.splitlines() if line.startswith("error:")]
    assert line.endswith("is not an http(s) URL")
    assert "Traceback" not in printed
    assert leaked(printed) == []


@pytest.mark.parametrize(
    "toml",
    [
        f'ari_password = "{ARI_SECRET}\n',  # unterminated
        f"console_token = {TOKEN_SECRET}\n",  # not quoted
        f'smtp_password = "{SMTP_SECRET}"\nsmtp_passwrd = "{SMTP_SECRET}"\n',  # a typo
    ],
)
def test_a_config_error_does_not_echo_a_secret(toml: str, tmp_path: Path) -> None:
    (tmp_path / "callcontrol.toml").write_text(toml, encoding="utf-8")
    config = str(tmp_path / "callcontrol.toml")
    code, printed = cli("explain", "--from", "a", "--to", "1", "--config", config)
    assert code == 1
    assert printed.startswith(f"error: {config}") or printed.startswith("error: config file")
    assert len(printed.splitlines()) == 1
    assert leaked(printed) == []


def test_the_fastagi_secret_is_masked_by_value() -> None:
    config = replace(Config(), fastagi_secret="agi-Secret-42")
    masker = Masker(masking.secrets_of(config))
    assert masker.mask("agi://127.0.0.1:4573/decide?s=agi-Secret-42") == (
        "agi://127.0.0.1:4573/decide?s=***"
    )


async def test_an_ami_login_as_panoramisk_logs_it_is_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """panoramisk logs an action it could not send with ``%r`` and one it queues with its
    wire text; the bench's AMI login carries a secret no setting knows."""
    login = actions.Action({"Action": "Login", "Username": "bench", "Secret": DB_SECRET})
    log = logging.getLogger("panoramisk.test")
    with masking.masked(Config()), caplog.at_level(logging.DEBUG, logger="panoramisk.test"):
        log.error(f"Fail to send {login!r}")  # formatted before logging, as panoramisk does
        log.info('Adding action "%s" to awaiting list: %s', "login", str(login))
    assert len(caplog.records) == 2
    assert leaked(caplog.text) == []
    assert "Username: bench" in caplog.records[1].getMessage()
