"""One list of call scenarios, and two ways to play each: on the simulated Asterisk (its control
API plays the far ends) and on the real sandbox (SIPp plays them).

Either way the service under test is the same :class:`AsteriskLink` with a journal, over the
same dataset (``tests/e2e/dataset.yaml``); a run yields a :class:`Record`: the ARI requests the
service made, with the call's ids replaced by their roles, and the outcome it logged.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from callcontrol.config import Config
from callcontrol.session import Outcome
from callcontrol.simulator import Behaviour, Simulator, SimulatorConfig
from callcontrol.simulator.client import ControlClient
from tests.e2e.harness import (
    AriRest,
    LiveLink,
    finish_sipp,
    link_config,
    no_channel_left,
    run_sipp,
    until,
)
from tests.e2e.sandboxes import AsteriskHandle
from tests.e2e.sipp import Sipp, SippResult

APP = "callcontrol-e2e"
"""The Stasis app of the dataset's application server: both modes use it."""
DIAL_TIMEOUT = 1.0
PASSWORDS = {
    "e2e-alice": "alice-e2e-secret",
    "e2e-carol": "carol-e2e-secret",
    "e2e-ghost": "ghost-e2e-secret",
}
"""Terminal passwords of dataset.yaml (SIPp authenticates with them)."""

FarEnd = Literal["answer", "busy", "noanswer"]


@dataclass(frozen=True)
class Scenario:
    """A terminal dials a number; the dialled party (if any) answers, is busy or rings out;
    an answered call is hung up by the caller after a moment."""

    name: str
    caller: str
    dialled: str
    callee: str | None = None
    """The endpoint the service is expected to dial (the far end SIPp or the simulator plays)."""
    far_end: FarEnd | None = None
    outcome: tuple[str, str, str | None, str | None, bool] = ("", "", None, None, False)
    """(decision, result, reason, cause, answered) the service must log."""


SCENARIOS = (
    Scenario(
        "internal-answered",
        "e2e-alice",
        "102",
        "e2e-bob",
        "answer",
        ("dial terminal e2e-bob", "answered, caller hung up", None, "normal", True),
    ),
    Scenario(
        "external-answered",
        "e2e-alice",
        "600123123",
        "carrier-e2e",
        "answer",
        ("dial carrier carrier-e2e", "answered, caller hung up", None, "normal", True),
    ),
    Scenario(
        "busy",
        "e2e-alice",
        "102",
        "e2e-bob",
        "busy",
        ("dial terminal e2e-bob", "callee failed", None, "busy", False),
    ),
    Scenario(
        "no-answer",
        "e2e-alice",
        "102",
        "e2e-bob",
        "noanswer",
        ("dial terminal e2e-bob", "callee failed", None, "no_answer", False),
    ),
    Scenario(
        "refused",
        "e2e-carol",
        "803123456",
        # carol's client has voice notifications: 183, the locution, then 403.
        outcome=(
            "reject",
            "refused after its voice notification",
            "not_allowed",
            "rejected",
            False,
        ),
    ),
    Scenario(
        "unknown-endpoint",
        "e2e-ghost",
        "102",
        # no_client is spoken by the platform whatever the feature.
        outcome=(
            "reject",
            "refused after its voice notification",
            "no_client",
            "unallocated",
            False,
        ),
    ),
)


@dataclass(frozen=True)
class Record:
    """What the service did in one run of a scenario."""

    requests: tuple[tuple[str, str], ...]
    """(operation, its parameters as sorted JSON with ids replaced by roles), in order."""
    outcome: tuple[str, str, str | None, str | None, bool]
    events: str
    """The events the service received, to explain a difference."""

    @property
    def operations(self) -> list[str]:
        return [name for name, _ in self.requests]


RETRIED = frozenset({"applications.filter"})
"""Requests the link repeats until the app is registered (404 before): how many times
depends on timing, so repeats in a row count once."""


def roles(journal: list[tuple[str, dict[str, Any]]], caller: str) -> tuple[tuple[str, str], ...]:
    """The journal with the call's ids replaced by A (caller), B (dialled leg) and BRIDGE."""
    rows: list[tuple[str, str]] = []
    for name, params in journal:
        text = json.dumps(params, sort_keys=True)
        text = text.replace(f"{caller}-bridge", "BRIDGE")
        text = re.sub(rf"{re.escape(caller)}-b[0-9a-f]{{6}}", "B", text)
        text = text.replace(caller, "A").replace(APP, "APP")
        if name in RETRIED and rows and rows[-1] == (name, text):
            continue
        rows.append((name, text))
    return tuple(rows)


