"""What the whole-platform tests share: their prerequisites, and a :class:`PlatformSpec`
on ports free at every loopback address ``platform up`` uses (the edge 127.0.0.2, servers
127.0.0.11/12, rtpengines 127.0.0.21/22)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

from callcontrol.platform.platform import PlatformSpec
from tests.conftest import unavailable
from tests.ports import free_port_on

EDGE = "127.0.0.2"
SERVERS_AT = ("127.0.0.11", "127.0.0.12")
RELAYS_AT = ("127.0.0.21", "127.0.0.22")
ADDRESSES = (EDGE, *SERVERS_AT, *RELAYS_AT)


def require_platform() -> None:
    """Skip (fail in CI) without Kamailio, rtpengine, or root for the Asterisk sandboxes."""
    for program, package in (("kamailio", "kamailio"), ("rtpengine", "rtpengine-daemon")):
        if shutil.which(program) is None and not os.access(f"/usr/sbin/{program}", os.X_OK):
            unavailable(program, f"apt-get install {package}")
    if os.geteuid() != 0:
        unavailable("root", "the Asterisk sandboxes need root")


def free_tcp_port(*hosts: str) -> int:
    """A TCP port free on every one of ``hosts``."""
    return free_port_on(socket.SOCK_STREAM, *hosts)


def platform_spec(database_url: str, run_dir: Path, **settings: Any) -> PlatformSpec:
    """Two servers in ``run_dir``, every port free at every platform address, a generous
    start timeout; ``settings`` override any field."""
    ports: dict[str, Any] = {
        "sip_port": free_port_on(socket.SOCK_DGRAM, *ADDRESSES),
        "http_port": free_tcp_port(*ADDRESSES),
        "health_port": free_tcp_port(*ADDRESSES),
        "ng_port": free_port_on(socket.SOCK_DGRAM, *ADDRESSES),
        "cli_port": free_tcp_port(*ADDRESSES),
    }
    return PlatformSpec(
        database_url,
        **{"servers": 2, "run_dir": run_dir, "start_timeout": 180.0, **ports, **settings},
    )
