"""``callcontrol bench``: benchmarks, each a ratio measured side by side in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from callcontrol.cli.common import ConfigOption, fail, run, settings

app = typer.Typer(help="Benchmarks: ratios measured side by side in one run.", no_args_is_help=True)


@app.command("explain")
def bench_explain(
    clients: Annotated[int, typer.Option(min=1, help="Clients in the generated dataset.")] = 10_000,
    users: Annotated[int, typer.Option(min=1, help="Users per client.")] = 10,
    decisions: Annotated[int, typer.Option(min=1, help="Decisions to time per backend.")] = 5_000,
    rate: Annotated[
        int, typer.Option(min=1, help="Offered calls per second in the paced pass.")
    ] = 200,
    postgresql: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL server URL to benchmark too (a scratch database is created)."
        ),
    ] = None,
) -> None:
    """Decisions per second and p50/p99 per decision on a generated dataset."""
    from callcontrol.bench import bench_explain as bench

    run(bench(clients, users, decisions, postgresql, typer.echo, rate))


@app.command("calls")
def bench_calls_command(
    rates: Annotated[str, typer.Option(help="Offered calls per second, comma separated.")] = (
        "25,50,100,150,200,250,300,400,500"
    ),
    seconds: Annotated[float, typer.Option(min=1, help="Seconds of calls offered per rate.")] = 10,
    hold_ms: Annotated[int, typer.Option(min=0, help="How long each answered call lasts.")] = 500,
    simulated: Annotated[int, typer.Option(min=10, help="Calls through the simulator.")] = 2000,
    clients: Annotated[
        int,
        typer.Option(min=0, help="Clients provisioned besides the bench's own (realistic size)."),
    ] = 10_000,
    postgresql: Annotated[
        str | None,
        typer.Option(
            "--postgresql",
            help="PostgreSQL server URL: the shared database is a scratch one there, not SQLite.",
        ),
    ] = None,
    mariadb: Annotated[
        str | None,
        typer.Option(
            "--mariadb",
            help="MariaDB server URL: the shared database is a scratch one there, not SQLite.",
        ),
    ] = None,
    front: Annotated[
        str,
        typer.Option("--front", help="callcontrol's front: ari (Stasis) or fastagi (AGI)."),
    ] = "ari",
    split_cores: Annotated[
        bool,
        typer.Option(
            "--split-cores",
            help="Asterisk and SIPp on one core, the app and its database on the other.",
        ),
    ] = False,
    refine: Annotated[
        int,
        typer.Option(
            min=0,
            help="Probes per hooked side between the highest rate it sustained and the lowest"
            " it did not, each halving the gap (the limits to finer than the rate steps).",
        ),
    ] = 3,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            help="Ladders (the rates, then the probes) run one after another; the limits"
            " printed are their medians.",
        ),
    ] = 1,
    ami_floor: Annotated[
        bool,
        typer.Option(
            "--ami-floor",
            help="With --front fastagi: also a floor whose calls report their end as AMI"
            " events, not a second AGI connection (what each costs Asterisk per call).",
        ),
    ] = False,
    config_file: ConfigOption = None,
) -> None:
    """SIPp through a real Asterisk: a static dialplan, the floor (a minimal app of the same
    front with a fixed decision) and callcontrol, side by side."""
    from callcontrol.bench_calls import FRONTS, bench_calls
    from callcontrol.masking import masked

    try:
        steps = sorted({int(rate) for rate in rates.split(",") if rate.strip()})
    except ValueError:
        fail(f"--rates {rates!r}: give whole numbers separated by commas, e.g. 10,50,100")
        raise
    if not steps or steps[0] < 1:
        fail("--rates: every rate must be at least 1 call per second")
    if front not in FRONTS:
        fail(f"--front {front!r}: give ari or fastagi")
    if ami_floor and front != "fastagi":
        fail("--ami-floor compares FastAGI's end reports: give --front fastagi")
    if postgresql and mariadb:
        fail("give --postgresql or --mariadb, not both")
    config = settings(config_file)
    with masked(config):  # the libraries' lines too (panoramisk's carry the AMI login)
        run(
            bench_calls(
                steps,
                seconds,
                hold_ms,
                config,
                typer.echo,
                simulated,
                postgresql,
                front,
                mariadb,
                split_cores,
                clients=clients,
                refine=refine,
                repeat=repeat,
                ami_floor=ami_floor,
            )
        )


@app.command("cost")
def bench_cost_command(
    calls: Annotated[int, typer.Option(min=1, help="Calls counted per side and round.")] = 300,
    rate: Annotated[float, typer.Option(min=0.1, help="Calls offered per second.")] = 20.0,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of each side (alternating).")] = 2,
    clients: Annotated[
        int, typer.Option(min=0, help="Clients provisioned besides the bench's own.")
    ] = 10_000,
    postgresql: Annotated[
        str | None,
        typer.Option(help="PostgreSQL server URL: the shared database is a scratch one there."),
    ] = None,
    mariadb: Annotated[
        str | None,
        typer.Option(help="MariaDB server URL: the shared database is a scratch one there."),
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option(help="Folder to keep callgrind's dumps in, for callgrind_annotate."),
    ] = None,
    front: Annotated[
        str,
        typer.Option(
            "--front",
            help="fastagi (this process plays Asterisk's side of AGI) or ari (the simulated"
            " Asterisk, calls handed back).",
        ),
    ] = "fastagi",
    opcodes: Annotated[
        int,
        typer.Option(
            "--opcodes",
            min=0,
            help="Count Python opcodes instead (no Valgrind needed) and print the N functions"
            " of callcontrol that the most are charged to, per call and side.",
        ),
    ] = 0,
    config_file: ConfigOption = None,
) -> None:
    """Instructions per call, the floor against callcontrol, counted by Valgrind's
    callgrind: a figure that does not move with the machine's load. With --opcodes, Python
    opcodes, and where they go."""
    from callcontrol.bench_calls import FRONTS
    from callcontrol.bench_cost import bench_cost
    from callcontrol.masking import masked

    if postgresql and mariadb:
        fail("give --postgresql or --mariadb, not both")
    if front not in FRONTS:
        fail(f"--front {front!r}: give ari or fastagi")
    config = settings(config_file)
    with masked(config):
        run(
            bench_cost(
                calls,
                rate,
                rounds,
                config,
                typer.echo,
                clients=clients,
                postgresql=postgresql,
                mariadb=mariadb,
                keep=keep,
                front=front,
                opcodes=opcodes,
            )
        )


@app.command("startup")
def bench_startup_command(
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, help="Runs of each process (alternating).")
    ] = 9,
) -> None:
    """How long a command takes to start: `callcontrol --help` and one `explain` (on a demo
    SQLite database) against `python -c "import typer"`, side by side, medians and ratios."""
    from callcontrol.bench_startup import bench_startup

    run(bench_startup(repeat, typer.echo))
