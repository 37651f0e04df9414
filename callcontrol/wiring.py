"""The service wired: the database engine, the stores, the guards and the ARI application,
built from the configuration, run until stopped, and torn down in order."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.config import Config, checked_mode
from callcontrol.geoip import require_geoip
from callcontrol.guards import Guards
from callcontrol.mailer import Mailer
from callcontrol.service import Service
from callcontrol.source import trusted_networks
from models.cdrs import CdrStore
from models.db import create_engine
from models.directory import SqlDirectory, geoip_clients
from models.recordings import RecordingStore
from models.slot_stock import SlotStock
from models.slots import SlotKeeper


def service_engine(config: Config, url: str | None = None) -> AsyncEngine:
    """The service's engine on ``url`` (by default the configured database): its pool
    holds ``db_pool_size`` connections and opens no more (a connection opened for one
    statement costs more than a wait), and hands out the one returned last, so a light
    load keeps to a few warm server processes instead of cycling through all of them."""
    return create_engine(
        url or config.database_url,
        timeout=config.db_timeout or None,
        pool_size=config.db_pool_size,
        max_overflow=0,
        pool_use_lifo=True,
    )


async def serve(config: Config) -> None:
    """Run the service on ``config`` until it stops; the engine and the GeoIP database are
    closed whatever happens."""
    engine = service_engine(config)
    geoip = None
    try:
        trusted_networks(config.trusted_proxies)  # a bad entry stops the start, here
        checked_mode(config)  # so does edge mode without the edge among trusted_proxies
        geoip = require_geoip(config.geoip_database, await geoip_clients(engine))
        recordings = RecordingStore(engine, config.recordings_dir)
        guards = Guards(
            engine,
            config.server,
            config.slot_lease,
            SlotKeeper(
                engine,
                config.server,
                config,
                stock=SlotStock(engine, config.server, config.slot_lease),
            ),
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
