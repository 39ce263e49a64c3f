"""`SLURM=1 bash benchmark.sh`, on a REAL one-node Slurm cluster (slurmctld, slurmd, munge):
a micro-tier of 2 seeds is submitted as job arrays, one run is preempted (requeued, as a
cluster's preemption does) and continues from its resume point, and the report is made.

Slurm is started by `.ci/run` (tools/local_slurm.sh, as root). By hand, on a machine of your own:
    sudo bash tools/local_slurm.sh && python -m pytest tests/test_slurm.py
Skipped, saying why, where no Slurm answers and none can be started here."""

import glob
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT


def slurm_or_skip():
    def answers():
        return shutil.which("sinfo") and subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0

    if answers():
        return
    if os.geteuid() == 0:  # as root, a one-node cluster can be started here
        started = subprocess.run(["bash", os.path.join(ROOT, "tools", "local_slurm.sh")], capture_output=True,
                                 text=True, timeout=600)
        if started.returncode == 0 and answers():
            return
        pytest.skip(f"no Slurm here and tools/local_slurm.sh could not start one: {started.stderr[-500:]}")
    pytest.skip("no Slurm answers here (sinfo), and starting one needs root: sudo bash tools/local_slurm.sh")


def wait_for(condition, timeout: float, what: str, out):
    """Until `condition()`; fails at once, showing the end of its console, when a run has failed."""
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return
        failed = sorted(out.glob("logs/*.log.failed"))
        if failed:
            log = str(failed[0])[: -len(".failed")]
            raise AssertionError(f"a job failed while waiting for {what}; the end of {log}:\n"
                                 + "".join(open(log).readlines()[-15:]))
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: " + subprocess.run(["squeue"], capture_output=True,
                                                                            text=True).stdout)


def test_a_micro_sweep_on_slurm_with_a_preempted_run_resumed(sandbox):
    slurm_or_skip()
    out = sandbox / "bench"
    env = dict(os.environ, OUT=str(out), ENV_ID="Hopper-v5", DATASET="local/hopper/tiny-v0", CHECKPOINT="",
               IQL_CHECKPOINT="", DATASET_STEPS="400", OFFLINE_STEPS="20", ONLINE_STEPS="3000", WARMUP="20",
               EVAL="--eval-interval 500 --eval-episodes 1",
               NET="--critic-hidden 32 --actor-hidden 32 --num-qs 3 --batch-size 32",
               SEEDS="1 2", JOBS="2", METHODS="wsrl sac_fast", RESUME_INTERVAL="500", SLURM="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    submitted = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                               text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    ids = re.search(r"jobs: dataset (\d+), pre-training (\d+), runs (\d+), report (\d+)", submitted.stdout)
    assert ids, submitted.stdout
    jobs = ids.groups()
    try:
        # the queue of runs, as benchmark.sh runs it locally: the pre-trainings first, in their own array
        assert (out / "slurm" / "pretrain.txt").read_text().split("\n")[:2] == ["pretrain 1", "pretrain 2"]
        runs = (out / "slurm" / "runs.txt").read_text().splitlines()
        assert runs == ["wsrl 1", "wsrl 2", "sac_fast 1", "sac_fast 2"]
        task = f"{jobs[2]}_{runs.index('sac_fast 1') + 1}"

        # preempt sac_fast seed 1 once it has a resume point: Slurm stops it (SIGTERM) and requeues it
        def has_resume_point():
            return any(os.path.exists(os.path.join(r, "resume.pt")) for r in glob.glob(str(out / "runs" / "*__sac_fast__1__*")))

        wait_for(has_resume_point, 300, "sac_fast seed 1's first resume point", out)
        assert not (out / "logs" / "sac_fast_1.log.done").exists(), "it finished before it could be preempted"
        requeued = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True)
        assert requeued.returncode == 0, requeued.stderr
        wait_for(lambda: (out / "scores.md").exists() and not subprocess.run(
            ["squeue", "-h", "-j", ",".join(jobs)], capture_output=True, text=True).stdout.strip(), 600,
            "the sweep and its report", out)
    finally:
        subprocess.run(["scancel", *jobs], capture_output=True)

    # the preempted run stopped on SIGTERM, was requeued, and continued from its resume point
    slurm_log = (out / "logs" / f"slurm_{task}.out").read_text()
    assert "stopped by SIGTERM" in slurm_log and "continues from its resume point" in slurm_log, slurm_log
    (first_try,) = glob.glob(str(out / "logs" / "sac_fast_1.log.*[0-9]"))
    assert "interrupted at step" in open(first_try).read()
    resumed = (out / "logs" / "sac_fast_1.log").read_text()
    assert re.search(r"resuming runs/\S+__sac_fast__1__\S+ after step [\d,]+", resumed), resumed[:500]
    # one run folder, whose curve has every evaluation once (what came after the resume point was redone)
    (run_dir,) = glob.glob(str(out / "runs" / "*__sac_fast__1__*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = [e.step for e in EventAccumulator(run_dir).Reload().Scalars("eval/return")]
    assert steps == list(range(500, 3001, 500)), steps
    # every run finished, and the report covers both methods over both seeds
    assert sorted(p.name for p in (out / "logs").glob("*.done")) == sorted(
        [f"{m}_{s}.log.done" for m in ("pretrain", "wsrl", "sac_fast") for s in ("1", "2")] + ["dataset.log.done"])
    table = (out / "scores.md").read_text()
    assert "| WSRL (Cal-QL) | 2 |" in table and "| SAC (fast), from scratch | 2 |" in table, table
    assert "on Slurm" in table
