"""``callcontrol asterisk …``: render Asterisk's configuration; run the sandbox Asterisk."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated

import typer

from callcontrol.asterisk import chroot
from callcontrol.cli.common import (
    ConfigOption,
    DatabaseOption,
    fail,
    one_line_errors,
    require_schema,
    run,
    settings,
    with_engine,
)

if TYPE_CHECKING:
    from callcontrol.asterisk import sandbox
    from callcontrol.asterisk.render import Network
    from callcontrol.config import Config

app = typer.Typer(
    help="Asterisk: configuration rendered from the database, and a sandbox to run it.",
    no_args_is_help=True,
)
sandbox_app = typer.Typer(
    help="A real Asterisk 22 in a cached Debian sid chroot, on loopback (needs root).",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")

AppOption = Annotated[
    str | None,
    typer.Option("--app", help="Stasis app name (default: the --server's, else config's app)."),
]
ServerOption = Annotated[
    str | None, typer.Option("--server", help="Application server whose Stasis app to use.")
]
AddressOption = Annotated[str, typer.Option("--address", help="Address SIP, RTP and ARI bind to.")]
SipPortOption = Annotated[int, typer.Option("--sip-port", help="SIP (UDP) port.")]
HttpPortOption = Annotated[int, typer.Option("--http-port", help="ARI / HTTP port.")]
RtpStartOption = Annotated[int, typer.Option("--rtp-start", help="First RTP port.")]
RtpEndOption = Annotated[int, typer.Option("--rtp-end", help="Last RTP port.")]
AriUserOption = Annotated[
    str | None, typer.Option("--ari-user", help="ARI user name (default: config's ari_user).")
]
AriPasswordOption = Annotated[
    str | None,
    typer.Option("--ari-password", help="ARI password (default: config's ari_password)."),
]
NameOption = Annotated[
    str, typer.Option("--name", help="Instance name: several instances may run at once.")
]
CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help=f"Chroot cache folder (default: ${chroot.CACHE_ENV}, else {chroot.DEFAULT_CACHE}).",
    ),
]


def _network(address: str, sip: int, http: int, rtp_start: int, rtp_end: int) -> Network:
    from callcontrol.asterisk.render import Network

    with one_line_errors():
        return Network(address, sip, http, rtp_start, rtp_end)


@app.command("render")
def render_command(
    directory: Annotated[Path, typer.Argument(help="Folder to write the files into.")],
    app: AppOption = None,
    server: ServerOption = None,
    address: AddressOption = "127.0.0.1",
    sip_port: SipPortOption = 5060,
    http_port: HttpPortOption = 8088,
    rtp_start: RtpStartOption = 10000,
    rtp_end: RtpEndOption = 30000,
    ari_user: AriUserOption = None,
    ari_password: AriPasswordOption = None,
    modules_dir: Annotated[
        str | None, typer.Option("--modules-dir", help="Asterisk's module folder.")
    ] = None,
    bench_password: Annotated[
        str | None,
        typer.Option("--bench-password", help="Also render the static-bench caller endpoint."),
    ] = None,
    fastagi: Annotated[
        str | None,
        typer.Option(
            "--fastagi",
            help="HOST:PORT of callcontrol's FastAGI front: decide calls over AGI first.",
        ),
    ] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Render asterisk.conf, pjsip.conf, extensions.conf, ari.conf, … from the database."""
    from callcontrol.asterisk.render import (
        AriUser,
        Paths,
        RenderOptions,
        default_modules_dir,
        render_into,
    )

    config = settings(config_file, database_url=database_url)
    options = RenderOptions(
        paths=Paths.for_instance(
            PurePosixPath(directory.resolve()), modules_dir or default_modules_dir()
        ),
        network=_network(address, sip_port, http_port, rtp_start, rtp_end),
        ari=AriUser(ari_user or config.ari_user, ari_password or config.ari_password),
        app=app if app is not None or server is not None else config.app,
        server=server,
        bench_password=bench_password,
        # With trusted proxies configured, the dialplan hands the app their header too.
        source_header=config.source_header if config.trusted_proxies.strip() else None,
        fastagi=fastagi,
        fastagi_secret=config.fastagi_secret,
        # Edge mode (the settings' mode): one `edge` endpoint at edge_address.
        mode=config.mode,
        edge_address=config.edge_address or None,
    )

    async def main() -> tuple[str, ...]:
        await require_schema(config)
        context = await with_engine(config, lambda e: render_into(e, directory, options))
        wrote = (
            f"wrote {len(context.terminals)} terminals and {len(context.carriers)} carriers"
            if context.edge is None
            else f"wrote the edge endpoint (legs to {context.edge.host}:{context.edge.port})"
        )
        return (*context.notes, f"{wrote} (Stasis app {context.app}) into {directory}")

    for line in run(main()):
        typer.echo(line)


