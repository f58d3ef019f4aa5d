"""The reference benchmark (benchmarks/reference.py) passes against its stored values and fails, with a line that
names the figure, when a stored value, a bound or a pinned figure is off. Runs the planted configuration only (the
bundled one is CI's own step after the tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

@pytest.fixture(scope="module")
def reference():
    import reference

    return reference


def _pins(tmp_path, edit) -> Path:
    pins = json.loads((ROOT / "benchmarks" / "reference.json").read_text())
    edit(pins)
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(pins))
    return path


@pytest.mark.usefixtures("one_thread")  # restores torch's threads, which the planted run sets to 1 (and marks slow)
def test_planted_reference_holds_and_fails_when_a_pin_is_off(reference, tmp_path, capsys):
    assert reference.main(["--only", "planted"]) == 0
    out = capsys.readouterr().out
    assert "every figure holds (14)" in out and "bundled." not in out

    def shift(pins):  # a stored value off by more than its tolerance
        pins["planted.detection.llm.wrong_max"]["expected"] += 0.1

    def bound(pins):  # the value holds but the bound says a wrong explanation must score lower
        pins["planted.fuzzing.quoted.wrong_max"]["at_most"] = 0.4

    def missing(pins):  # a pinned figure that this configuration no longer produces
        pins["planted.simulation.oracle.correct_min"] = {"expected": 1.0, "tolerance": 0.0}

    def unpinned(pins):
        del pins["planted.simulation.baseline.correct_min"]

    cases = ((shift, "planted.detection.llm.wrong_max", "DIFFERS: expected 0.600000 +- 1e-06, got 0.500000"),
             (bound, "planted.fuzzing.quoted.wrong_max", "OUT OF BOUND: must be <= 0.4"),
             (missing, "planted.simulation.oracle.correct_min", "MISSING"),
             (unpinned, "planted.simulation.baseline.correct_min", "NOT PINNED"))
    for edit, name, why in cases:
        assert reference.main(["--only", "planted", "--expected", str(_pins(tmp_path, edit))]) == 1
        out = capsys.readouterr().out
        failed = [line for line in out.splitlines() if line.startswith(name)]
        assert len(failed) == 1 and why in failed[0], out
        assert "REFERENCE FAILED: 1 of" in out and out.count("DIFFERS") + out.count("OUT OF") + out.count(
            "MISSING") + out.count("NOT PINNED") == 1


def test_update_keeps_tolerances_and_bounds(reference, tmp_path):
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"planted.x.correct_min": {"expected": 0.2, "tolerance": 0.5, "at_least": 0.9}}))
    reference.update(path, {"planted.x.correct_min": 1.0, "planted.x.wrong_max": 0.5, "bundled.undefined_units": 3,
                            "bundled.mean_score": 0.45})
    pins = json.loads(path.read_text())
    assert pins == {"planted.x.correct_min": {"expected": 1.0, "tolerance": 0.5, "at_least": 0.9},
                    "planted.x.wrong_max": {"expected": 0.5, "tolerance": 1e-6, "at_most": 0.6},
                    "bundled.undefined_units": {"expected": 3, "tolerance": 0.0},
                    "bundled.mean_score": {"expected": 0.45, "tolerance": 0.002}}
