"""``callcontrol platform …``: the whole platform on loopback (edge, rtpengines, N Asterisk
sandboxes each with its own service), and draining a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from callcontrol.cli.common import (
    ConfigOption,
    DatabaseOption,
    fail,
    one_line_errors,
    run,
    settings,
    with_engine,
)

app = typer.Typer(
    help="The platform on loopback: Kamailio, rtpengine, N Asterisk servers; drain a server.",
    no_args_is_help=True,
)

RunDirOption = Annotated[
    Path,
    typer.Option("--run-dir", help="Where the parts' pids, logs and rendered edge are kept."),
]
DEFAULT_RUN_DIR = Path("var/platform")
ServerArgument = Annotated[str, typer.Argument(help="The application server's name.")]
SipPortOption = Annotated[
    int, typer.Option("--sip-port", help="SIP port of the edge and of every server.")
]


@app.command("up")
def platform_up(
    servers: Annotated[
        int, typer.Option("--servers", help="How many application servers to run (1-9).")
    ] = 2,
    run_dir: RunDirOption = DEFAULT_RUN_DIR,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="The sandboxes' chroot cache folder.")
    ] = None,
    sip_port: SipPortOption = 5060,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each part may take to answer.")
    ] = 90.0,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Migrate the database, start every part, return when each answers."""
    from callcontrol.platform.platform import PlatformSpec, up

    if timeout <= 0:
        fail(f"--timeout {timeout:g}: must be more than 0 seconds")
    config = settings(config_file, database_url=database_url)
    with one_line_errors():
        spec = PlatformSpec(
            config.database_url,
            servers=servers,
            run_dir=run_dir,
            cache=cache,
            sip_port=sip_port,
            start_timeout=timeout,
        )
    run(with_engine(config, lambda engine: up(engine, spec, echo=typer.echo)))
    typer.echo(f"platform up: {servers} servers; `callcontrol platform status --run-dir {run_dir}`")


@app.command("down")
def platform_down(
    run_dir: RunDirOption = DEFAULT_RUN_DIR,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each part may take to stop.")
    ] = 10.0,
) -> None:
    """Stop every part by its recorded pid."""
    from callcontrol.platform.platform import stop

    with one_line_errors():
        stopped = stop(run_dir.resolve(), timeout)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("status")
def platform_status(run_dir: RunDirOption = DEFAULT_RUN_DIR) -> None:
    """Each part up or down, and the edge's view of the servers. Exit status 1 when a part
    is down, 3 when no platform was started in --run-dir."""
    from callcontrol.platform.platform import status

    with one_line_errors():
        found = status(run_dir.resolve())
    if found is None:
        typer.echo(f"no platform in {run_dir}: `callcontrol platform up` starts one")
        raise typer.Exit(3)
    for part in found.parts:
        state = f"up (pid {part.pid})" if part.running else "down"
        typer.echo(f"{part.kind:10} {part.name:24} {part.address:18} {state}")
    if found.dispatcher_error is not None:
        typer.echo(f"dispatcher: unknown ({found.dispatcher_error})")
    for destination in found.dispatcher:
        name = destination.name or "-"
        typer.echo(
            f"dispatcher {name:24} {destination.uri:24} {destination.state} ({destination.flags})"
        )
    if not all(part.running for part in found.parts):
        raise typer.Exit(1)


def _drain(server: str, drained: bool, run_dir: Path, sip_port: int, url: str | None) -> None:
    from callcontrol.platform.platform import drain

    config = settings(None, database_url=url)
    line = run(
        with_engine(
            config, lambda engine: drain(engine, run_dir.resolve(), server, drained, sip_port)
        )
    )
    typer.echo(line)


@app.command("drain")
def platform_drain(
    server: ServerArgument,
    run_dir: RunDirOption = DEFAULT_RUN_DIR,
    sip_port: SipPortOption = 5060,
    database_url: DatabaseOption = None,
) -> None:
    """No new calls to SERVER; its live calls go on until they end."""
    _drain(server, True, run_dir, sip_port, database_url)


@app.command("undrain")
def platform_undrain(
    server: ServerArgument,
    run_dir: RunDirOption = DEFAULT_RUN_DIR,
    sip_port: SipPortOption = 5060,
    database_url: DatabaseOption = None,
) -> None:
    """SERVER takes new calls again."""
    _drain(server, False, run_dir, sip_port, database_url)