@app.command("kamailio")
def kamailio_command(
    directory: Annotated[Path, typer.Argument(help="Folder to write the files into.")],
    listen: Annotated[
        str, typer.Option("--listen", help="ADDRESS:PORT Kamailio receives SIP on (UDP).")
    ] = "127.0.0.1:5060",
    server_port: Annotated[
        int, typer.Option("--server-port", min=1, max=65535, help="Application servers' SIP port.")
    ] = 5060,
    probe_interval: Annotated[
        int, typer.Option("--probe-interval", min=1, help="Seconds between OPTIONS probes.")
    ] = 10,
    timeout_ms: Annotated[
        int,
        typer.Option("--timeout-ms", min=100, help="A server's time to answer before the next."),
    ] = 5000,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="direct: the dispatcher only; edge: registrar, auth, dispatcher and media"
            " relay over the shared database (PostgreSQL or MariaDB).",
        ),
    ] = "direct",
    ctl_socket: Annotated[
        str, typer.Option("--ctl-socket", help="Edge: the control socket kamcmd reaches.")
    ] = "/run/kamailio/callcontrol-edge.ctl",
    kamailio_db_url: Annotated[
        str | None,
        typer.Option(
            "--kamailio-db-url",
            help="Edge: the database URL Kamailio logs in with (default: the database's).",
        ),
    ] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Render the Kamailio in front of the application servers: in direct mode the
    dispatcher (kamailio.cfg, dispatcher.list) that spreads calls over the servers (hash,
    rr or static, per client); in edge mode also the registrar, authentication, bans and
    media relay sets, reading every tenant's data from the database."""
    from callcontrol.asterisk.kamailio import KamailioOptions, render_kamailio_into

    config = settings(config_file, database_url=database_url)
    if mode not in ("direct", "edge"):
        fail(f"--mode {mode!r} is not direct or edge")
    if mode == "edge":
        _render_edge(
            config, directory, listen, probe_interval, timeout_ms, ctl_socket, kamailio_db_url
        )
        return
    options = KamailioOptions(
        listen=listen,
        server_port=server_port,
        source_header=config.source_header,
        probe_interval=probe_interval,
        timeout_ms=timeout_ms,
    )

    async def main() -> str:
        await require_schema(config)
        dispatch = await with_engine(config, lambda e: render_kamailio_into(e, directory, options))
        return (
            f"wrote {len(dispatch.servers)} application servers, {len(dispatch.terminals)}"
            f" terminals and {dispatch.ddi_count} DDIs into {directory}"
        )

    typer.echo(run(main()))


def _render_edge(
    config: Config,
    directory: Path,
    listen: str,
    probe_interval: int,
    timeout_ms: int,
    ctl_socket: str,
    kamailio_db_url: str | None,
) -> None:
    from callcontrol.asterisk.kamailio import EdgeOptions, render_edge_into

    options = EdgeOptions(
        listen=listen,
        db_url=kamailio_db_url or "",
        ctl_socket=ctl_socket,
        probe_interval=probe_interval,
        timeout_ms=timeout_ms,
    )

    async def main() -> str:
        await require_schema(config)
        edge = await with_engine(config, lambda e: render_edge_into(e, directory, options))
        media = (
            f"media relay sets {', '.join(map(str, edge.relay_sets))} (default {edge.default_set})"
            if edge.media
            else "no media relay (media not anchored)"
        )
        return f"wrote the edge for {edge.servers} application servers, {media}, into {directory}"

    typer.echo(run(main()))


