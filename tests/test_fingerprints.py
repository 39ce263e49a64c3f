"""Behaviour unchanged: a short run of every script and phase (same seed, CPU) logs the same
scalars as recorded in tests/fingerprints.json (tools/fingerprint.py). Bit for bit on the machine
that recorded them; to a relative 1e-4 on another CPU or torch build."""

import os
import subprocess
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import fingerprint as FP  # noqa: E402


def test_the_comparison_catches_a_changed_value_a_lost_tag_and_a_lost_point():
    a = {"scalars": {"losses/q": [[100, 1.0], [200, 0.5]], "eval/return": [[0, 3.0]]}, "evals": [[0, 3.0]]}
    assert FP.differences(a, a, 0.0) == []
    changed = {**a, "scalars": {**a["scalars"], "losses/q": [[100, 1.0], [200, 0.5000001]]}}
    assert FP.differences(a, changed, 0.0) == ["losses/q: 0.5 expected, 0.5000001 now"]
    assert FP.differences(a, changed, 1e-4) == []  # another machine: within the tolerance
    lost = {**a, "scalars": {"losses/q": a["scalars"]["losses/q"]}}
    assert "missing ['eval/return']" in FP.differences(a, lost, 0.0)[0]
    short = {**a, "scalars": {**a["scalars"], "losses/q": [[100, 1.0]]}}
    assert FP.differences(a, short, 0.0) == ["losses/q: 2 points expected, 1 now"]
    assert FP.tolerance(FP.machine()) == 0.0 and FP.tolerance("another machine") == 1e-4


def test_every_script_and_phase_reproduces_its_fingerprint():
    out = subprocess.run([sys.executable, FP.__file__, "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count(": same") == len(FP.CASES)
