"""The command line as one package: fast to start, wired without cycles, one of each helper."""

from __future__ import annotations

import ast
import asyncio
import importlib
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callcontrol.cli import GROUPS, app
from locutions.install import write_file
from models.provisioning import DEMO_DATASET

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("callcontrol", "dialplan", "models", "locutions")
HEAVY = ("sqlalchemy", "aiohttp", "aioari", "jinja2", "alembic", "models")
"""Top-level modules that listing the commands or one command's options must not import."""
HEAVY_MODULES = (
    "callcontrol.asterisk.render",
    "callcontrol.asterisk.sandbox",
    "callcontrol.service",
)

PROBE = """
import sys
from callcontrol.cli import main
sys.argv = ["callcontrol", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["--help"], ["explain", "--help"], ["cdr", "--help"]])
def test_help_imports_no_database_no_http_no_renderer(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *command], capture_output=True, text=True, check=True
    )
    assert "Usage: callcontrol" in done.stdout
    loaded = set(done.stderr.split())
    assert sorted(name for name in loaded if name.split(".")[0] in HEAVY) == []
    assert sorted(loaded & set(HEAVY_MODULES)) == []


def test_the_root_help_lists_each_group_with_the_groups_own_help() -> None:
    for name, group in GROUPS.items():
        assert importlib.import_module(group.module).app.info.help == group.help, name
    listed = CliRunner().invoke(app, ["--help"]).stdout
    names = [
        line.split()[1] for line in listed.splitlines() if line.startswith("│ ") and line[2] != " "
    ]
    assert names[-len(GROUPS) :] == list(GROUPS)


# ---- the import graph -------------------------------------------------------------------------


def module_graph() -> dict[str, set[str]]:
    """Every module of our packages and the modules of ours it imports (anywhere in it:
    a deferred import is a dependency too)."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" not in parts:
                modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for found in filter(None, map(ours, imported)):
                if found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def package_of(module: str, graph: dict[str, set[str]]) -> str:
    is_package = any(other.startswith(f"{module}.") for other in graph)
    return module if is_package else module.rpartition(".")[0]


KNOWN_CYCLES: set[frozenset[str]] = set()
"""None: the steps register with :mod:`dialplan.registry`, which the pipeline shares."""


def test_no_import_cycle_spans_two_packages_or_two_commands() -> None:
    graph = module_graph()
    spanning = []
    for component in cycles(graph):
        packages = frozenset(package_of(module, graph) for module in component)
        commands = {module for module in component if module.startswith("callcontrol.cli.")}
        if (len(packages) > 1 and packages not in KNOWN_CYCLES) or len(commands) > 1:
            spanning.append(sorted(component))
    assert spanning == []


def test_the_four_packages_depend_one_way() -> None:
    graph = module_graph()
    between = {
        (module.split(".")[0], other.split(".")[0])
        for module, imported in graph.items()
        for other in imported
        if module.split(".")[0] != other.split(".")[0]
    }
    assert between <= {
        ("callcontrol", "dialplan"),
        ("callcontrol", "models"),
        ("callcontrol", "locutions"),
        ("models", "dialplan"),
        ("models", "locutions"),
        ("locutions", "dialplan"),
    }, sorted(between)


# ---- one atomic write -------------------------------------------------------------------------


def test_the_one_atomic_write_puts_a_readable_file_whole_and_says_when_it_was_there(
    tmp_path: Path,
) -> None:
    target = tmp_path / "hello.wav"
    assert write_file(target, b"RIFF") is True
    assert write_file(target, b"RIFF") is False
    assert target.read_bytes() == b"RIFF"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [path.name for path in tmp_path.iterdir()] == ["hello.wav"]


# ---- run and bench ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('package') / 'demo.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--database-url", url]).exit_code == 0
    loaded = runner.invoke(app, ["provision", str(DEMO_DATASET), "--database-url", url])
    assert loaded.exit_code == 0, loaded.output
    return url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_run_starts_without_the_migration_tools_lines(demo_url: str, tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "CALLCONTROL_DATABASE_URL": demo_url,
        "CALLCONTROL_ARI_URL": f"http://127.0.0.1:{free_port()}/",  # nothing listens there
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
        async with asyncio.timeout(30):
            while "unavailable, retrying" not in printed:
                printed += (await process.stderr.readline()).decode()
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), 20)
    printed += rest.decode()
    assert " INFO " in printed  # the service's own lines are there
    assert [line for line in printed.splitlines() if "alembic" in line] == []


def test_bench_startup_prints_the_three_processes_and_the_ratio() -> None:
    result = CliRunner().invoke(app, ["bench", "startup", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "startup: median of 1 runs each, the three in turn"
    assert [line.split("  ")[1].strip() for line in lines[1:4]] == [
        'python -c "import typer"',
        "callcontrol --help",
        "callcontrol explain (demo SQLite)",
    ]
    assert lines[1].endswith("1.00×")
    assert lines[4].startswith("--help is ")
    assert "(target: within 3×)" in lines[4]


def test_a_mistyped_command_is_told_the_group_it_resembles() -> None:
    result = CliRunner().invoke(app, ["recordingz"])
    assert result.exit_code == 2
    assert "No such command 'recordingz'. Did you mean 'recordings'?" in result.stderr
