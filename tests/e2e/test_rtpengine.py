"""Two real rtpengine instances in user space, started and stopped by our supervisor: each
answers its own ng ``ping``, rewrites an offer to its own address and port range, relays RTP
there (counted by ``query``), and leaves no process behind."""

from __future__ import annotations

import random
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcontrol.platform import rtpengine
from callcontrol.platform.processes import PlatformError, Supervisor, command_line
from tests.conftest import unavailable
from tests.ports import free_port

pytestmark = pytest.mark.e2e

ADDRESSES = ("127.0.0.21", "127.0.0.22")


def sdp(port: int) -> str:
    return "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 127.0.0.1",
            "s=-",
            "c=IN IP4 127.0.0.1",
            "t=0 0",
            f"m=audio {port} RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            "",
        ]
    )


def media(answer: str) -> tuple[str, int]:
    """The connection address and audio port of an SDP."""
    lines = answer.splitlines()
    address = next(line.split()[-1] for line in lines if line.startswith("c=IN IP4"))
    port = next(int(line.split()[1]) for line in lines if line.startswith("m=audio"))
    return address, port


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[tuple[Supervisor, list[rtpengine.RelaySpec]]]:
    if shutil.which("rtpengine") is None:
        unavailable("rtpengine", "apt-get install rtpengine-daemon")
    supervisor = Supervisor(tmp_path / "run")
    base = random.randrange(40000, 58000, 200)  # other runs may hold ports on these addresses
    specs = [
        rtpengine.RelaySpec(
            f"rtpengine-{index}",
            address,
            base + index * 100,
            base + index * 100 + 99,
            free_port(socket.SOCK_DGRAM, address),
            free_port(socket.SOCK_STREAM, address),
        )
        for index, address in enumerate(ADDRESSES, start=1)
    ]
    try:
        for spec in specs:
            rtpengine.start(supervisor, spec, timeout=60)
        yield supervisor, specs
    finally:
        supervisor.stop_all(timeout=10)


def test_each_instance_anchors_its_calls_on_its_own_address_and_ports(
    relays: tuple[Supervisor, list[rtpengine.RelaySpec]],
) -> None:
    supervisor, specs = relays
    pids = []
    for spec in specs:
        assert rtpengine.ping(spec)
        recorded = supervisor.recorded(spec.name)
        assert recorded is not None
        pids.append(recorded.pid)
        call_id, tag = f"call-{secrets.token_hex(4)}", secrets.token_hex(4)
        caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        caller.bind(("127.0.0.1", 0))
        try:
            answer = rtpengine.offer(spec, call_id, tag, sdp(caller.getsockname()[1]))
            address, port = media(answer)
            assert address == spec.address
            assert spec.port_min <= port <= spec.port_max
            assert call_id in rtpengine.calls(spec)
            # RTP sent to the rewritten port is seen at that instance's port.
            header = bytes([0x80, 0x00, 0, 1, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78])
            for _ in range(5):
                caller.sendto(header + bytes(160), (address, port))
            deadline = time.monotonic() + 10
            while rtpengine.local_ports(spec, call_id).get(port, 0) < 5:
                assert time.monotonic() < deadline, rtpengine.local_ports(spec, call_id)
                time.sleep(0.1)
            rtpengine.delete(spec, call_id, tag)
        finally:
            caller.close()
    # One instance never sees the other's call.
    first, second = specs
    assert not set(rtpengine.calls(first)) & set(rtpengine.calls(second))
    assert sorted(supervisor.stop_all(timeout=10)) == ["rtpengine-1", "rtpengine-2"]
    assert all(command_line(pid) is None for pid in pids)
    assert supervisor.names() == []
    assert not rtpengine.ping(first, timeout=0.5)


def test_a_second_instance_on_taken_ports_fails_in_one_line(
    relays: tuple[Supervisor, list[rtpengine.RelaySpec]], tmp_path: Path
) -> None:
    _, specs = relays
    other = Supervisor(tmp_path / "other")
    clash = specs[0]
    try:
        with pytest.raises(PlatformError, match=r"rtpengine-1: something answers on 127\.0\.0\.21"):
            rtpengine.start(other, clash, timeout=30)
        assert other.names() == []
        # Another ng port, but the media and CLI ports are taken: it exits, its log says why.
        moved = rtpengine.RelaySpec(
            "rtpengine-1",
            clash.address,
            clash.port_min,
            clash.port_max,
            free_port(socket.SOCK_DGRAM, clash.address),
            clash.cli_port,
        )
        with pytest.raises(PlatformError, match="rtpengine-1 exited with"):
            rtpengine.start(other, moved, timeout=30)
        assert other.names() == []
    finally:
        other.stop_all(timeout=10)
    assert rtpengine.ping(clash)  # the first one is untouched
