"""ARI over aioari: typed requests, library errors translated at this one boundary,
and the event stream of one Asterisk.

Only this module imports aioari. Requests return plain JSON (dicts); a request on
a channel that already left raises :class:`ChannelGone`, which callers expect.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import aioari
import aiohttp
from aiohttp import web_exceptions
from aioswagger11.http_client import ApiKeyAuthenticator, AsynchronousHttpClient

from callcontrol.errors import AriError, AriUnavailable, ChannelGone
from callcontrol.masking import mask
from callcontrol.masking import shown_url as shown_url

log = logging.getLogger(__name__)

Event = dict[str, Any]
"""One ARI event as Asterisk sent it (``type`` names it)."""
Json = dict[str, Any]


class Ari:
    """One authenticated ARI client of one Asterisk."""

    def __init__(self, url: str, client: Any, user: str = "", password: str = "") -> None:
        self.url = url
        self._client = client
        self._user = user
        self._password = password
        self.journal: list[tuple[str, dict[str, Any]]] | None = None
        """When a list, every request made is appended as (``resource.operation``, params):
        the contract suite compares what the service asked of each Asterisk."""
        self._session: aiohttp.ClientSession | None = None
        """The requests sent by hand (see :meth:`_http`), made at first use."""
        self._closed = False

    @classmethod
    async def connect(cls, url: str, user: str, password: str) -> Ari:
        """Load the api-docs of the Asterisk at ``url``; raises AriUnavailable."""
        # As aioari.connect does, but the HTTP client is closed when loading fails:
        # otherwise every attempt while Asterisk is down leaks a ClientSession.
        host = urllib.parse.urlparse(url).netloc.split(":")[0]
        http = AsynchronousHttpClient(auth=ApiKeyAuthenticator(host, f"{user}:{password}"))
        client = aioari.Client(url, http)
        try:
            await client.init()
        except (aiohttp.ClientError, OSError, web_exceptions.HTTPError) as exc:
            await http.close()
            raise AriUnavailable("connect", 0, f"{shown_url(url)}: {mask(str(exc))}") from exc
        except BaseException:
            await http.close()
            raise
        return cls(url, client, user, password)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
        await self._client.close()

    async def events(self, app: str, deliver: Callable[[Event], None]) -> None:
        """Stream events of ``app`` into ``deliver`` until the socket closes.

        ``deliver`` must not block or await: aioari calls listeners inline, so one
        slow listener would stall every call of this Asterisk.
        """
        self._client.on_event("*", lambda event: deliver(event))
        try:
            await self._client.run(apps=app)
        except (aiohttp.ClientError, OSError, web_exceptions.HTTPError) as exc:
            raise AriUnavailable("events", 0, mask(str(exc))) from exc

    async def request(self, resource: str, operation: str, **params: Any) -> Any:
        """Run one operation (``channels``, ``answer``, channelId=…); JSON result or None."""
        name = f"{resource}.{operation}"
        params = {key: value for key, value in params.items() if value is not None}
        if self.journal is not None:
            self.journal.append((name, params))
        try:
            result = await getattr(getattr(self._client, resource), operation)(**params)
        except AttributeError as exc:  # aioari: the Asterisk's api-docs lack this operation
            raise AriError(name, 0, f"not offered by {shown_url(self.url)}") from exc
        except web_exceptions.HTTPNotFound as exc:
            raise ChannelGone(name, 404, _detail(exc)) from exc
        except web_exceptions.HTTPError as exc:
            raise AriError(name, exc.status_code, _detail(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise AriUnavailable(name, 0, mask(str(exc))) from exc
        if isinstance(result, list):
            return [getattr(item, "json", item) for item in result]
        return getattr(result, "json", result)

    # The operations the service uses, typed.

    async def channels(self) -> list[Json]:
        result: list[Json] = await self.request("channels", "list")
        return result

    async def bridges(self) -> list[Json]:
        result: list[Json] = await self.request("bridges", "list")
        return result

    async def answer(self, channel_id: str) -> None:
        await self.request("channels", "answer", channelId=channel_id)

    async def progress(self, channel_id: str) -> None:
        """183 Session Progress: early media to the caller, who is not answered."""
        await self.request("channels", "progress", channelId=channel_id)

    async def play(self, channel_id: str, media: str, lang: str, playback_id: str) -> None:
        await self.request(
            "channels", "play", channelId=channel_id, media=media, lang=lang, playbackId=playback_id
        )

    async def ring(self, channel_id: str) -> None:
        await self.request("channels", "ring", channelId=channel_id)

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("channels", "hangup", channelId=channel_id, reason=reason)

    async def create(
        self,
        endpoint: str,
        app: str,
        channel_id: str,
        app_args: str,
        variables: dict[str, str] | None = None,
    ) -> Json:
        """A channel to ``endpoint`` in ``app``, not yet dialled.

        ``variables`` (e.g. ``CALLERID(num)``) are set as it is made: setting them after
        races its entry into the app (Asterisk answers 409 until StasisStart). No
        ``otherChannelId``: Asterisk refuses (409) the id of an existing channel there.
        """
        result: Json = await self.request(
            "channels",
            "create",
            endpoint=endpoint,
            app=app,
            appArgs=app_args,
            channelId=channel_id,
            variables=variables or None,
        )
        return result

    async def dial(self, channel_id: str, caller: str, ring_seconds: int) -> None:
        await self.request(
            "channels", "dial", channelId=channel_id, caller=caller, timeout=ring_seconds
        )

    async def set_caller(self, channel_id: str, number: str, name: str | None) -> None:
        """Set a channel's caller id: number, and name when there is one."""
        await self.set_variable(channel_id, "CALLERID(num)", number)
        if name:
            await self.set_variable(channel_id, "CALLERID(name)", name)

    async def continue_in_dialplan(self, channel_id: str, context: str) -> None:
        """Leave the app for ``context``, extension ``s``, priority 1."""
        params = {"context": context, "extension": "s", "priority": "1"}
        await self._post("channels.continueInDialplan", channel_id, "continue", params)

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        params = {"variable": variable, "value": value}
        await self._post("channels.setChannelVar", channel_id, "variable", params)

    async def _post(self, name: str, channel_id: str, action: str, params: dict[str, str]) -> None:
        """``POST channels/<id>/<action>?<params>``, answered 204: the two requests of
        every handed-back call, sent on this client's own HTTP session rather than through
        the swagger client, whose layers add about half again to the request's own cost.
        Errors as :meth:`request` raises them."""
        if self.journal is not None:
            self.journal.append((name, {"channelId": channel_id, **params}))
        url = f"{self.url.rstrip('/')}/ari/channels/{urllib.parse.quote(channel_id, safe='')}"
        try:
            async with self._http(name).post(f"{url}/{action}", params=params) as reply:
                if reply.status < 300:
                    return
                status, text = reply.status, await reply.text()
        except (aiohttp.ClientError, OSError) as exc:
            raise AriUnavailable(name, 0, mask(str(exc))) from exc
        if status == 404:
            raise ChannelGone(name, 404, text)
        raise AriError(name, status, text)

    async def create_bridge(self, bridge_id: str, dtmf_events: bool = False) -> Json:
        """A mixing bridge. Asterisk bridges two RTP legs natively (media never reaches
        its core), so the app hears no DTMF; ``dtmf_events`` asks for them, at the price
        of carrying the media: only calls whose keys matter get it."""
        kind = "mixing,dtmf_events" if dtmf_events else "mixing"
        result: Json = await self.request(
            "bridges", "create", type=kind, bridgeId=bridge_id, name=bridge_id
        )
        return result

    async def add_to_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self.request(
            "bridges", "addChannel", bridgeId=bridge_id, channel=",".join(channel_ids)
        )

    async def filter_events(self, app: str, allowed: tuple[str, ...]) -> bool:
        """Ask Asterisk to send ``app`` only these event types; False if it cannot filter.

        Asterisk serialises every event it sends: dropping the ChannelVarset and
        ChannelDialplan flood saves its CPU as much as ours. Sent by hand: Asterisk
        reads the filter as the whole body, where aioari would wrap it in ``{"filter": …}``.
        """
        body = {"allowed": [{"type": kind} for kind in allowed]}
        if self.journal is not None:
            self.journal.append(("applications.filter", {"applicationName": app, **body}))
        path = f"applications/{app}/eventFilter"
        async with self._raw("PUT", path, "applications.filter", json=body) as reply:
            if reply.status == 404:
                text = await reply.text()
                if "pplication" not in text:  # no such operation here (the simulator)
                    return False
                raise ChannelGone("applications.filter", 404, text)  # app not yet registered
            if reply.status in (405, 501):
                return False
            if reply.status >= 400:
                raise AriError("applications.filter", reply.status, await reply.text())
            allowed_now = (await reply.json()).get("events_allowed", [])
        return len(allowed_now) == len(allowed)

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("bridges", "destroy", bridgeId=bridge_id)

    async def record_bridge(self, bridge_id: str, name: str) -> None:
        """Record both directions of a bridge into the stored recording ``name`` (WAV)."""
        await self.request(
            "bridges",
            "record",
            bridgeId=bridge_id,
            name=name,
            format="wav",
            ifExists="fail",
            terminateOn="none",
        )

    async def stop_recording(self, name: str) -> None:
        await self.request("recordings", "stop", recordingName=name)

    async def play_bridge(self, bridge_id: str, media: str, lang: str, playback_id: str) -> None:
        await self.request(
            "bridges", "play", bridgeId=bridge_id, media=media, lang=lang, playbackId=playback_id
        )

    async def stored_recording(self, name: str) -> bytes:
        """The audio of the stored recording ``name``: fetched over ARI, so callcontrol need
        not share a disk with Asterisk. Raw, because the swagger client reads JSON only."""
        path = f"recordings/stored/{urllib.parse.quote(name, safe='')}/file"
        if self.journal is not None:
            self.journal.append(("recordings.getStoredFile", {"recordingName": name}))
        async with self._raw("GET", path, "recordings.getStoredFile") as reply:
            if reply.status == 404:
                raise ChannelGone("recordings.getStoredFile", 404, await reply.text())
            if reply.status >= 400:
                raise AriError("recordings.getStoredFile", reply.status, await reply.text())
            return await reply.read()

    @contextlib.asynccontextmanager
    async def _raw(
        self, method: str, path: str, operation: str, **options: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request by hand (what the swagger client cannot send or read), with this
        client's credentials; a connection failure is AriUnavailable."""
        url = f"{self.url.rstrip('/')}/ari/{path}"
        try:
            async with self._http(operation).request(method, url, **options) as reply:
                yield reply
        except (aiohttp.ClientError, OSError) as exc:
            raise AriUnavailable(operation, 0, mask(str(exc))) from exc

    def _http(self, operation: str) -> aiohttp.ClientSession:
        """This client's own HTTP session, with its credentials (made at first use, closed
        with the client). A closed client (a link that reconnected since) sends nothing."""
        if self._closed:
            raise AriUnavailable(operation, 0, "this ARI client is closed")
        if self._session is None:
            token = base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
            self._session = aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"})
        return self._session

    async def delete_stored(self, name: str) -> None:
        await self.request("recordings", "deleteStored", recordingName=name)


def _detail(exc: web_exceptions.HTTPError) -> str:
    return str(getattr(exc, "text", None) or exc.reason or exc)
