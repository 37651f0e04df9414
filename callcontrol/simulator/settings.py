"""Settings of the simulated Asterisk, and how simulated endpoints answer when dialled.

Every timing the simulator uses is a named value here, not a number in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

Answer = Literal["answer", "busy", "noanswer", "fail", "unavailable", "unreachable"]
"""How a dialled endpoint behaves.

- ``answer``: rings, then answers after ``after`` seconds (Dial RINGING, then ANSWER);
- ``busy``: after ``after`` seconds, answers 486: hang-up cause 17, ``tech_cause`` 486;
- ``noanswer``: rings until the dial times out (Dial NOANSWER) or someone hangs up;
- ``fail``: after ``after`` seconds, answers 503 (cause 34), or ``sip`` if given;
- ``unavailable``: after ``after`` seconds, answers 480 (cause 19);
- ``unreachable``: the channel cannot even be created (``POST /channels/create`` and
  originate answer 500 "Allocation failed", as for an endpoint Asterisk cannot request).

As measured on Asterisk 22, a refused INVITE ends the dial with no ``Dial`` status
event: the application reads the outcome from ``cause``/``tech_cause`` of
ChannelHangupRequest and ChannelDestroyed.
"""
SIP_ANSWERS: dict[str, int] = {"busy": 486, "fail": 503, "unavailable": 480}
ANSWERS: tuple[str, ...] = get_args(Answer)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """One endpoint's answer to being dialled."""

    answer: Answer = "answer"
    after: float = 0.2
    """Seconds from the dial to the outcome (answer, busy, fail, unavailable)."""
    ring: bool | None = None
    """Whether the endpoint rings (Ringing state, Dial RINGING) before its outcome;
    by default only endpoints that answer or ring out do."""

    sip: int | None = None
    """The SIP final response of a refusing endpoint (default: 486, 503, 480)."""

    @property
    def rings(self) -> bool:
        return self.ring if self.ring is not None else self.answer in ("answer", "noanswer")

    @property
    def sip_code(self) -> int | None:
        """The final response it sends when it refuses (None when it does not)."""
        return self.sip or SIP_ANSWERS.get(self.answer)

    def to_json(self) -> dict[str, object]:
        return {
            "answer": self.answer,
            "after": self.after,
            "ring": self.rings,
            "sip": self.sip_code,
        }


@dataclass(slots=True)
class SimulatorConfig:
    """Everything the simulated Asterisk needs; tests override what they exercise."""

    host: str = "127.0.0.1"
    port: int = 8088
    """TCP port; 0 takes a free one (tests)."""
    app: str = "callcontrol"
    """The Stasis application simulated calls enter unless they name another."""
    user: str = "callcontrol"
    password: str = "callcontrol"
    recordings_dir: Path = Path("var/simulator/recordings")
    """Where recordings are written, as ``<name>.<format>``."""
    asterisk_id: str = "02:42:ac:11:00:02"
    system_name: str = "simulator"
    channel_id_prefix: str = ""
    """Prefixed to channel ids as ``<prefix>-<epoch>.<n>``, as Asterisk does with its
    ``systemname``: what keeps call ids unique across application servers."""
    version: str = "22.10.1-simulated"
    language: str = "en"
    context: str = "from-terminals"
    """Dialplan context of terminal calls; carrier calls use ``from-carriers``."""
    playback_seconds: float = 0.5
    """How long a medium plays unless ``media_seconds`` names it."""
    media_seconds: dict[str, float] = field(default_factory=dict)
    ring_after: float = 0.05
    """Seconds from a dial to the Ringing indication of an endpoint that rings."""
    dialplan_seconds: float = 0.0
    """Seconds a channel stays in the dialplan after Stasis() before it is hung up."""
    dialplan_cause: int = 34
    """The cause it is hung up with: the rendered dialplan ends with ``Hangup(34)`` (503)."""
    default_behaviour: Behaviour = field(default_factory=Behaviour)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    """Per endpoint (``alice``, ``carrier-1``) or per number at an endpoint
    (``600123123@carrier-1``); the most specific wins."""
    event_filters: bool = True
    """Whether applications can filter their events (``PUT …/eventFilter``): False plays an
    Asterisk older than 13.26 and 16.3, which sends every event."""
    request_log_limit: int = 200_000
    event_log_limit: int = 200_000

    def behaviour(self, resource: str) -> Behaviour:
        """How the endpoint ``resource`` (``bob`` or ``600123123@carrier-1``) answers."""
        if resource in self.behaviours:
            return self.behaviours[resource]
        _, _, endpoint = resource.rpartition("@")
        return self.behaviours.get(endpoint, self.default_behaviour)

    def seconds_of(self, media: str) -> float:
        return self.media_seconds.get(media, self.playback_seconds)