@sandbox_app.command("up")
def sandbox_up(
    name: NameOption = "dev",
    app: AppOption = None,
    server: ServerOption = None,
    address: AddressOption = "127.0.0.1",
    sip_port: SipPortOption = 5060,
    http_port: HttpPortOption = 8088,
    rtp_start: RtpStartOption = 10000,
    rtp_end: RtpEndOption = 30000,
    ari_user: AriUserOption = None,
    ari_password: AriPasswordOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for ARI to answer.")
    ] = 60.0,
    cache: CacheOption = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Build the chroot if needed, render config from the database, start Asterisk, wait for ARI."""
    from callcontrol.asterisk import sandbox
    from callcontrol.asterisk.render import AriUser

    config = settings(config_file, database_url=database_url)
    instance = sandbox.SandboxSettings(
        name=name,
        network=_network(address, sip_port, http_port, rtp_start, rtp_end),
        ari=AriUser(ari_user or config.ari_user, ari_password or config.ari_password),
        app=app if app is not None or server is not None else config.app,
        server=server,
        start_timeout=timeout,
        mode=config.mode,
        edge_address=config.edge_address or None,
    )

    async def main() -> sandbox.State:
        chroot.require_root()
        await require_schema(config)
        _, state = await with_engine(
            config, lambda engine: sandbox.up(engine, instance, cache, typer.echo)
        )
        return state

    state = run(main())
    typer.echo(
        f"sandbox {name} running: pid {state.pid}, SIP {state.address}:{state.sip_port}, "
        f"ARI {state.ari_url} (user {state.ari_user}), app {state.app}"
    )


@sandbox_app.command("build")
def sandbox_build(cache: CacheOption = None) -> None:
    """Build the sandboxes' Debian chroot with Asterisk 22 once (about 15 min; root)."""
    with one_line_errors():
        chroot.require_root()
        root = chroot.ensure_chroot(cache, typer.echo)
    typer.echo(f"Asterisk chroot ready: {root}")


@sandbox_app.command("down")
def sandbox_down(
    name: NameOption = "dev",
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds between SIGTERM and SIGKILL.")
    ] = 10.0,
    cache: CacheOption = None,
) -> None:
    """Stop the instance's Asterisk (exactly the pid `up` started)."""
    from callcontrol.asterisk import sandbox

    with one_line_errors():
        chroot.require_root()
        stopped = sandbox.instance(name, cache).stop(timeout)
    typer.echo(f"sandbox {name} stopped" if stopped else f"sandbox {name} was not running")


@sandbox_app.command("status")
def sandbox_status(name: NameOption = "dev", cache: CacheOption = None) -> None:
    """Running or not, with pid and ports; exit status 3 when not running."""
    from callcontrol.asterisk import sandbox

    with one_line_errors():
        status = sandbox.instance(name, cache).status()
    state = status.state
    if not status.running or state is None:
        typer.echo(f"sandbox {name}: not running")
        raise typer.Exit(3)
    typer.echo(
        f"sandbox {name}: running, pid {state.pid}, SIP {state.address}:{state.sip_port}, "
        f"ARI {state.ari_url}, RTP {state.rtp_start}-{state.rtp_end}, app {state.app}"
    )


@sandbox_app.command("rx")
def sandbox_rx(
    command: Annotated[
        str, typer.Argument(help="Asterisk CLI command, e.g. 'core show channels'.")
    ],
    name: NameOption = "dev",
    cache: CacheOption = None,
) -> None:
    """Run one Asterisk CLI command in the instance (`asterisk -rx`)."""
    from callcontrol.asterisk import sandbox

    with one_line_errors():
        chroot.require_root()
        output = sandbox.instance(name, cache).rx(command)
    typer.echo(output, nl=False)
