"""A client of the simulator's control API, for the CLI and for tests.

``async with ControlClient(url) as control:`` then ``await control.call("alice", "1002")``.
Every method is one request; a refusal raises :class:`ControlError` with the
simulator's message.
"""

from __future__ import annotations

from typing import Any

import aiohttp

Json = dict[str, Any]


class ControlError(Exception):
    """The simulator refused a control request (``status`` and its ``message``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"simulator answered {status}: {message}")
        self.status = status
        self.message = message


class ControlClient:
    """The control API of the simulated Asterisk at ``url`` (its base URL)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/") + "/_sim"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self._session.request(method, self.url + path, **kwargs) as response:
            if response.status == 204:
                return None
            body = await response.json(content_type=None)
            if response.status >= 400:
                message = body.get("message", "") if isinstance(body, dict) else str(body)
                raise ControlError(response.status, message)
            return body

    async def call(self, from_: str, to: str, **options: Any) -> Json:
        """Place a call (options: args, caller_id, source_ip, app, context, language,
        channel_id, dtmf=[{"digits", "after"}], hangup_after); the new channel."""
        return await self.place({"from": from_, "to": to, **options})

    async def place(self, body: Json) -> Json:
        """Place a call described by a control-API body (``{"from": …, "to": …}``)."""
        result: Json = await self._request("POST", "/calls", json=body)
        return result

    async def press(
        self, channel_id: str, digits: str, after: float = 0.0, between: float = 0.1
    ) -> None:
        body = {"digits": digits, "after": after, "between": between}
        await self._request("POST", f"/channels/{channel_id}/dtmf", json=body)

    async def hang_up(
        self,
        channel_id: str,
        after: float = 0.0,
        reason: str | None = None,
        cause: int | None = None,
    ) -> None:
        body: Json = {"after": after}
        if reason is not None:
            body["reason"] = reason
        if cause is not None:
            body["cause"] = cause
        await self._request("POST", f"/channels/{channel_id}/hangup", json=body)

    async def wait_gone(self, channel_id: str, within: float = 30.0) -> Json:
        """Once the channel is gone: ``{"gone": True, "cause": …}``; ``gone`` is False
        if it is still up after ``within`` seconds (the simulator waits, not us)."""
        result: Json = await self._request(
            "GET", f"/channels/{channel_id}/wait", params={"timeout": str(within)}
        )
        return result

    async def channels(self) -> list[Json]:
        result: list[Json] = await self._request("GET", "/channels")
        return result

    async def channel(self, channel_id: str) -> Json:
        result: Json = await self._request("GET", f"/channels/{channel_id}")
        return result

    async def endpoint(
        self,
        name: str,
        answer: str,
        after: float = 0.2,
        ring: bool | None = None,
        sip: int | None = None,
    ) -> None:
        """Declare how ``name`` (or ``_default``) answers when dialled."""
        body: Json = {"answer": answer, "after": after, "ring": ring, "sip": sip}
        await self._request("PUT", f"/endpoints/{name}", json=body)

    async def media(self, seconds: float, media: str | None = None) -> None:
        await self._request("PUT", "/media", json={"media": media, "seconds": seconds})

    async def events(self, channel_id: str | None = None, since: int = 0) -> list[Json]:
        params = {"since": str(since)} | ({"channel": channel_id} if channel_id else {})
        result: list[Json] = await self._request("GET", "/events", params=params)
        return result

    async def requests(self, since: int = 0) -> list[Json]:
        result: list[Json] = await self._request("GET", "/requests", params={"since": str(since)})
        return result

    async def apps(self) -> list[str]:
        result: list[str] = await self._request("GET", "/apps")
        return result

    async def bridges(self) -> list[Json]:
        result: list[Json] = await self._request("GET", "/bridges")
        return result

    async def recordings(self) -> Json:
        result: Json = await self._request("GET", "/recordings")
        return result

    async def reset(self) -> None:
        await self._request("POST", "/reset")
