"""A script and the support module are all a user needs: copied alone into an empty folder,
each script prints its --help, and the SAC and WSRL scripts run 300 steps there."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, write_random_dataset

SCRIPTS = ["sac_fast.py", "calql_offline.py", "wsrl_calql_sac.py", "wsrl_iql_sac.py", "jsrl.py", "td3c.py"]


def copy_alone(script: str, folder) -> str:
    folder.mkdir()
    for name in (script, "wsrl_utils.py"):
        shutil.copy(os.path.join(ROOT, name), folder / name)
    return str(folder)


def run(folder: str, *argv, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of this repository on the path
    return subprocess.run([sys.executable, *argv], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works_with_the_support_module_alone(sandbox, script):
    folder = copy_alone(script, sandbox / "alone")
    out = run(folder, script, "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--seed" in out.stdout and "--online-steps" in out.stdout
    assert sorted(os.listdir(folder)) == sorted([script, "wsrl_utils.py"])  # (--help writes nothing)


def test_sac_and_wsrl_run_300_steps_with_the_support_module_alone(sandbox):
    import wsrl_calql_sac as W

    dataset = write_random_dataset(W)
    net = ["--num-qs", "3", "--critic-hidden", "32", "--actor-hidden", "32", "--batch-size", "32", "--eval-episodes", "1"]
    sac = run(copy_alone("sac_fast.py", sandbox / "sac"), "sac_fast.py", "--online-steps", "300", "--learning-starts",
              "200", "--eval-interval", "300", *net)
    assert sac.returncode == 0, sac.stderr[-2000:]
    assert "step      300/300" in sac.stdout
    wsrl = run(copy_alone("wsrl_calql_sac.py", sandbox / "wsrl"), "wsrl_calql_sac.py", "--dataset-id", dataset,
               "--offline-steps", "100", "--warmup-steps", "100", "--online-steps", "200", "--cql-n-actions", "4",
               "--eval-interval", "100", "--offline-eval-interval", "100", "--analysis-interval", "100",
               "--heldout-size", "50", "--analysis-actions", "4", *net)
    assert wsrl.returncode == 0, wsrl.stderr[-2000:]
    assert "PHASE 3" in wsrl.stdout and "online      200/200" in wsrl.stdout
    runs = os.listdir(os.path.join(sandbox, "wsrl", "runs"))
    assert len(runs) == 1 and "eval_curve.png" in os.listdir(os.path.join(sandbox, "wsrl", "runs", runs[0]))
