"""``callcontrol demo``: the demo platform, the simulated Asterisk and the service, live.

A fresh SQLite database gets the demo dataset; a simulated Asterisk and the ARI
service start on loopback; scripted calls go through them one by one. For each
call the demo prints what the pipeline decided (every step) and then what
happened on the (simulated) line, as it happens. It ends by itself.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from callcontrol.config import Config
from callcontrol.explain import explain, to_text
from callcontrol.metrics import Metrics
from callcontrol.service import AsteriskLink
from callcontrol.session import Outcome
from callcontrol.simulator import Behaviour, Simulator, SimulatorConfig
from callcontrol.simulator.client import ControlClient
from dialplan.pipeline import Pipeline
from models import provisioning
from models.db import create_engine
from models.directory import SqlDirectory
from models.migrate import upgrade_async

OUTCOME_WAIT = 15.0
"""Seconds the demo waits for one call's outcome before it says so and goes on."""


@dataclass(frozen=True)
class DemoCall:
    title: str
    endpoint: str
    dialled: str
    origin: str = "terminal"
    answer: tuple[str, str, float] | None = None
    """(endpoint, how: answer/busy/noanswer/fail, after seconds) for the dialled side."""
    caller_hangs_up_after: float | None = 1.0


DEMO_CALLS: tuple[DemoCall, ...] = (
    DemoCall(
        "Ana (acme-north, Madrid) calls Bruno's extension; he answers, she hangs up",
        "acme-north-ana",
        "102",
        answer=("acme-north-bruno", "answer", 0.4),
    ),
    DemoCall(
        "Dario (acme-south, Seville) dials 101: Ana's extension at acme-north, same corporation",
        "acme-south-dario",
        "101",
        answer=("acme-north-ana", "answer", 0.3),
    ),
    DemoCall(
        "George (thames-consulting, London) dials 201: acme-south's extension, another company",
        "thames-george",
        "201",
    ),
    DemoCall(
        "Ana calls a Spanish mobile: out through the carrier, presenting acme-north's DDI",
        "acme-north-ana",
        "0034600123123",
        answer=("carrier-telco-es", "answer", 0.5),
    ),
    DemoCall(
        "Irene (hudson-dental, New York) dials a US number; nobody answers",
        "hudson-front-desk",
        "2025550123",
        answer=("carrier-uk", "noanswer", 0.0),
        caller_hangs_up_after=None,
    ),
    DemoCall(
        "Bruno dials a premium number; his call ACL denies premium numbers",
        "acme-north-bruno",
        "803123456",
    ),
    DemoCall(
        "The Spanish carrier brings a call for DDI +34 910 000 101: Bruno is busy",
        "carrier-telco-es",
        "+34910000101",
        origin="carrier",
        answer=("acme-north-bruno", "busy", 0.3),
    ),
    DemoCall(
        "The Spanish carrier brings a call for a DDI nobody owns",
        "carrier-telco-es",
        "+34919999999",
        origin="carrier",
    ),
)


def describe(outcome: Outcome) -> str:
    parts = [outcome.result]
    if outcome.reason:
        parts.append(f"reason {outcome.reason}")
    if outcome.cause:
        parts.append(f"hang-up cause {outcome.cause}")
    if outcome.answered:
        parts.append(f"talked {outcome.seconds:.1f} s")
    return ", ".join(parts)


async def run_demo(config: Config, echo: Callable[[str], None]) -> None:
    """Run :data:`DEMO_CALLS` end to end. ``config`` gives timeouts; the demo never
    touches a configured database or Asterisk: it brings its own."""
    with tempfile.TemporaryDirectory(prefix="callcontrol-demo-") as folder:
        url = f"sqlite:///{Path(folder) / 'demo.db'}"
        echo("callcontrol demo: the demo platform, a simulated Asterisk and the ARI service")
        await upgrade_async(url)
        engine = create_engine(url)
        simulated = SimulatorConfig(
            port=0,
            app=config.app,
            user=config.ari_user,
            password=config.ari_password,
            recordings_dir=Path(folder) / "recordings",
            default_behaviour=Behaviour("answer", after=0.3),
        )
        try:
            report = await provisioning.load_file(engine, provisioning.DEMO_DATASET)
            echo(f"provisioned {provisioning.DEMO_DATASET.name}: {report}")
            async with Simulator(simulated) as sim, ControlClient(sim.url) as control:
                settings = replace(config, ari_url=sim.url, dial_timeout=2.0, health_port=0)
                outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
                directory = SqlDirectory(engine)
                link = AsteriskLink(sim.url, settings, Pipeline(directory))
                metrics = Metrics([link])

                def ended(outcome: Outcome) -> None:
                    metrics.observe(outcome)
                    outcomes.put_nowait(outcome)

                link.on_outcome = ended
                service = asyncio.create_task(link.run())
                try:
                    await _until_connected(link)
                    echo(f"service connected to the simulated Asterisk at {sim.url}")
                    for number, call in enumerate(DEMO_CALLS, start=1):
                        echo("")
                        echo(f"[{number}/{len(DEMO_CALLS)}] {call.title}")
                        decided = await explain(
                            directory, call.endpoint, call.dialled, datetime.now(UTC)
                        )
                        echo(to_text(decided))
                        outcome = await _place(control, call, outcomes)
                        echo(f"on the line: {describe(outcome) if outcome else 'no outcome'}")
                finally:
                    await link.stop(settings.shutdown_timeout)
                    await service
                echo("")
                echo("the calls as `callcontrol run` counts them on /metrics, for Prometheus:")
                for line in metrics.exposition().decode().splitlines():
                    if line.startswith("callcontrol_calls_total{"):
                        echo(f"  {line}")
        finally:
            await engine.dispose()
        echo("")
        echo(
            f"{len(DEMO_CALLS)} calls placed. Try your own: callcontrol explain --help,"
            " callcontrol simulate --help"
        )


async def _until_connected(link: AsteriskLink) -> None:
    async with asyncio.timeout(OUTCOME_WAIT):
        await link.connected.wait()


async def _place(
    control: ControlClient, call: DemoCall, outcomes: asyncio.Queue[Outcome]
) -> Outcome | None:
    if call.answer is not None:
        endpoint, how, after = call.answer
        await control.endpoint(endpoint, how, after=after)
    options: dict[str, object] = {"args": [call.origin]}
    if call.caller_hangs_up_after is not None:
        options["hangup_after"] = call.caller_hangs_up_after + (
            call.answer[2] if call.answer else 0
        )
    channel = await control.call(call.endpoint, call.dialled, **options)
    try:
        async with asyncio.timeout(OUTCOME_WAIT):
            while True:
                outcome = await outcomes.get()
                if outcome.call_id == channel["id"]:
                    return outcome
    except TimeoutError:
        return None
