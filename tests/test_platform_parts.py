"""What ``platform up`` hands each part in edge mode (no process is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcontrol.asterisk.render import AriUser, Network
from callcontrol.config import Config, checked_mode
from callcontrol.platform.platform import (
    Parts,
    PlatformSpec,
    ServerPlace,
    _loads_htable,
    edge_config,
    edge_server,
    publish_media_relays,
    service_daemon,
)
from callcontrol.platform.processes import PlatformError


def place() -> ServerPlace:
    return ServerPlace(
        1,
        "as-1",
        "callcontrol-as1",
        Network("127.0.0.11", 5070, 8088, 10000, 10999),
        AriUser("callcontrol", "s3cret"),
        "127.0.0.2:5070",
    )


def test_the_default_parts_are_the_edge_mode() -> None:
    parts = Parts()
    assert parts.render_edge is edge_config
    assert parts.server_settings is edge_server
    assert parts.publish_relays is publish_media_relays
    assert parts.mode == "edge"


def test_a_server_sandbox_in_edge_mode_names_the_edge() -> None:
    settings = edge_server(place())
    assert (settings.mode, settings.edge_address) == ("edge", "127.0.0.2:5070")
    assert settings.server == "as-1"
    assert settings.source_header == "X-Forwarded-For"


def test_each_service_runs_in_edge_mode_trusting_the_edge(tmp_path: Path) -> None:
    spec = PlatformSpec(
        "postgresql+asyncpg://u@h/db", run_dir=tmp_path, slot_lease=10.0, slot_heartbeat=3.0
    )
    environment = dict(service_daemon(place(), spec).environment or {})
    assert environment["CALLCONTROL_MODE"] == "edge"
    assert environment["CALLCONTROL_EDGE_ADDRESS"] == "127.0.0.2:5070"
    assert environment["CALLCONTROL_SLOT_LEASE"] == "10.0"
    # The settings the service reads agree with each other (checked at its start).
    config = Config(
        mode="edge",
        edge_address=environment["CALLCONTROL_EDGE_ADDRESS"],
        trusted_proxies=environment["CALLCONTROL_TRUSTED_PROXIES"],
    )
    assert checked_mode(config) is config
    direct = dict(service_daemon(place(), spec, "direct").environment or {})
    assert direct["CALLCONTROL_MODE"] == "direct"
    assert "CALLCONTROL_EDGE_ADDRESS" not in direct


def test_a_heartbeat_not_shorter_than_the_lease_is_refused() -> None:
    with pytest.raises(PlatformError, match="slot_heartbeat"):
        PlatformSpec("postgresql+asyncpg://u@h/db", slot_lease=5.0, slot_heartbeat=5.0)


def test_drain_reloads_htables_only_on_an_edge_that_has_them(tmp_path: Path) -> None:
    config = tmp_path / "kamailio.cfg"
    assert not _loads_htable(config)
    config.write_text('loadmodule "dispatcher.so"\n')
    assert not _loads_htable(config)
    config.write_text('loadmodule "dispatcher.so"\nloadmodule "htable.so"\n')
    assert _loads_htable(config)
