"""A client's settings through the API on the demo platform (terminals, DDIs, rules,
admins...): one client exported alone as the whole export has it, and a change of one
setting changes nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from sqlalchemy import select

from callcontrol.api.accounts import create_platform_admin
from callcontrol.api.app import build_app
from models.db import create_engine
from models.provisioning import DEMO_DATASET, export_document, load_file
from models.provisioning.export import export_one_client
from models.tenants import Brand, Client


async def test_one_client_exports_alone_as_in_the_whole_export_and_a_change_stays_alone(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "demo.db"
    shutil.copy(sqlite_template, path)
    engine = create_engine(f"sqlite:///{path}")
    try:
        await load_file(engine, DEMO_DATASET)
        await create_platform_admin(engine, "root", "root-password")
        whole = await export_document(engine)
        nodes = {(c["brand"], c["name"]): c for c in whole["clients"]}  # type: ignore[attr-defined]
        async with engine.connect() as connection:
            ids = (
                await connection.execute(
                    select(Client.id, Brand.name, Client.name).join(
                        Brand, Brand.id == Client.brand_id
                    )
                )
            ).all()
        assert len(ids) == len(nodes) > 1
        for client_id, brand, name in ids:
            assert await export_one_client(engine, client_id) == nodes[(brand, name)]
        assert await export_one_client(engine, 999_999) is None

        client_id, brand, name = ids[0]
        language = "en" if nodes[(brand, name)].get("language") != "en" else "es"
        app = build_app(engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            login = await http.post(
                "/api/login", json={"username": "root", "password": "root-password"}
            )
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            changed = await http.patch(
                f"/api/clients/{client_id}", headers=headers, json={"language": language}
            )
            assert changed.status_code == 200, changed.text
            assert changed.json()["language"] == language
        after = await export_document(engine)
        expected = dict(whole)
        expected["clients"] = [
            {**c, "language": language} if (c["brand"], c["name"]) == (brand, name) else c
            for c in whole["clients"]  # type: ignore[attr-defined]
        ]
        assert after == expected
    finally:
        await engine.dispose()
