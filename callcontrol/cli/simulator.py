"""``callcontrol simulate``: serve the simulated Asterisk, and drive calls through it.

``serve`` defaults to the service's own settings (the host and port of ``ari_url``, the
ARI user, password and app name), so ``callcontrol run`` finds it without options.
``call`` talks to the control API and prints the call's events as they were emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from callcontrol.cli.common import fail, settings

if TYPE_CHECKING:
    from callcontrol.simulator.client import Json
    from callcontrol.simulator.settings import SimulatorConfig

app = typer.Typer(
    help="The simulated Asterisk: ARI for tests and demos, and simulated calls.",
    no_args_is_help=True,
)


async def serve_until_stopped(config: SimulatorConfig, say: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM, then close every socket and stop."""
    import asyncio
    import signal

    from callcontrol.simulator.server import Simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Simulator(config) as sim:
            say(f"simulated Asterisk on {sim.url} (app {config.app}, ARI user {config.user})")
            say(f"control API: {sim.url}_sim/  recordings: {config.recordings_dir}")
            await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    say("simulated Asterisk stopped")


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(min=0, help="Port (0: any free one).")] = None,
    app: Annotated[str | None, typer.Option(help="Stasis app simulated calls enter.")] = None,
    user: Annotated[str | None, typer.Option(help="ARI user.")] = None,
    password: Annotated[str | None, typer.Option(help="ARI password.")] = None,
    recordings_dir: Annotated[Path, typer.Option(help="Folder recordings are written to.")] = Path(
        "var/simulator/recordings"
    ),
    playback_seconds: Annotated[
        float, typer.Option(min=0, help="How long each medium plays.")
    ] = 0.5,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML config file (for the defaults).")
    ] = None,
) -> None:
    """Run the simulated Asterisk until interrupted."""
    import asyncio

    from callcontrol.simulator.settings import SimulatorConfig

    configured = settings(config_file)
    ari = urlsplit(configured.ari_url)
    config = SimulatorConfig(
        host=host or ari.hostname or "127.0.0.1",
        port=ari.port or 8088 if port is None else port,
        app=app or configured.app,
        user=user or configured.ari_user,
        password=password or configured.ari_password,
        recordings_dir=recordings_dir,
        playback_seconds=playback_seconds,
    )
    try:
        asyncio.run(serve_until_stopped(config, typer.echo))
    except OSError as exc:
        fail(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")


def parse_dtmf(value: str) -> Json:
    """``*1`` (at once) or ``*1@2.5`` (2.5 s from the start of the call)."""
    digits, _, after = value.partition("@")
    try:
        return {"digits": digits, "after": float(after) if after else 0.0}
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use DIGITS or DIGITS@SECONDS") from None


async def drive_call(url: str, call: Json, wait: float, say: Callable[[str], None]) -> Json:
    """Place ``call``, wait until its channel is gone, print its events; the end."""
    from callcontrol.simulator.client import ControlClient

    async with ControlClient(url, timeout=wait + 10) as control:
        channel = await control.place(call)
        say(f"call {channel['id']} {channel['name']} → {channel['dialplan']['exten']}")
        if not channel["in_stasis"]:
            say("  the application is not connected: Stasis() failed, the dialplan goes on")
        end = await control.wait_gone(channel["id"], wait)
        for event in await control.events(channel["id"]):
            details = [
                str(event[key]) for key in ("dialstatus", "digit", "cause_txt") if key in event
            ]
            say(f"  {event['timestamp']}  {event['type']}  {' '.join(details)}".rstrip())
    if end["gone"]:
        say(f"ended: cause {end['cause']} ({end['cause_txt']})")
    else:
        say(f"still up after {wait:g} s")
    return end


@app.command("call")
def call(
    from_: Annotated[str, typer.Option("--from", help="Calling endpoint (terminal or carrier).")],
    to: Annotated[str, typer.Option("--to", help="Number dialled (the extension).")],
    url: Annotated[str, typer.Option(help="Base URL of the simulator.")] = "http://127.0.0.1:8088/",
    source_ip: Annotated[str, typer.Option(help="Source address of the call.")] = "",
    dtmf: Annotated[
        list[str] | None, typer.Option(help="Digits to press: DIGITS or DIGITS@SECONDS.")
    ] = None,
    hangup_after: Annotated[
        float | None, typer.Option(min=0, help="Seconds after which the caller hangs up.")
    ] = None,
    origin: Annotated[str, typer.Option(help="Stasis argument: terminal or carrier.")] = "terminal",
    caller_id: Annotated[str | None, typer.Option(help='Caller id, e.g. "Alice <1001>".')] = None,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the end.")] = 60.0,
) -> None:
    """Place one simulated call and print what happened to it."""
    import asyncio

    import aiohttp

    from callcontrol.simulator.client import ControlError

    body: Json = {"from": from_, "to": to, "args": [origin], "source_ip": source_ip}
    body["dtmf"] = [parse_dtmf(value) for value in dtmf or []]
    if hangup_after is not None:
        body["hangup_after"] = hangup_after
    if caller_id is not None:
        body["caller_id"] = caller_id
    try:
        asyncio.run(drive_call(url, body, wait, typer.echo))
    except ControlError as exc:
        fail(exc.message)
    except aiohttp.ClientError as exc:
        fail(f"no simulator at {url}: {exc}")
