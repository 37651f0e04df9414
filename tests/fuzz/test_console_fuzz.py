"""The console API against any request: never a 5xx, every refusal under /calls a one-line
JSON reason, and the console still answering afterwards."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol.console_api import ConsoleApi
from tests.fuzz.conftest import Loop, count
from tests.ports import free_port
from tests.test_console import raw_request

TARGET = "console"
TOKEN = "fuzz-console-token"

_segment = st.one_of(
    st.sampled_from(["call-1", "x" * 500, "%00", "%ff", "..", "%2F", "ä", ""]),
    st.text(alphabet="abc-_.%0123456789ff/", max_size=12),
)
_path = st.one_of(
    st.just("/calls"),
    st.builds(lambda s: f"/calls/{s}/hangup", _segment),
    st.builds(lambda s: f"/calls/{s}/recording", _segment),
    st.builds(lambda s, t: f"/calls/{s}/{t}", _segment, _segment),
    st.builds(lambda s: f"/calls?{s}", _segment),
)
_authorization = st.one_of(
    st.just(f"Bearer {TOKEN}".encode()),
    st.just(f"Bearer {TOKEN}".encode()),
    st.just(b""),
    st.sampled_from([b"Bearer ", b"Bearer wrong", b"Basic abc", b"Bearer \xff\xfe", b"\x00"]),
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
_content_type = st.one_of(
    st.just(b"application/json"),
    st.sampled_from(
        [
            b"application/json; charset=utf-8",
            b"application/json; charset=x-bogus",
            b"application/json; charset=utf-16",
            b"text/plain",
            b"",
            b"application/json; charset=\xff",
        ]
    ),
)
_json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_body = st.one_of(
    st.just(b'{"action": "start"}'),
    st.just(b'{"action": "stop"}'),
    _json_value.map(lambda value: json.dumps(value).encode()),
    st.builds(lambda action: json.dumps({"action": action}).encode(), st.text(max_size=30)),
    st.binary(max_size=200),
    st.sampled_from([b"[" * 70_000, b'{"action": "\xff"}', b" " * 70_000, b""]),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A request's head (without the blank line ending it) and its body."""
    method = draw(st.sampled_from([b"GET", b"GET", b"POST", b"POST", b"POST", b"POST", b"PUT"]))
    path = draw(_path).encode("utf-8", "surrogatepass")
    body = draw(_body) if method != b"GET" else b""
    head = method + b" " + path + b" HTTP/1.1\r\nHost: console\r\n"
    authorization = draw(_authorization)
    if authorization:
        head += b"Authorization: " + authorization + b"\r\n"
    if body:
        head += b"Content-Type: " + draw(_content_type) + b"\r\n"
        head += f"Content-Length: {len(body)}\r\n".encode()
    return head, body


@pytest.fixture(scope="module")
def console_port(loop: Loop) -> Iterator[int]:
    application = web.Application()
    ConsoleApi("as-fuzz", [], TOKEN).install(application)
    runner = web.AppRunner(application, access_log=None)
    loop.run(runner.setup())
    port = free_port(socket.SOCK_STREAM)
    loop.run(web.TCPSite(runner, "127.0.0.1", port).start())
    try:
        yield port
    finally:
        loop.run(runner.cleanup())


@settings(settings.get_profile("fuzz"), max_examples=1000)
@given(request=requests())
def test_no_request_gets_a_5xx_and_every_refusal_is_one_json_line(
    loop: Loop, console_port: int, request: tuple[bytes, bytes]
) -> None:
    count(TARGET, "tried")
    status, headers, content = loop.run(raw_request(console_port, *request))
    count(TARGET, f"{status}")
    if status >= 500:
        count(TARGET, "5xx")
    assert status < 500, (status, content[:200])
    if status >= 400 and b"application/json" in headers:
        reason = json.loads(content)["error"]
        assert reason
        assert "\n" not in reason
        assert len(reason) < 200
    elif status >= 400:  # refused by the HTTP server itself before any route ran
        count(TARGET, "refused by aiohttp")
    # and the console still answers a valid request
    valid = b"GET /calls HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer " + TOKEN.encode()
    answered, _, body = loop.run(raw_request(console_port, valid + b"\r\n"))
    assert (answered, json.loads(body)) == (200, {"server": "as-fuzz", "calls": []})
