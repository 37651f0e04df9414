"""``callcontrol bench startup``: what starting a command costs, against the floor of any
Typer command line (``python -c "import typer"``), measured side by side in one run.

Each process is started ``repeat`` times, the three kinds in turn (so a busy moment of the
machine falls on all of them alike); the median of each is compared with the baseline's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dialplan.errors import CallControlError

HELP_TARGET = 3.0
"""``callcontrol --help`` within this many times the baseline."""

EXPLAIN_CALL = ("--from", "acme-north-ana", "--to", "102")
"""A demo call: Ana dials Bruno's extension."""


def _timed(command: Sequence[str], cwd: Path, environment: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise CallControlError(
            f"{' '.join(command[2:])} failed ({done.returncode}): {said[-1] if said else ''}"
        )
    return elapsed


async def _demo_database(folder: Path) -> str:
    from models.db import create_engine
    from models.migrate import upgrade_async
    from models.provisioning import DEMO_DATASET, load_file

    url = f"sqlite:///{folder / 'demo.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        await load_file(engine, DEMO_DATASET)
    finally:
        await engine.dispose()
    return url


async def bench_startup(repeat: int, say: Callable[[str], None]) -> dict[str, float]:
    """Print and return the median seconds of each process, and the ratios."""
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="callcontrol-startup-") as scratch:
        folder = Path(scratch)
        url = await _demo_database(folder)
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("CALLCONTROL_")
        }
        commands = {
            'python -c "import typer"': [python, "-c", "import typer"],
            "callcontrol --help": [python, "-m", "callcontrol", "--help"],
            "callcontrol explain (demo SQLite)": [
                python,
                "-m",
                "callcontrol",
                "explain",
                *EXPLAIN_CALL,
                "--database-url",
                url,
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):
            for name, command in commands.items():
                times[name].append(await asyncio.to_thread(_timed, command, folder, environment))
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    baseline = medians['python -c "import typer"']
    width = max(map(len, medians))
    say(f"startup: median of {repeat} runs each, the three in turn")
    for name, median in medians.items():
        say(f"  {name:<{width}}  {median * 1000:7.0f} ms  {median / baseline:5.2f}×")
    ratio = medians["callcontrol --help"] / baseline
    verdict = "met" if ratio <= HELP_TARGET else "missed"
    say(f"--help is {ratio:.2f}× the baseline (target: within {HELP_TARGET:g}×): {verdict}")
    return medians
