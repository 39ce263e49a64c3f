"""The report of a GPU session (tools/gpu_session.sh), made here from what came back.

    python tools/gpu_report.py OUT results/gpu-2026-12-06

OUT holds the session's files (summary.md, speed.md, tests.log, session.log, runs.tar.gz). The
runs are unpacked into DEST/runs and DEST/logs, tools/benchmark_report.py draws their curves and
intervals (scores.md, curves.png, intervals.png, ...), and DEST/reached.md says how far each run
got before the cap. The session's own files are copied beside them.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIED = ("summary.md", "speed.md", "tests.log", "session.log")


def reached(runs: str, logs: str) -> list:
    """(run, where it ended: "cap at step N" or "finished, N steps", last evaluation step) for
    every run folder ({env}__{method}__{seed}__{time}), read from its console and its logs."""
    rows = []
    for name in sorted(os.listdir(runs)):
        _, method, seed, _ = name.split("__")
        console = os.path.join(logs, f"{method}_{seed}.log")
        text = open(console).read() if os.path.exists(console) else ""
        cut, whole = re.search(r"^interrupted at (?:\w+ )?step ([\d,]+)", text, re.M), re.search(r"SUMMARY: ([\d,]+) steps", text)
        ended = f"cap at step {cut.group(1)}" if cut else (f"finished, {whole.group(1)} steps" if whole else "unknown")
        events = EventAccumulator(os.path.join(runs, name), size_guidance={"scalars": 0}).Reload()
        tags = events.Tags()["scalars"]
        evals = [e.step for e in events.Scalars("eval/normalized_score")] if "eval/normalized_score" in tags else []
        rows.append((name, ended, evals[-1] if evals else None))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", help="the folder the GPU session wrote (its OUT)")
    p.add_argument("dest", help="where the report goes, e.g. results/gpu-2026-12-06")
    p.add_argument("--warmup", type=int, default=5000, help="the warmup the runs used (marked on the curves)")
    a = p.parse_args()
    archive = os.path.join(a.session, "runs.tar.gz")
    if not os.path.exists(archive):
        sys.exit(f"error: {archive} is missing: the session did not get to its comparison (see its session.log)")
    os.makedirs(a.dest, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(a.dest, filter="data")
    for name in COPIED:
        if os.path.exists(os.path.join(a.session, name)):
            shutil.copy(os.path.join(a.session, name), os.path.join(a.dest, name))
    summary = open(os.path.join(a.session, "summary.md")).read() if os.path.exists(os.path.join(a.session, "summary.md")) else ""
    machine = re.search(r"- machine: (.*)", summary)
    versions = re.search(r"- python .*", summary)
    rows = reached(os.path.join(a.dest, "runs"), os.path.join(a.dest, "logs"))
    with open(os.path.join(a.dest, "reached.md"), "w") as f:
        f.write("| run | ended | last evaluation |\n|---|---|---|\n")
        for name, ended, evaluation in rows:
            f.write(f"| {name} | {ended} | {'-' if evaluation is None else f'{evaluation:,}'} |\n")
    note = (f"Machine: {machine.group(1) if machine else 'see summary.md'}; {versions.group(0)[2:] if versions else ''}. "
            f"Each run was stopped at the session's wall-clock cap; the step each reached is in reached.md.")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "benchmark_report.py"), "--runs",
                           os.path.join(a.dest, "runs"), "--out", a.dest, "--warmup", str(a.warmup), "--title",
                           "HalfCheetah-v5 medium from the shipped Cal-QL agent, on one GPU, capped",
                           "--command", "bash tools/gpu_session.sh OUT (bash benchmark.sh gpu, WALL_CAP)", "--note", note])
    print(f"wrote {a.dest}: reached.md" + (", scores.md and figures" if done.returncode == 0 else " (no scores: see above)"))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