def summary(outcome: Outcome) -> tuple[str, str, str | None, str | None, bool]:
    return (outcome.decision, outcome.result, outcome.reason, outcome.cause, outcome.answered)


# ---- the simulated Asterisk ------------------------------------------------------------------

SIM_ANSWERS: dict[FarEnd, Behaviour] = {
    "answer": Behaviour("answer", after=0.2),
    "busy": Behaviour("busy", after=0.05),
    "noanswer": Behaviour("noanswer"),
}


async def on_simulator(scenario: Scenario, database_url: str, folder: Path) -> Record:
    config = SimulatorConfig(
        port=0,
        user="contract",
        password="contract-secret",
        app=APP,
        recordings_dir=folder / "recordings",
        playback_seconds=0.05,
        ring_after=0.01,
    )
    async with Simulator(config) as sim, ControlClient(sim.url) as control:
        live = LiveLink(
            link_config_for(sim.url, config.user, config.password, database_url), journal=True
        )
        await live.start_until(lambda: has_app(control))
        try:
            if scenario.callee is not None and scenario.far_end is not None:
                behaviour = SIM_ANSWERS[scenario.far_end]
                await control.endpoint(
                    scenario.callee, behaviour.answer, after=behaviour.after, ring=None
                )
            call = await control.call(scenario.caller, scenario.dialled)
            caller = str(call["id"])
            if scenario.far_end == "answer":

                async def bridged() -> bool:
                    return bool((await control.channel(caller)).get("bridge_id"))

                await until(bridged, within=5)
                await asyncio.sleep(0.5)  # talk, as the SIPp caller does
                await control.hang_up(caller)
            outcome = await live.outcome(within=DIAL_TIMEOUT + 10)
            await until(lambda: no_sim_channels(control), within=5)
        finally:
            await live.stop()
        assert live.link.journal is not None
        return Record(roles(live.link.journal, caller), summary(outcome), live.story())


def link_config_for(url: str, user: str, password: str, database_url: str) -> Config:
    return Config(
        ari_url=url,
        ari_user=user,
        ari_password=password,
        app=APP,
        database_url=database_url,
        dial_timeout=DIAL_TIMEOUT,
        reconnect_min=0.2,
        reconnect_max=1.0,
        teardown_timeout=3.0,
        health_port=0,
    )


async def has_app(control: ControlClient) -> bool:
    return APP in await control.apps()


async def no_sim_channels(control: ControlClient) -> bool:
    return await control.channels() == []


# ---- the real sandbox, SIPp at both ends -----------------------------------------------------

SIPP_CALLEES: dict[FarEnd, str] = {
    "answer": "uas_answer.xml",
    "busy": "uas_busy.xml",
    "noanswer": "uas_noanswer.xml",
}


async def on_asterisk(
    scenario: Scenario, asterisk: AsteriskHandle, sipp: Callable[..., Sipp]
) -> tuple[Record, SippResult]:
    """Play the scenario with SIPp; the record, and what the SIPp caller saw."""
    assert asterisk.app == APP
    rest = AriRest.of(asterisk)
    live = LiveLink(link_config(asterisk, dial_timeout=DIAL_TIMEOUT), journal=True)
    await live.start(rest)
    callee_role = None
    try:
        if scenario.callee is not None and scenario.far_end is not None:
            port = (
                asterisk.carrier_port
                if scenario.callee == "carrier-e2e"
                else asterisk.callee_ports[scenario.callee]
            )
            callee_role = sipp(SIPP_CALLEES[scenario.far_end], port)
            ringing = callee_role.start(calls=1, timeout=20)
        answered = scenario.far_end == "answer"
        caller = await run_sipp(
            sipp("terminal_answered.xml" if answered else "terminal_refused.xml"),
            asterisk.sip_target,
            service=scenario.dialled,
            user=scenario.caller,
            password=PASSWORDS[scenario.caller],
            hold_ms=500 if answered else None,
            timeout=20,
        )
        if callee_role is not None:
            await finish_sipp(callee_role, ringing)
        outcome = await live.outcome(within=DIAL_TIMEOUT + 10)
        await no_channel_left(asterisk, rest)
    finally:
        await live.stop()
        await until(lambda: rest.lacks_app(APP), within=5)
        await rest.close()
    assert live.link.journal is not None
    a_leg = outcome.call_id
    return Record(roles(live.link.journal, a_leg), summary(outcome), live.story()), caller
