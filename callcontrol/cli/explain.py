"""``callcontrol explain``: one call through the pipeline, without side effects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from callcontrol.cli.common import (
    ConfigOption,
    DatabaseOption,
    fail,
    require_schema,
    run,
    settings,
    with_engine,
)
from dialplan.text import describe_unprintable, unprintable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def parse_at(value: str | None) -> datetime:
    """``--at``: an aware time is that instant; a naive one stays naive (read later in the
    zone of the call's client); none is now."""
    if value is None:
        return datetime.now(UTC)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        fail(f"--at {value!r} is not an ISO 8601 time (e.g. 2026-11-25T09:30:00+01:00)")


def parse_country(value: str | None) -> str | None:
    """``--source-country``: an ISO 3166 alpha-2 code, upper-cased."""
    if value is None:
        return None
    code = value.strip().upper()
    if len(code) != 2 or not (code.isascii() and code.isalpha()):
        fail(f"--source-country {value!r} is not an ISO 3166 country code (e.g. FR)")
    return code


def explain_command(
    to: Annotated[str, typer.Option("--to", help="Number dialled (or DDI called by a carrier).")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Terminal (or carrier) endpoint placing the call."),
    ] = None,
    edge_terminal: Annotated[
        str | None,
        typer.Option(
            "--edge-terminal",
            help="Edge mode: the call comes through the edge, which names this terminal"
            " (X-CC-Terminal). Instead of --from.",
        ),
    ] = None,
    edge_carrier: Annotated[
        str | None,
        typer.Option(
            "--edge-carrier",
            help="Edge mode: the call comes through the edge, which names this carrier"
            " endpoint (X-CC-Carrier). Instead of --from.",
        ),
    ] = None,
    edge_peer: Annotated[
        str | None,
        typer.Option(
            "--edge-peer",
            help="The address the edge call came from (default: edge_address); its"
            " headers are believed only from trusted_proxies.",
        ),
    ] = None,
    client: Annotated[
        str | None, typer.Option("--client", help="Client the call must belong to.")
    ] = None,
    source_ip: Annotated[
        str | None,
        typer.Option(
            "--source-ip",
            help="Source address of the call; its country is looked up in geoip_database.",
        ),
    ] = None,
    source_country: Annotated[
        str | None,
        typer.Option(
            "--source-country",
            help="What if the source were in this country (ISO code): replaces the GeoIP lookup.",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="When (ISO 8601). Without an offset: in the time zone of the call's client. "
            "Default: now.",
        ),
    ] = None,
    duration: Annotated[
        int | None,
        typer.Option("--duration", min=0, help="Price a call answered for this many seconds."),
    ] = None,
    unanswered: Annotated[
        bool, typer.Option("--unanswered", help="Price a call that is never answered (0).")
    ] = False,
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
        ("--edge-terminal", edge_terminal),
        ("--edge-carrier", edge_carrier),
        ("--edge-peer", edge_peer),
    ):
        bad = unprintable(value or "")
        if bad is not None:
            fail(f"{option} {describe_unprintable(value or '', bad)}: not a name or a number")
    given = [
        name
        for name, value in (
            ("--from", from_),
            ("--edge-terminal", edge_terminal),
            ("--edge-carrier", edge_carrier),
        )
        if value is not None
    ]
    if len(given) != 1:
        fail("give one of --from, --edge-terminal and --edge-carrier: who places the call")
    if unanswered and duration is not None:
        fail("--unanswered and --duration: an unanswered call has no duration, give one of them")
    country = parse_country(source_country)
    config = settings(config_file, database_url=database_url)
    moment = parse_at(at)
    endpoint, source, came = from_ or "", source_ip, None
    if from_ is None:
        from callcontrol.explain import edge_call

        peer = edge_peer or config.edge_address
        if not peer:
            fail(f"{given[0]}: give --edge-peer ADDRESS (where the edge call came from)")
        came = edge_call(edge_terminal, edge_carrier, peer, source_ip, config.trusted_proxies)
        endpoint, source = came.endpoint, came.source_ip

    async def main() -> str:
        from callcontrol.explain import explain, to_json, to_text
        from callcontrol.geoip import GeoIp
        from models.directory import SqlDirectory

        await require_schema(config)
        # The service's database, when one is configured: explain sees what the service sees.
        geoip = GeoIp(config.geoip_database) if config.geoip_database.strip() else None

        async def work(engine: AsyncEngine) -> str:
            result = await explain(
                SqlDirectory(engine),
                endpoint,
                to,
                moment,
                client,
                source,
                geoip=geoip,
                source_country=country,
                origin=came.origin if came is not None else None,
                unidentified=came.unidentified if came is not None else None,
            )
            if as_json:
                document = to_json(result, duration, answered=not unanswered)
                return json.dumps(document, indent=2, ensure_ascii=False)
            return to_text(result, duration, not unanswered, what_if=country is not None)

        try:
            return await with_engine(config, work)
        finally:
            if geoip is not None:
                geoip.close()

    typer.echo(run(main()))
