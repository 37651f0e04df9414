"""``callcontrol``: the command line. Each command loads config, does one chore, exits.

Bad input ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.cli.asterisk import asterisk_app
from callcontrol.cli.cdr import app as cdr_app
from callcontrol.cli.console import app as console_app
from callcontrol.cli.locutions import app as locutions_app
from callcontrol.cli.recordings import app as recordings_app
from callcontrol.cli.simulator import simulate_app
from callcontrol.config import Config, load_config
from callcontrol.explain import explain, to_json, to_text
from callcontrol.masking import mask, shown_url
from dialplan.errors import CallControlError, DatabaseUnavailable, one_line
from dialplan.text import describe_unprintable, unprintable
from models.db import create_engine, first_line
from models.directory import SqlDirectory

app = typer.Typer(
    help="Call control for multi-tenant Asterisk application servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The shared database.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks: ratios measured side by side in one run.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(bench_app, name="bench")
app.add_typer(simulate_app, name="simulate")
app.add_typer(asterisk_app, name="asterisk")
app.add_typer(locutions_app, name="locutions")
app.add_typer(cdr_app, name="cdr")
app.add_typer(recordings_app, name="recordings")
app.add_typer(console_app, name="console")

T = TypeVar("T")
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Shared database URL (default: config, then SQLite file)."),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (default: ./callcontrol.toml).")
]


def fail(message: str, code: int = 1) -> None:
    """One line on stderr (its secrets masked) and exit ``code``."""
    typer.echo(f"error: {one_line(mask(message), 400)}", err=True)
    raise typer.Exit(code)


def settings(config_file: Path | None, **overrides: Any) -> Config:
    """:func:`load_config`, a bad setting or file one line (masked) and exit 1."""
    try:
        return load_config(config_file, **overrides)
    except CallControlError as exc:
        fail(str(exc))
        raise


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine; our errors and unreachable databases become one line."""
    try:
        return asyncio.run(coroutine)
    except CallControlError as exc:
        fail(str(exc))
    except (OSError, InterfaceError) as exc:
        fail(f"database unavailable: {exc}")
    except DBAPIError as exc:
        if exc.connection_invalidated or "connect" in str(exc.orig).lower():
            fail(f"database unavailable: {str(exc.orig).splitlines()[0]}")
        raise
    raise AssertionError("unreachable")


async def with_engine(config: Config, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    engine = create_engine(config.database_url)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


async def require_schema(config: Config) -> None:
    from models.migrate import current_revision, head

    try:
        revision = await current_revision(config.database_url)
    except (OSError, DBAPIError) as exc:
        raise DatabaseUnavailable(shown_url(config.database_url), first_line(exc)) from exc
    if revision != head():
        raise CallControlError(
            f"database {shown_url(config.database_url)} is at revision {revision or 'none'}, "
            f"not {head()}: run `callcontrol db upgrade`"
        )


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None, config_file: ConfigOption = None) -> None:
    """Create or migrate the schema to the latest revision (idempotent)."""
    from models.migrate import head, upgrade

    config = settings(config_file, database_url=database_url)
    try:
        upgrade(config.database_url)
    except CallControlError as exc:
        fail(str(exc))
    except (OSError, DBAPIError) as exc:
        fail(f"database unavailable: {str(exc).splitlines()[0]}")
    typer.echo(f"database at revision {head()}")


