"""A platform for the live-calls tests: the demo dataset, a service on the simulated
Asterisk with its console registered in the database (token sealed), administrators of
every level, and the API served by uvicorn on loopback (server-sent events need a real
server)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.accounts import create_platform_admin
from callcontrol.api.serve import build_server
from callcontrol.api.servers import new_key, register
from callcontrol.config import Config
from callcontrol.service import Service
from callcontrol.simulator import Simulator
from models.admins import AdminPrivilege
from models.directory import SqlDirectory
from models.provisioning.passwords import hash_password
from models.recordings import RecordingStore
from models.tenants import Client, ClientAdmin
from tests.ports import free_port
from tests.test_console import TOKEN, running, url_of

PASSWORDS = {
    "root": "root-password",
    "iberia-admin": "iberia-password",
    "atlantic-admin": "atlantic-password",
    "acme-north-admin": "demo-admin-password",
    "acme-north-viewer": "viewer-password",
    "thames-admin": "thames-password",
}


@dataclass
class LiveWorld:
    engine: AsyncEngine
    service: Service
    url: str
    key: str
    tokens: dict[str, str] = field(default_factory=dict)

    async def login(self, http: httpx.AsyncClient, username: str) -> dict[str, str]:
        if username not in self.tokens:
            answer = await http.post(
                "/api/login", json={"username": username, "password": PASSWORDS[username]}
            )
            assert answer.status_code == 200, answer.text
            self.tokens[username] = answer.json()["token"]
        return {"Authorization": f"Bearer {self.tokens[username]}"}


async def add_admins(engine: AsyncEngine) -> None:
    await create_platform_admin(engine, "root", PASSWORDS["root"])
    await create_platform_admin(
        engine, "iberia-admin", PASSWORDS["iberia-admin"], brand="iberia-voice"
    )
    await create_platform_admin(
        engine, "atlantic-admin", PASSWORDS["atlantic-admin"], brand="atlantic-tel"
    )
    async with engine.begin() as connection:
        clients = dict((await connection.execute(select(Client.name, Client.id))).tuples().all())
        await connection.execute(
            insert(ClientAdmin).values(
                client_id=clients["thames-consulting"],
                username="thames-admin",
                password_hash=hash_password(PASSWORDS["thames-admin"]),
            )
        )
        viewer = (
            await connection.execute(
                insert(ClientAdmin)
                .values(
                    client_id=clients["acme-north"],
                    username="acme-north-viewer",
                    password_hash=hash_password(PASSWORDS["acme-north-viewer"]),
                    restricted=True,
                )
                .returning(ClientAdmin.id)
            )
        ).scalar_one()
        await connection.execute(
            insert(AdminPrivilege).values(
                client_admin_id=viewer, section="billable_calls", can_read=True
            )
        )


@contextlib.asynccontextmanager
async def console_registered(
    sim: Simulator, engine: AsyncEngine, recordings: Path
) -> AsyncIterator[tuple[Service, str]]:
    """The service on ``sim`` over ``engine``, its console registered as as-1's with its
    token sealed; the service and the ``api_secret_key`` that unseals it."""
    key = new_key()
    async with running(sim, SqlDirectory(engine), RecordingStore(engine, recordings)) as service:
        assert await register(engine, key, "as-1", url_of(service), TOKEN)
        yield service, key


@contextlib.asynccontextmanager
async def on_loopback(server: uvicorn.Server) -> AsyncIterator[httpx.AsyncClient]:
    """``server`` serving, and an HTTP client of it; it stops on the way out, even on
    failure."""
    task = asyncio.create_task(server.serve())
    try:
        url = f"http://{server.config.host}:{server.config.port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for _ in range(400):  # bounded: up to ~20 s for the server to start
                if server.started:
                    break
                await asyncio.sleep(0.05)
            assert server.started
            yield http
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def live_world(
    sim: Simulator, engine: AsyncEngine, folder: Path
) -> AsyncIterator[tuple[LiveWorld, httpx.AsyncClient]]:
    """The service, its console registered, and an HTTP client of the API served on
    loopback; everything stops on the way out, even on failure."""
    await add_admins(engine)
    async with console_registered(sim, engine, folder / "recordings") as (service, key):
        config = Config(
            api_host="127.0.0.1",
            api_port=free_port(socket.SOCK_STREAM),
            log_level="WARNING",
            api_secret_key=key,
            api_poll_interval=0.2,
        )
        async with on_loopback(build_server(config, engine)) as http:
            yield LiveWorld(engine, service, str(http.base_url).rstrip("/"), key), http
