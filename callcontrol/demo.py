"""``callcontrol demo``: the demo platform in a fresh SQLite file, and calls explained as they go.

Until the simulated Asterisk arrives, the demo shows what the pipeline decides
for a handful of representative calls, each with every step's verdict.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from callcontrol.config import Config
from callcontrol.explain import explain, to_text
from dialplan.decisions import Reject
from models import provisioning
from models.db import create_engine
from models.directory import SqlDirectory
from models.migrate import upgrade_async

AT = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)


@dataclass(frozen=True)
class DemoCall:
    title: str
    endpoint: str
    dialled: str


DEMO_CALLS: tuple[DemoCall, ...] = (
    DemoCall("Ana (acme-north, Madrid) calls Bruno's extension", "acme-north-ana", "102"),
    DemoCall(
        "Dario (acme-south, Seville) dials 101: Ana's extension at acme-north, same corporation",
        "acme-south-dario",
        "101",
    ),
    DemoCall(
        "George (thames-consulting, London) dials 201: acme-south's extension, another company",
        "thames-george",
        "201",
    ),
    DemoCall("Ana calls a Spanish mobile in international form", "acme-north-ana", "0034600123123"),
    DemoCall(
        "Irene (hudson-dental, New York) dials a national US number",
        "hudson-front-desk",
        "2025550123",
    ),
    DemoCall(
        "Bruno dials a premium number; his call ACL denies premium numbers",
        "acme-north-bruno",
        "803123456",
    ),
    DemoCall("Ana dials the on-demand recording service code", "acme-north-ana", "*5"),
    DemoCall(
        "The Spanish carrier brings a call for DDI +34 910 000 101 (Bruno)",
        "carrier-telco-es",
        "+34910000101",
    ),
    DemoCall(
        "The Spanish carrier brings a call for a DDI nobody owns",
        "carrier-telco-es",
        "+34919999999",
    ),
)


async def run_demo(config: Config, echo: Callable[[str], None]) -> None:
    """Provision the demo dataset and explain :data:`DEMO_CALLS`; ``config`` is not used for
    the database: the demo never touches a real one."""
    del config
    with tempfile.TemporaryDirectory(prefix="callcontrol-demo-") as folder:
        url = f"sqlite:///{Path(folder) / 'demo.db'}"
        echo("callcontrol demo: the demo platform in a fresh SQLite database")
        await upgrade_async(url)
        engine = create_engine(url)
        try:
            report = await provisioning.load_file(engine, provisioning.DEMO_DATASET)
            echo(f"provisioned {provisioning.DEMO_DATASET.name}: {report}")
            directory = SqlDirectory(engine)
            rejected = 0
            for number, call in enumerate(DEMO_CALLS, start=1):
                result = await explain(directory, call.endpoint, call.dialled, AT)
                rejected += isinstance(result.decision, Reject)
                echo("")
                echo(f"[{number}/{len(DEMO_CALLS)}] {call.title}")
                echo(to_text(result))
            echo("")
            echo(
                f"{len(DEMO_CALLS)} calls explained: {len(DEMO_CALLS) - rejected} connected,"
                f" {rejected} refused. Try your own: callcontrol explain --help"
            )
        finally:
            await engine.dispose()
