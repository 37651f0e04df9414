"""How ``callcontrol bench calls`` reads its runs: which rate a side sustained, where it
probes next between the steps, and what its summary compares."""

from __future__ import annotations

from dataclasses import replace

from callcontrol.bench_measure import Cpu, Run, best_rate, probe, summary
from callcontrol.sipp import SippResult

HOLD_MS = 500


def run(side: str, rate: int, ok: bool = True, app_ms: float = 1.0) -> Run:
    """``side`` offered ``rate`` calls/s for 10 s: every call completed on time, or (not
    ``ok``) a tenth of them failed."""
    calls = rate * 10
    successful = calls if ok else calls - calls // 10
    result = SippResult(0, successful, calls - successful, (), "")
    cpu = Cpu(asterisk=0.0, app=app_ms * calls / 1000, database=0.0, sipp=0.0)
    return Run(side, rate, calls, result, calls / rate + 1.5, cpu, 0, 2 * calls, 0, 0)


def test_a_side_is_probed_halfway_until_its_limit_is_known_to_three_percent() -> None:
    runs = [run("floor", 250), run("floor", 300), run("floor", 350, ok=False)]
    assert best_rate(runs, "floor", HOLD_MS) == 300
    assert probe(runs, "floor", HOLD_MS) == 325
    runs.append(run("floor", 325, ok=False))
    assert probe(runs, "floor", HOLD_MS) == 312
    runs.append(run("floor", 312))
    assert best_rate(runs, "floor", HOLD_MS) == 312
    # 312 held, 325 did not: 13 calls/s apart, more than 3 % of 325.
    assert probe(runs, "floor", HOLD_MS) == 318
    runs.append(run("floor", 318))
    # 318 held, 325 did not: 7 calls/s apart, within 3 % of 325, nothing more to learn.
    assert probe(runs, "floor", HOLD_MS) is None


def test_no_probe_without_a_rate_held_and_one_not() -> None:
    held_everything = [run("callcontrol", 100), run("callcontrol", 200)]
    assert probe(held_everything, "callcontrol", HOLD_MS) is None
    held_nothing = [run("callcontrol", 100, ok=False)]
    assert probe(held_nothing, "callcontrol", HOLD_MS) is None
    # A rate placed too slowly is not held either, even with every call completed.
    slow = replace(run("callcontrol", 200), seconds=20.0)  # placed at about 108/s
    assert not slow.sustained(HOLD_MS)
    assert probe([run("callcontrol", 100), slow], "callcontrol", HOLD_MS) == 150


def test_the_summary_reads_the_probes_and_compares_cost_where_both_held() -> None:
    runs = [
        run("static", 300),
        run("floor", 250, app_ms=0.8),
        run("callcontrol", 250, app_ms=1.5),
        run("floor", 300, app_ms=0.9),
        run("callcontrol", 300, ok=False),
        run("callcontrol", 275, app_ms=1.6),
        run("floor", 350, ok=False),
        run("floor", 325, ok=False),
    ]
    lines = summary(runs, HOLD_MS, "ari")
    assert lines[0].endswith("static 300/s, floor (ari) 300/s, callcontrol (ari) 275/s")
    assert lines[1].startswith("ratios: callcontrol/floor 0.92, callcontrol/static 0.92")
    # 275/s was only probed by callcontrol: the cost is compared at 250/s, both held it.
    assert lines[2] == (
        "at 250/s, CPU ms per call of the app and its database: callcontrol 1.50, floor 0.80 (1.9×)"
    )


def test_a_rate_during_which_asterisk_died_is_not_sustained() -> None:
    died = replace(run("callcontrol", 300), asterisk_died=True)  # every call completed
    assert not died.sustained(HOLD_MS)
    runs = [run("callcontrol", 250), died]
    assert best_rate(runs, "callcontrol", HOLD_MS) == 250
    assert probe(runs, "callcontrol", HOLD_MS) == 275


def test_with_several_ladders_each_is_shown_and_the_limits_are_their_medians() -> None:
    def ladder(number: int, floor: int, ours: int) -> list[Run]:
        runs = [
            run("static", 300),
            run("floor", floor),
            run("floor", floor + 25, ok=False),
            run("callcontrol", ours),
            run("callcontrol", ours + 25, ok=False),
        ]
        return [replace(each, ladder=number) for each in runs]

    # The second ladder's floor was lucky: alone, that ladder reads 0.80; the medians, 0.90.
    runs = ladder(0, 250, 225) + ladder(1, 300, 240) + ladder(2, 250, 220)
    lines = summary(runs, HOLD_MS, "fastagi")
    assert lines[:3] == [
        "ladder 1: static 300/s, floor 250/s, callcontrol 225/s (callcontrol/floor 0.90)",
        "ladder 2: static 300/s, floor 300/s, callcontrol 240/s (callcontrol/floor 0.80)",
        "ladder 3: static 300/s, floor 250/s, callcontrol 220/s (callcontrol/floor 0.88)",
    ]
    assert lines[3].startswith("sustained (the median of 3 ladders, ≤ 0.1% failed")
    assert lines[3].endswith("static 300/s, floor (fastagi) 250/s, callcontrol (fastagi) 225/s")
    assert lines[4].startswith("ratios: callcontrol/floor 0.90,")


def test_the_ami_floor_is_compared_with_the_floor_at_the_steps_both_sustained() -> None:
    def costing(side: str, rate: int, asterisk_ms: float, app_ms: float, ok: bool = True) -> Run:
        plain = run(side, rate, ok=ok)
        cpu = Cpu(asterisk_ms * plain.calls / 1000, app_ms * plain.calls / 1000, 0.0, 0.0)
        return replace(plain, cpu=cpu)

    without = [run("floor", 100), run("callcontrol", 100), run("static", 100)]
    assert not [line for line in summary(without, HOLD_MS, "fastagi") if "end reports" in line]
    runs = [
        costing("floor", 100, 5.0, 0.7),
        costing("floor-ami", 100, 6.0, 0.6),
        costing("floor", 200, 4.0, 0.6),
        costing("floor-ami", 200, 5.0, 0.5),
        costing("floor", 300, 4.0, 0.6),
        costing("floor-ami", 300, 9.0, 0.5, ok=False),  # not sustained: left out
    ]
    [line] = [line for line in summary(runs, HOLD_MS, "fastagi") if "end reports" in line]
    assert line == (
        "end reports, CPU ms per call (medians of 2 steps): Asterisk 4.50 over AGI,"
        " 5.50 over AMI (1.22×); the app 0.65 over AGI, 0.55 over AMI"
    )
    lost = [costing("floor", 100, 5.0, 0.7), costing("floor-ami", 100, 6.0, 0.6, ok=False)]
    assert "end reports: no step that both floors (AGI and AMI ends) sustained" in summary(
        lost, HOLD_MS, "fastagi"
    )
