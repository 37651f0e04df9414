"""The FastAGI floor's AMI end reports (``bench calls --ami-floor``) against a stand-in for
Asterisk's manager: it logs in, routes the ends to AMI, counts the end events, routes them
back on stop; a refused login is one line. The real Asterisk runs it in the e2e bench test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callcontrol.asterisk.render import AmiUser
from callcontrol.bench_floor import END_EVENT, FloorAmiEnds
from dialplan.errors import CallControlError


class FakeManager:
    """Speaks enough AMI: the banner, each action answered by ActionID, events sent."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.actions: list[dict[str, str]] = []
        self.writer: asyncio.StreamWriter | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                action = dict(
                    line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line
                )
                self.actions.append(action)
                ok = action["Action"] != "Login" or action.get("Secret") == self.secret
                response = "Success" if ok else "Error"
                writer.write(
                    f"Response: {response}\r\nActionID: {action['ActionID']}\r\n\r\n".encode()
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def event(self, name: str) -> None:
        assert self.writer is not None
        self.writer.write(f"Event: UserEvent\r\nUserEvent: {name}\r\nCall: 1.1\r\n\r\n".encode())


async def fake_manager(secret: str) -> AsyncIterator[tuple[FakeManager, int]]:
    manager = FakeManager(secret)
    server = await asyncio.start_server(manager.serve, "127.0.0.1", 0)
    try:
        yield manager, int(server.sockets[0].getsockname()[1])
    finally:
        if manager.writer is not None:
            manager.writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def ami() -> AsyncIterator[tuple[FakeManager, int]]:
    async for each in fake_manager("right"):
        yield each


async def test_the_ends_are_routed_here_counted_and_routed_back(
    ami: tuple[FakeManager, int],
) -> None:
    manager, port = ami
    ends = FloorAmiEnds("127.0.0.1", AmiUser(port, "bench", "right"))
    await ends.start(within=5)
    login, route = manager.actions
    assert (login["Action"], login["Username"], login["Events"]) == ("Login", "bench", "user")
    assert (route["Action"], route["Variable"], route["Value"]) == ("Setvar", "CC_END_VIA", "ami")
    manager.event(END_EVENT)
    manager.event("SomethingElse")  # another user event: not an end
    manager.event(END_EVENT)
    await ends.stop(quiet=0.2)
    assert ends.ended == 2
    assert manager.actions[-1]["Value"] == "agi"  # back to AGI ends once they went quiet


async def test_a_refused_login_is_one_line(ami: tuple[FakeManager, int]) -> None:
    _, port = ami
    ends = FloorAmiEnds("127.0.0.1", AmiUser(port, "bench", "wrong"))
    with pytest.raises(
        CallControlError, match=rf"^bench: no AMI login on 127.0.0.1:{port} within 0.5 s"
    ):
        await ends.start(within=0.5)
    await ends.stop()  # nothing to route back: a no-op
