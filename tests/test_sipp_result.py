"""What a SIPp run leaves in its folder, read back: the call counts from its statistics
file and the end of its error file (why failed calls failed)."""

from __future__ import annotations

from pathlib import Path

from callcontrol.sipp import ERRORS_KEPT, Sipp


def test_a_run_is_read_with_its_counts_and_the_end_of_its_errors(tmp_path: Path) -> None:
    sipp = Sipp("terminal_answered.xml", 5070, 6000, tmp_path, messages=False)
    stats = "StartTime;SuccessfulCall(C);FailedCall(C)\n0;1;0\n1;1998;2\n"
    (tmp_path / "run-1.csv").write_text(stats)
    lines = [
        f"call {n}: while expecting '200' (index 5), received 'SIP/2.0 503'" for n in range(200)
    ]
    (tmp_path / "run-1.errors").write_text("\n".join(lines) + "\n")
    result = sipp.result("run-1", 1, "")
    assert (result.successful, result.failed) == (1998, 2)
    assert len(result.errors) == ERRORS_KEPT
    assert result.errors.splitlines()[-1] == lines[-1]
    # A run without errors leaves no error file: nothing to say.
    (tmp_path / "run-2.csv").write_text(stats.replace(";2\n", ";0\n"))
    assert sipp.result("run-2", 0, "").errors == ""
