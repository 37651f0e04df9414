"""Bodies of the control API, validated, and the views it returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from callcontrol.simulator import causes
from callcontrol.simulator.calls import CallSpec, Dtmf
from callcontrol.simulator.dialing import parse_caller_id
from callcontrol.simulator.model import Channel, Json
from callcontrol.simulator.settings import Answer, Behaviour


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DtmfRequest(_Body):
    digits: str = Field(min_length=1)
    after: float = Field(0.0, ge=0)
    between: float = Field(0.1, ge=0)
    duration_ms: int = Field(100, gt=0)

    def to_dtmf(self) -> Dtmf:
        return Dtmf(self.digits, self.after, self.between, self.duration_ms)


class CallRequest(_Body):
    """``{"from": "alice", "to": "1002"}`` and optionally: ``args`` (Stasis arguments,
    default ``["terminal"]``), ``caller_id`` (``"Alice <1001>"``), ``source_ip``,
    ``app``, ``context``, ``language``, ``channel_id``, ``dtmf`` (a list of
    :class:`DtmfRequest`), ``hangup_after`` (seconds)."""

    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    args: list[str] = Field(default_factory=lambda: ["terminal"])
    caller_id: str | None = None
    source_ip: str = ""
    app: str | None = None
    context: str | None = None
    language: str | None = None
    channel_id: str | None = None
    dtmf: list[DtmfRequest] = Field(default_factory=list)
    hangup_after: float | None = Field(None, ge=0)

    @field_validator("args", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return value.split(",") if isinstance(value, str) else value

    def to_spec(self) -> CallSpec:
        return CallSpec(
            endpoint=self.from_,
            exten=self.to,
            args=tuple(self.args),
            caller=parse_caller_id(self.caller_id) if self.caller_id else None,
            source_ip=self.source_ip,
            app=self.app,
            context=self.context,
            language=self.language,
            channel_id=self.channel_id,
            dtmf=tuple(press.to_dtmf() for press in self.dtmf),
            hangup_after=self.hangup_after,
        )


class HangupRequest(_Body):
    """The far end hangs up ``after`` seconds from now with ``cause`` (Q.850) or
    ``reason`` (an ARI reason name such as ``busy``); normal clearing by default."""

    after: float = Field(0.0, ge=0)
    cause: int | None = Field(None, ge=0, le=127)
    reason: str | None = None

    @field_validator("reason")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in causes.REASONS:
            raise ValueError(f"unknown reason (one of {', '.join(causes.REASONS)})")
        return value

    def cause_code(self) -> int:
        if self.cause is not None:
            return self.cause
        return causes.REASONS[self.reason or "normal"]


class BehaviourRequest(_Body):
    """How an endpoint answers: ``answer`` (see :data:`~.settings.Answer`), ``after``
    seconds, whether it rings first, and the SIP final response of a refusal."""

    answer: Answer = "answer"
    after: float = Field(0.2, ge=0)
    ring: bool | None = None
    sip: int | None = Field(None, ge=300, le=699)

    def to_behaviour(self) -> Behaviour:
        return Behaviour(self.answer, self.after, self.ring, self.sip)


class MediaRequest(_Body):
    """``seconds`` a medium plays; without ``media``, the default for all."""

    media: str | None = None
    seconds: float = Field(ge=0)


def channel_view(channel: Channel) -> Json:
    """The channel as ARI shows it, plus what only the simulator knows."""
    return {
        **channel.to_json(),
        "endpoint": channel.endpoint,
        "app": channel.app,
        "in_stasis": channel.in_stasis,
        "bridge_id": channel.bridge_id,
        "source_address": channel.source_address,
        "indications": list(channel.indications),
        "variables": dict(channel.variables),
    }


def mentions(event: Json, channel_id: str) -> bool:
    """Whether ``event`` is about ``channel_id`` (as channel, peer, caller or target)."""
    for key in ("channel", "peer", "caller"):
        value = event.get(key)
        if isinstance(value, dict) and value.get("id") == channel_id:
            return True
    for key in ("playback", "recording"):
        value = event.get(key)
        if isinstance(value, dict) and value.get("target_uri") == f"channel:{channel_id}":
            return True
    return False
