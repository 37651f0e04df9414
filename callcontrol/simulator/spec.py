"""How the simulator declares an ARI operation, and the pieces operations share.

The tables (:mod:`.spec_channels`, :mod:`.spec_resources`) are the simulator's contract:
the api-docs are rendered from them, the routes are built from them, and each request's
parameters are parsed and checked against them. Paths, nicknames, parameter names and
types, and error codes are those of Asterisk 22's ARI; the descriptions are ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ParamType = Literal["path", "query", "body"]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    param_type: ParamType
    description: str
    data_type: str = "string"
    required: bool = False
    multiple: bool = False
    default: str | int | bool | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    resource: str
    """The api-docs resource (``channels``), as aioari names its repository."""
    method: str
    path: str
    nickname: str
    summary: str
    response: str = "void"
    params: tuple[Param, ...] = ()
    errors: tuple[tuple[int, str], ...] = ()
    websocket: bool = False
    created: bool = False
    """Answers 201 Created (play, record), not 200, as Asterisk does."""

    @property
    def key(self) -> str:
        return f"{self.resource}.{self.nickname}"


def path(name: str, what: str) -> Param:
    return Param(name, "path", what, required=True)


def query(name: str, what: str, data_type: str = "string", **options: object) -> Param:
    return Param(name, "query", what, data_type, **options)  # type: ignore[arg-type]


CHANNEL = path("channelId", "The channel's id.")
BRIDGE = path("bridgeId", "The bridge's id.")
VARIABLES = Param("variables", "body", "Variables to set on the new channel.", "containers")
NOT_FOUND = (404, "Channel not found")
NOT_IN_STASIS = (409, "Channel not in a Stasis application")
BAD_STATE = (412, "Channel in invalid state")
SPY = ("none", "both", "out", "in")
RECORD = (
    query("name", "Recording name (file name without extension).", required=True),
    query("format", "Format to record in (file extension).", required=True),
    query("maxDurationSeconds", "Longest recording, 0 for no limit.", "int", default=0),
    query("maxSilenceSeconds", "Longest silence, 0 for no limit.", "int", default=0),
    query(
        "ifExists", "When the file exists.", default="fail", values=("fail", "overwrite", "append")
    ),
    query("beep", "Play a beep first.", "boolean", default=False),
    query(
        "terminateOn",
        "DTMF that ends the recording.",
        default="none",
        values=("none", "any", "*", "#"),
    ),
)
HANGUP_REASONS = (
    "normal",
    "busy",
    "congestion",
    "no_answer",
    "timeout",
    "rejected",
    "unallocated",
    "normal_unspecified",
    "number_incomplete",
    "codec_mismatch",
    "interworking",
    "failure",
    "answered_elsewhere",
)


def channel_op(method: str, suffix: str, nickname: str, summary: str) -> Operation:
    return Operation(
        "channels",
        method,
        f"/channels/{{channelId}}/{suffix}",
        nickname,
        summary,
        params=(CHANNEL,),
        errors=(NOT_FOUND, NOT_IN_STASIS, BAD_STATE),
    )


RESOURCES: dict[str, str] = {
    "asterisk": "Asterisk information",
    "channels": "Channel resources",
    "bridges": "Bridge resources",
    "recordings": "Recording resources",
    "playbacks": "Playback control resources",
    "events": "WebSocket resource",
    "applications": "Stasis application resources",
}
