"""The recording plan and the ``*<code>`` toggle (DESIGN §3.8), with plain data."""

from __future__ import annotations

import pytest

from dialplan.recording import Toggle, ddi_records, plan


@pytest.mark.parametrize(
    ("record_calls", "direction", "records"),
    [
        ("none", "inbound", False),
        ("none", "outbound", False),
        ("all", "inbound", True),
        ("all", "outbound", True),
        ("inbound", "inbound", True),
        ("inbound", "outbound", False),
        ("outbound", "outbound", True),
        ("outbound", "inbound", False),
    ],
)
def test_a_ddi_records_the_calls_of_its_mode(
    record_calls: str, direction: str, records: bool
) -> None:
    assert ddi_records(record_calls, direction) is records  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("on_demand", "dialled", "from_answer", "dtmf"),
    [
        ("off", True, False, None),
        ("dtmf", True, False, "5"),
        ("service_code", True, True, None),
        ("service_code", False, False, None),
        ("both", True, True, "5"),
        ("both", False, False, "5"),
    ],
)
def test_on_demand_modes_decide_service_code_and_dtmf(
    on_demand: str, dialled: bool, from_answer: bool, dtmf: str | None
) -> None:
    result = plan(
        on_demand=on_demand,
        code="5",
        service_code_dialled=dialled,
        ddi=None,
        ddi_record_calls="none",
        direction="outbound",
    )
    assert (result.from_answer, result.dtmf_code) == (from_answer, dtmf)
    assert result.records is (from_answer or dtmf is not None)


def test_a_recording_ddi_records_from_answer_and_says_so() -> None:
    result = plan(
        on_demand="off",
        code=None,
        service_code_dialled=False,
        ddi="+34910000101",
        ddi_record_calls="inbound",
        direction="inbound",
    )
    assert result.from_answer
    assert result.why == "DDI +34910000101 records inbound calls: recorded from answer"


def test_nothing_records_and_the_why_names_the_setting() -> None:
    off = plan(
        on_demand="off",
        code=None,
        service_code_dialled=False,
        ddi=None,
        ddi_record_calls="none",
        direction="outbound",
    )
    only_code = plan(
        on_demand="service_code",
        code="5",
        service_code_dialled=False,
        ddi=None,
        ddi_record_calls="none",
        direction="outbound",
    )
    assert not off.records
    assert off.why == "not recorded: on-demand recording is off"
    assert only_code.why == "not recorded: on-demand recording is by service code only"


def test_the_toggle_fires_on_each_completed_code() -> None:
    toggle = Toggle("5")
    presses = [("*", 0.0), ("5", 0.2), ("1", 1.0), ("*", 1.2), ("5", 1.4), ("*", 2.0), ("5", 2.1)]
    assert [toggle.press(digit, at) for digit, at in presses] == [
        False,
        True,
        False,
        False,
        True,
        False,
        True,
    ]


def test_digits_too_far_apart_are_not_a_code_and_longer_codes_need_every_digit() -> None:
    slow = Toggle("5", gap=3.0)
    long = Toggle("42")
    assert [slow.press("*", 0.0), slow.press("5", 5.0)] == [False, False]
    assert [
        long.press(d, t) for d, t in [("*", 0), ("4", 0.1), ("*", 0.2), ("4", 0.3), ("2", 0.4)]
    ] == [
        False,
        False,
        False,
        False,
        True,
    ]
