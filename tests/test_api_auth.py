"""Logging in to the API: passwords, tokens, their expiry, the limit on failures, TLS
beyond loopback, the first god administrator from the command line, and no secret in
clear in the database or the logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from callcontrol.api.accounts import LoginLimiter
from callcontrol.api.app import build_app
from callcontrol.api.serve import build_server, check_listen
from callcontrol.cli import app as cli
from callcontrol.config import Config
from dialplan.errors import ConfigError
from models.admins import LoginFailure
from models.provisioning.passwords import verify_password
from models.tenants import ClientAdmin
from tests.api_world import PASSWORDS, World, world_on
from tests.ports import free_port


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


async def login(world: World, username: str, password: str) -> int:
    answer = await world.http.post("/api/login", json={"username": username, "password": password})
    return answer.status_code


async def test_a_wrong_password_and_an_unknown_name_are_refused(world: World) -> None:
    assert await login(world, "north-admin", "not-the-password") == 401
    assert await login(world, "nobody", "whatever-it-is") == 401
    assert await login(world, "north-admin", PASSWORDS["north-admin"]) == 200


async def test_an_expired_token_is_refused(world: World) -> None:
    headers = await world.as_("north-admin")
    assert (await world.http.get("/api/clients", headers=headers)).status_code == 200
    world.clock.advance(601)  # the world's tokens live 600 s
    answer = await world.http.get("/api/clients", headers=headers)
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]


async def test_a_made_up_token_is_refused(world: World) -> None:
    answer = await world.http.get("/api/clients", headers={"Authorization": "Bearer made-up"})
    assert answer.status_code == 401


async def test_logout_ends_the_token(world: World) -> None:
    headers = await world.as_("root")
    assert (await world.http.post("/api/logout", headers=headers)).status_code == 204
    assert (await world.http.get("/api/clients", headers=headers)).status_code == 401


async def test_five_failed_logins_then_429_until_the_window_passes(world: World) -> None:
    for _ in range(5):
        assert await login(world, "south-admin", "wrong-password") == 401
    # Even the right password waits now: a guesser learns nothing more.
    assert await login(world, "south-admin", PASSWORDS["south-admin"]) == 429
    assert await login(world, "north-admin", PASSWORDS["north-admin"]) == 200  # another user
    world.clock.advance(301)
    assert await login(world, "south-admin", PASSWORDS["south-admin"]) == 200


async def test_no_password_or_token_is_stored_or_logged_in_clear(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = [await world.login(name) for name in ("root", "iberia-admin", "north-admin")]
    await login(world, "north-admin", "a-wrong-password")
    secrets = [*PASSWORDS.values(), "a-wrong-password", *tokens]
    await world.engine.dispose()  # everything written is in the files now
    files = list(world.database.parent.glob(f"{world.database.name}*"))
    assert files
    stored = b"".join(p.read_bytes() for p in files)
    assert b"north-admin" in stored  # the search does see what the database holds
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret not in caplog.text
    # What is stored does check the password.
    with contextlib.closing(sqlite3.connect(world.database)) as db:
        (hashed,) = db.execute("SELECT password_hash FROM platform_admins WHERE username='root'")
    assert hashed[0].startswith("scrypt$")
    assert verify_password(PASSWORDS["root"], hashed[0])


async def test_the_openapi_description_is_served(world: World) -> None:
    answer = await world.http.get("/api/openapi.json")
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    assert {"/api/login", "/api/clients/{client_id}", "/api/audit"} <= set(paths)


@pytest.mark.parametrize(
    ("host", "cert", "tls"),
    [
        ("127.0.0.1", "", False),
        ("::1", "", False),
        ("localhost", "", False),
        ("0.0.0.0", "c.pem", True),
    ],
)
def test_serving_on_loopback_or_with_tls(host: str, cert: str, tls: bool) -> None:
    key = "k.pem" if cert else ""
    assert check_listen(Config(api_host=host, api_tls_cert=cert, api_tls_key=key)) is tls


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "api.example.com", "::"])
def test_serving_beyond_loopback_without_tls_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        check_listen(Config(api_host=host))


def test_half_a_tls_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="both"):
        check_listen(Config(api_host="127.0.0.1", api_tls_cert="c.pem"))


def test_the_api_command_refuses_a_public_address_without_tls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["api", "serve", "--host", "0.0.0.0", "--database-url", url])
    assert result.exit_code == 1
    assert "not a loopback address" in result.output


def test_the_first_god_administrator_from_the_command_line(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    secret = tmp_path / "secret"
    secret.write_text("god-password-1\n")
    runner = CliRunner()
    made = runner.invoke(
        cli,
        ["admin", "create", "--god", "root", "--password-file", str(secret), "--database-url", url],
    )
    assert made.exit_code == 0, made.output
    assert "god administrator 'root'" in made.output
    from_stdin = runner.invoke(
        cli, ["admin", "create", "--god", "root2", "--database-url", url], input="god-password-2\n"
    )
    assert from_stdin.exit_code == 0, from_stdin.output
    again = runner.invoke(
        cli, ["admin", "create", "--god", "root", "--database-url", url], input="god-password-3\n"
    )
    assert again.exit_code == 1
    assert "username: 'root' is already the login of a god or brand administrator" in again.output
    short = runner.invoke(
        cli, ["admin", "create", "--god", "root3", "--database-url", url], input="short\n"
    )
    assert short.exit_code == 1
    assert "at least 8" in short.output
    no_brand = runner.invoke(
        cli,
        ["admin", "create", "--brand", "nowhere", "b", "--database-url", url],
        input="brand-password\n",
    )
    assert no_brand.exit_code == 1
    assert "no brand named 'nowhere'" in no_brand.output
    both = runner.invoke(
        cli, ["admin", "create", "--god", "--brand", "b", "x", "--database-url", url]
    )
    assert both.exit_code == 1
    assert "exactly one of --god and --brand" in both.output
    for bad in ("payroll=r", "client=rc"):
        refused = runner.invoke(
            cli, ["admin", "create", "--god", "x", "--privilege", bad, "--database-url", url]
        )
        assert refused.exit_code == 1
        assert f"--privilege {bad!r}" in refused.output
    with contextlib.closing(sqlite3.connect(path)) as db:
        admins = dict(db.execute("SELECT username, password_hash FROM platform_admins"))
        audited = db.execute("SELECT actor_kind, action, target FROM audit_entries").fetchall()
    assert verify_password("god-password-1", admins["root"])
    assert verify_password("god-password-2", admins["root2"])
    assert set(admins) == {"root", "root2"}
    assert ("cli", "admin.create", "root") in audited


async def test_the_served_api_answers_on_loopback(world: World) -> None:
    port = free_port(socket.SOCK_STREAM)
    config = Config(api_host="127.0.0.1", api_port=port, log_level="WARNING")
    server = build_server(config, world.engine)
    task = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for _ in range(200):  # bounded: up to ~10 s for the server to start
                if server.started:
                    break
                await asyncio.sleep(0.05)
            assert server.started
            answer = await http.post(
                "/api/login", json={"username": "root", "password": PASSWORDS["root"]}
            )
            assert answer.status_code == 200
            headers = {"Authorization": f"Bearer {answer.json()['token']}"}
            listed = await http.get("/api/clients", headers=headers)
            assert {c["name"] for c in listed.json()} == {"north", "south", "thames"}
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def test_a_restricted_brand_administrator_from_the_command_line(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("INSERT INTO currencies (code, name, symbol) VALUES ('EUR', 'Euro', '')")
        db.execute(
            "INSERT INTO brands (name, default_language, default_timezone, default_currency,"
            " default_country) VALUES ('iberia', 'es', 'UTC', 'EUR', 'ES')"
        )
        db.commit()
    made = CliRunner().invoke(
        cli,
        [
            "admin",
            "create",
            "--brand",
            "iberia",
            "viewer",
            "--privilege",
            "client=r",
            "--privilege",
            "audit=r",
            "--email",
            "v@example.com",
            "--database-url",
            url,
        ],
        input="viewer-password\n",
    )
    assert made.exit_code == 0, made.output
    assert "administrator of brand iberia 'viewer'" in made.output
    with contextlib.closing(sqlite3.connect(path)) as db:
        (restricted,) = db.execute(
            "SELECT restricted FROM platform_admins WHERE username = 'viewer'"
        ).fetchone()
        granted = db.execute(
            "SELECT section, can_create, can_read, can_update, can_delete FROM admin_privileges"
            " ORDER BY section"
        ).fetchall()
        audited = db.execute(
            "SELECT a.actor_kind, a.target FROM audit_entries a"
            " JOIN brands b ON b.id = a.brand_id WHERE a.action = 'admin.create'"
            " AND b.name = 'iberia'"
        ).fetchall()
    assert restricted == 1
    assert granted == [("audit", 0, 1, 0, 0), ("client", 0, 1, 0, 0)]
    # Audited with its brand: the brand's own administrators read it.
    assert audited == [("cli", "viewer")]


async def test_concurrent_guesses_count_at_once(world: World) -> None:
    answers = await asyncio.gather(
        *(login(world, "thames-admin", f"guess-number-{n}") for n in range(8))
    )
    assert sorted(answers) == [401] * 5 + [429] * 3


async def test_a_deactivated_administrators_token_stops_working(world: World) -> None:
    headers = await world.as_("north-admin")
    async with world.engine.begin() as connection:
        await connection.execute(
            update(ClientAdmin).where(ClientAdmin.username == "north-admin").values(active=False)
        )
    assert (await world.http.get("/api/clients", headers=headers)).status_code == 401
    assert await login(world, "north-admin", PASSWORDS["north-admin"]) == 401


async def test_failed_logins_on_one_api_process_block_the_login_on_another(
    world: World,
) -> None:
    other = build_app(world.engine, clock=world.clock)  # a second process on the same database
    transport = httpx.ASGITransport(app=other)
    async with httpx.AsyncClient(transport=transport, base_url="http://api-2.test") as second:
        for _ in range(3):
            assert await login(world, "south-admin", "wrong-password") == 401
        for _ in range(2):
            answer = await second.post(
                "/api/login", json={"username": "south-admin", "password": "wrong-password"}
            )
            assert answer.status_code == 401
        for http in (world.http, second):
            answer = await http.post(
                "/api/login",
                json={"username": "south-admin", "password": PASSWORDS["south-admin"]},
            )
            assert answer.status_code == 429
        world.clock.advance(301)
        answer = await second.post(
            "/api/login", json={"username": "south-admin", "password": PASSWORDS["south-admin"]}
        )
        assert answer.status_code == 200


async def test_failed_logins_are_kept_hashed_and_purged_after_the_window(world: World) -> None:
    limiter = LoginLimiter(world.engine, attempts=1, window=60, clock=world.clock)
    for name in ("guesser-a", "guesser-b"):
        assert await limiter.attempt(name, "192.0.2.1")
    assert not await limiter.attempt("guesser-a", "192.0.2.1")
    assert await limiter.attempt("guesser-a", "192.0.2.2")  # another source
    async with world.engine.connect() as connection:
        pairs = list(await connection.scalars(select(LoginFailure.pair)))
    assert len(pairs) == 3
    assert all(len(pair) == 64 and "guesser" not in pair for pair in pairs)
    world.clock.advance(61)
    assert await limiter.attempt("guesser-c", "192.0.2.1")  # purges what the window left behind
    async with world.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(LoginFailure)) == 1


def test_an_unreadable_password_file_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["admin", "create", "--god", "x", "--password-file", str(tmp_path / "none")]
    )
    assert result.exit_code == 1
    assert "cannot be read" in result.output
