"""``bench cost --opcodes``: opcodes counted while on, charged to the innermost function of
callcontrol's code on the stack; both sides counted and compared function by function."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callcontrol.bench_cost import SIDES, Opcodes, bench_cost
from callcontrol.bench_opcodes import OUTSIDE, OpcodeCounter, package_roots, read
from callcontrol.cli import app
from callcontrol.config import Config
from dialplan.errors import CallControlError

HERE = f"{Path(__file__).resolve().parent}/"


def own_work() -> str:
    """Ours (this folder is the counter's root): json's Python code is charged here."""
    return json.dumps({"calls": [1, 2, 3]}, indent=1)


def counted_in_a_thread(counter: OpcodeCounter) -> None:
    """Run ``own_work`` uncounted, then counted, in a thread of its own: the trace function
    it installs ends with it (the test runner's own tracer is left alone)."""

    def work() -> None:
        counter.install()
        own_work()  # not counting yet: nothing charged
        counter.on()
        own_work()
        counter.off()
        own_work()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


def test_opcodes_are_charged_to_the_innermost_function_of_ours() -> None:
    counter = OpcodeCounter((HERE,))
    counted_in_a_thread(counter)
    own = f"tests/test_bench_opcodes.py:{own_work.__code__.co_firstlineno} own_work"
    assert counter.counts[own] > 20  # own_work's few and json.dumps's many
    # Besides, only the call that switched counting off, charged to the function of ours
    # that made it (the counter's own file is not under the root).
    others = {name: n for name, n in counter.counts.items() if name != own}
    (other,) = others
    assert other.endswith("counted_in_a_thread.<locals>.work")
    assert others[other] < 10
    once = counter.total
    counted_in_a_thread(counter)
    assert counter.total == 2 * once  # the same work, the same count


def test_code_none_of_ours_is_on_the_stack_of_is_charged_outside(tmp_path: Path) -> None:
    counter = OpcodeCounter((f"{tmp_path}/",))
    counted_in_a_thread(counter)
    assert list(counter.counts) == [OUTSIDE]
    counter.dump(tmp_path / "counts.json")
    assert read(tmp_path / "counts.json") == counter.counts


def test_the_tracer_charges_a_frames_opcodes_to_its_owner_while_on() -> None:
    """The trace function, called as Python calls it (Python traces nothing inside a trace
    function, coverage included: here it is called directly)."""
    counter = OpcodeCounter((HERE,))
    here = sys._getframe()
    assert counter._call(here, "call", None) is None  # off: the frame is not traced
    counter.on()
    assert counter.counting
    assert counter._call(here, "line", None) is None  # only a call starts tracing
    opcode = counter._call(here, "call", None)
    assert opcode is not None
    assert here.f_trace_opcodes
    here.f_trace_opcodes = False
    for event in ("opcode", "line", "opcode", "return"):
        assert opcode(here, event, None) is opcode
    counter.off()
    assert not counter.counting
    name = test_the_tracer_charges_a_frames_opcodes_to_its_owner_while_on.__code__
    assert counter.counts == {
        f"tests/test_bench_opcodes.py:{name.co_firstlineno} {name.co_name}": 2
    }


def test_a_frame_not_ours_is_charged_to_the_function_of_ours_below_it(tmp_path: Path) -> None:
    counter = OpcodeCounter((HERE,))
    elsewhere: dict[str, object] = {}
    exec(
        compile("import sys\ndef f(): return sys._getframe()", "/elsewhere/lib.py", "exec"),
        elsewhere,
    )
    library = elsewhere["f"]()  # type: ignore[operator]
    # A module body of ours is no function: charged below it too.
    module: dict[str, object] = {}
    exec(compile("import sys\nframe = sys._getframe()", f"{HERE}module.py", "exec"), module)
    this = sys._getframe().f_code
    mine = f"tests/test_bench_opcodes.py:{this.co_firstlineno} {this.co_name}"
    assert counter._owner(library) == mine
    assert counter._owner(module["frame"]) == mine  # type: ignore[arg-type]
    assert OpcodeCounter((f"{tmp_path}/",))._owner(library) == OUTSIDE


def test_the_default_roots_are_callcontrols_packages() -> None:
    roots = package_roots()
    assert [Path(root).name for root in roots] == ["callcontrol", "dialplan", "models", "locutions"]
    assert all(Path(root).is_dir() for root in roots)


async def test_both_sides_are_counted_and_compared_function_by_function() -> None:
    printed: list[str] = []
    rounds = await bench_cost(3, 20.0, 1, Config(), printed.append, clients=0, warm=1, opcodes=4)
    assert [r.side for r in rounds] == list(SIDES)
    floor, ours = rounds
    assert floor.instructions == sum(floor.functions.values()) > 0
    assert ours.per_call > floor.per_call
    assert any(name.startswith("callcontrol/bench_floor.py:") for name in floor.functions)
    assert any(name.startswith("dialplan/pipeline.py:") for name in ours.functions)
    assert not any(name.startswith("dialplan/pipeline.py:") for name in floor.functions)
    assert not any(" <module>" in name for name in ours.functions)  # the loop: outside
    assert printed[1].endswith("opcodes per call, this side's process only (sys.settrace)")
    table = printed[printed.index("    floor  callcontrol  function") + 1 :]
    assert len(table) == 4 + 1  # the four most, then the work outside callcontrol's code
    assert table[-1].endswith(OUTSIDE)
    ours_column = [int(row.split()[1].replace(",", "")) for row in table]
    assert sum(ours_column) <= ours.per_call + len(table)  # a part of the whole, rounded


def test_a_negative_count_of_functions_is_refused_on_the_command_line() -> None:
    result = CliRunner().invoke(app, ["bench", "cost", "--opcodes", "-1"])
    assert result.exit_code == 2
    assert "Invalid value for '--opcodes'" in result.output


def test_a_side_that_wrote_no_counts_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CallControlError, match="the side wrote no opcode counts"):
        Opcodes().counted(tmp_path / "floor-0")