@app.command()
def provision(
    file: Annotated[
        Path | None, typer.Argument(help="YAML document to load (or to write with --export).")
    ] = None,
    export: Annotated[
        bool, typer.Option("--export", help="Write the database as YAML instead.")
    ] = False,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Load a provisioning document (validated first, all or nothing), or --export one."""
    from callcontrol.mailer import render_limits
    from models import provisioning

    config = settings(config_file, database_url=database_url)

    async def load(engine: AsyncEngine) -> str:
        assert file is not None
        limits = render_limits(config)  # templates are test-rendered as the service would
        return str(await provisioning.load_file(engine, file, limits=limits))

    async def dump(engine: AsyncEngine) -> str:
        return provisioning.dump_yaml(await provisioning.export_document(engine))

    async def main() -> str:
        await require_schema(config)
        return await with_engine(config, dump if export else load)

    if not export and file is None:
        fail("give a YAML file to load, or --export")
    output = run(main())
    if not export:
        typer.echo(output)
    elif file is None:
        sys.stdout.write(output)
    else:
        write_atomically(file, output)


def write_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all."""
    directory = path.resolve().parent
    if not directory.is_dir():
        fail(f"{path}: folder {directory.name!r} does not exist")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--at {value!r} is not an ISO 8601 time (e.g. 2026-11-25T09:30:00+01:00)")
        raise
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("explain")
def explain_command(
    from_: Annotated[
        str, typer.Option("--from", help="Terminal (or carrier) endpoint placing the call.")
    ],
    to: Annotated[str, typer.Option("--to", help="Number dialled (or DDI called by a carrier).")],
    client: Annotated[
        str | None, typer.Option("--client", help="Client the call must belong to.")
    ] = None,
    source_ip: Annotated[
        str | None, typer.Option("--source-ip", help="Source address of the call.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="When (ISO 8601; naive = UTC). Default: now.")
    ] = None,
    duration: Annotated[
        int | None,
        typer.Option("--duration", min=0, help="Price an answered call of this many seconds."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Run the pipeline for one call without side effects and print every step's verdict."""
    for option, value in (
        ("--from", from_),
        ("--to", to),
        ("--client", client),
        ("--source-ip", source_ip),
    ):
        bad = unprintable(value or "")
        if bad is not None:
            fail(f"{option} {describe_unprintable(value or '', bad)}: not a name or a number")
    config = settings(config_file, database_url=database_url)
    moment = parse_at(at)

    async def main() -> str:
        await require_schema(config)

        async def work(engine: AsyncEngine) -> str:
            result = await explain(SqlDirectory(engine), from_, to, moment, client, source_ip)
            if as_json:
                return json.dumps(to_json(result, duration), indent=2, ensure_ascii=False)
            return to_text(result, duration)

        return await with_engine(config, work)

    typer.echo(run(main()))


@app.command("run")
def run_service(
    ari_url: Annotated[
        str | None, typer.Option("--ari-url", help="ARI base URL(s), comma separated.")
    ] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="Stasis application name.")] = None,
    health_port: Annotated[
        int | None, typer.Option("--health-port", help="Port of /health and /metrics (0 = off).")
    ] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Run the ARI application: take every call of the Asterisk(s) through the pipeline."""
    import logging

    from callcontrol import masking
    from callcontrol.service import Service

    config = settings(
        config_file,
        database_url=database_url,
        ari_url=ari_url,
        app=app_name,
        health_port=health_port,
    )
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        await require_schema(config)
        from callcontrol.geoip import require_geoip
        from callcontrol.guards import Guards
        from callcontrol.mailer import Mailer
        from callcontrol.source import trusted_networks
        from models.cdrs import CdrStore
        from models.directory import geoip_clients
        from models.recordings import RecordingStore
        from models.slots import SlotKeeper

        engine = create_engine(
            config.database_url,
            timeout=config.db_timeout or None,
            pool_size=config.db_pool_size,
            max_overflow=0,  # a connection opened for one statement costs more than a wait
        )
        geoip = None
        try:
            trusted_networks(config.trusted_proxies)  # a bad entry stops the start, here
            geoip = require_geoip(config.geoip_database, await geoip_clients(engine))
            recordings = RecordingStore(engine, config.recordings_dir)
            guards = Guards(
                engine,
                config.server,
                config.slot_lease,
                SlotKeeper(engine, config.server, config),
                Mailer(config),
            )
            store = CdrStore(
                engine,
                config.cdr_spool_dir,
                write_timeout=config.cdr_write_timeout,
                on_crossing=guards.crossed,
            )
            async with store:
                service = Service(
                    config, SqlDirectory(engine), store, recordings, geoip, guards, engine=engine
                )
                await service.run()
        finally:
            if geoip is not None:
                geoip.close()
            await engine.dispose()

    with masking.masked(config):  # from the first line on, no secret in any of them
        run(main())


@app.command()
def demo(
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Provision the demo dataset into a fresh SQLite file and explain representative calls."""
    from callcontrol.demo import run_demo

    config = settings(config_file, database_url=database_url)
    run(run_demo(config, typer.echo))


@bench_app.command("explain")
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


@bench_app.command("calls")
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
    config_file: ConfigOption = None,
) -> None:
    """SIPp through a real Asterisk: a static dialplan, the floor (a minimal app of the same
    front with a fixed decision) and callcontrol, side by side."""
    from callcontrol.bench_calls import FRONTS, bench_calls

    try:
        steps = sorted({int(rate) for rate in rates.split(",") if rate.strip()})
    except ValueError:
        fail(f"--rates {rates!r}: give whole numbers separated by commas, e.g. 10,50,100")
        raise
    if not steps or steps[0] < 1:
        fail("--rates: every rate must be at least 1 call per second")
    if front not in FRONTS:
        fail(f"--front {front!r}: give ari or fastagi")
    if postgresql and mariadb:
        fail("give --postgresql or --mariadb, not both")
    config = settings(config_file)
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
        )
    )


def main() -> None:
    app()
