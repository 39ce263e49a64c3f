"""sac_fast.py against CleanRL's and LeanRL's SAC at equal work, on this machine, interleaved.

Equal work: Hopper-v5, two critics 256x256 and an actor 256x256 without LayerNorm, batch 256, one
critic update, one actor update (CleanRL and LeanRL: two every second step) and one temperature
update per env step, the target after every critic step, the same number of random steps first.
Every command runs as its own process on `--threads` threads; the rounds go A B C ... A B C ... so
that a machine whose speed drifts slows all of them alike. Each variant runs two budgets,
`--learning-starts` + `--steps` and + 2 x `--steps` env steps: the difference between their wall
times is the time of `--steps` env steps with updates, without the start-up (imports, env, the
random steps) and without the compile, which both budgets pay. A first round, not counted, fills
torch's compile cache, as a second run of a script finds it.

    git clone https://github.com/vwxyzjn/cleanrl ~/src/cleanrl
    git clone https://github.com/meta-pytorch/LeanRL ~/src/LeanRL
    pip install "tensordict>=0.14.3,<0.15" torchrl tqdm       # what LeanRL's script needs
    python tools/compare_sac.py --cleanrl ~/src/cleanrl --leanrl ~/src/LeanRL
    python tools/compare_sac.py --only sac_fast,sac_fast-compile   # ours alone, no checkouts

LeanRL's compiled script is run as it is but for one line: it wraps the actor's `get_action`,
which returns three tensors, in a TensorDictModule with one output key, which tensordict 0.14
refuses; the copy it runs keeps the first output (the action, detached), what the script uses."""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEANRL_FIX = ('TensorDictModule(actor_detach.get_action, in_keys=["observation"], out_keys=["action"])',
              'TensorDictModule(lambda obs: actor_detach.get_action(obs)[0].detach(), in_keys=["observation"], out_keys=["action"])')


def variants(a, workdir: str) -> dict:
    """name -> (argv for a budget of `total` env steps, extra environment)."""
    ours = [sys.executable, os.path.join(ROOT, "sac_fast.py"), "--env-id", a.env_id, "--num-qs", "2", "--num-min-qs", "2",
            "--utd", "1", "--batch-size", "256", "--critic-hidden", "256", "--actor-hidden", "256", "--layer-norm", "False",
            "--learning-starts", str(a.learning_starts), "--eval-interval", "100000000", "--eval-episodes", "1",
            "--resume-interval", "0"]
    out = {"sac_fast": (lambda total: ours + ["--online-steps", str(total)], {}),
           "sac_fast-compile": (lambda total: ours + ["--compile", "--online-steps", str(total)], {})}
    if a.cleanrl:
        clean = os.path.join(a.cleanrl, "cleanrl", "sac_continuous_action.py")
        out["cleanrl"] = (lambda total: [sys.executable, clean, "--env-id", a.env_id, "--total-timesteps", str(total),
                                         "--learning-starts", str(a.learning_starts), "--no-cuda"],
                          {"PYTHONPATH": a.cleanrl})
    if a.leanrl:
        source = open(os.path.join(a.leanrl, "leanrl", "sac_continuous_action_torchcompile.py")).read()
        if LEANRL_FIX[0] not in source:
            raise SystemExit("error: LeanRL's sac_continuous_action_torchcompile.py has changed: the line this tool "
                             f"adapts is not there ({LEANRL_FIX[0]}).")
        adapted = os.path.join(workdir, "leanrl_sac_continuous_action_torchcompile.py")
        with open(adapted, "w") as f:
            f.write(source.replace(*LEANRL_FIX))
        lean = [sys.executable, adapted, "--env-id", a.env_id, "--learning-starts", str(a.learning_starts), "--no-cuda"]
        out["leanrl"] = (lambda total: lean + ["--total-timesteps", str(total)], {"WANDB_MODE": "offline"})
        out["leanrl-compile"] = (lambda total: lean + ["--compile", "--total-timesteps", str(total)],
                                 {"WANDB_MODE": "offline"})
    return {k: v for k, v in out.items() if not a.only or k in a.only.split(",")}


def wall(argv: list, extra: dict, a, workdir: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads), **extra}
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:  # reported in the table, with its last error line; the others go on
        lines = [line for line in (done.stdout + done.stderr).splitlines() if "Error" in line] or ["(no error line)"]
        print(f"failed ({done.returncode}): {' '.join(argv)}\n  {lines[-1][:300]}", flush=True)
        return None
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cleanrl", help="a checkout of github.com/vwxyzjn/cleanrl (its cleanrl/sac_continuous_action.py)")
    p.add_argument("--leanrl", help="a checkout of github.com/meta-pytorch/LeanRL (its leanrl/sac_continuous_action_torchcompile.py)")
    p.add_argument("--only", default="", help="comma-separated variants to run (default: all that can)")
    p.add_argument("--env-id", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=1500, help="env steps with updates in the short budget (the long one: twice)")
    p.add_argument("--learning-starts", type=int, default=1000, help="random env steps before the updates start")
    p.add_argument("--rounds", type=int, default=3, help="counted rounds (after one that fills the compile cache)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as workdir:  # the runs' logs are not kept
        runs = variants(a, workdir)
        budgets = (a.learning_starts + a.steps, a.learning_starts + 2 * a.steps)
        failed = {}
        for name, (argv, extra) in list(runs.items()):  # not counted: fills the compile caches
            seconds = wall(argv(budgets[0]), extra, a, workdir)
            if seconds is None:
                failed[name] = runs.pop(name)
                continue
            print(f"warm-up: {name} ({seconds:.0f} s)", flush=True)
        times = {name: {b: [] for b in budgets} for name in runs}
        for r in range(a.rounds):
            for name, (argv, extra) in runs.items():
                for b in budgets:
                    seconds = wall(argv(b), extra, a, workdir)
                    if seconds is None:
                        raise SystemExit(f"error: {name} failed in round {r + 1} after running in the warm-up")
                    times[name][b].append(seconds)
                print(f"round {r + 1}/{a.rounds}: {name} {times[name][budgets[0]][-1]:.1f} s, "
                      f"{times[name][budgets[1]][-1]:.1f} s", flush=True)
    close = [name for name, t in times.items() if any(t2 <= t1 for t1, t2 in zip(t[budgets[0]], t[budgets[1]]))]
    if close:  # start-up noise larger than the work of --steps: the difference says nothing
        raise SystemExit(f"error: {', '.join(close)}: the longer budget did not take longer than the shorter one in "
                         f"some round, so {a.steps} steps are less work than the noise of starting a process; "
                         "give more --steps.")
    rate = {name: [a.steps / (t2 - t1) for t1, t2 in zip(t[budgets[0]], t[budgets[1]])] for name, t in times.items()}
    base = "sac_fast-compile" if "sac_fast-compile" in rate else next(iter(rate))
    print(f"\n{a.env_id}, 2 critics + actor 256x256 (no LayerNorm), batch 256, UTD 1, {a.threads} thread(s), "
          f"{a.rounds} interleaved rounds (median, [min, max]); rate: {a.steps} env steps with updates over the "
          f"difference of two budgets ({budgets[0]:,} and {budgets[1]:,} env steps, {a.learning_starts:,} random):\n")
    print(f"| variant | env-steps/s with updates | wall time of {budgets[1]:,} steps (s) | time per step / {base}'s |")
    print("|---|---|---|---|")
    for name in runs:
        ratios = [b / r for r, b in zip(rate[name], rate[base])]
        print(f"| {name} | {statistics.median(rate[name]):.0f} [{min(rate[name]):.0f}, {max(rate[name]):.0f}] | "
              f"{statistics.median(times[name][budgets[1]]):.1f} | {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}, {max(ratios):.2f}] |")
    for name in failed:
        print(f"| {name} | failed: its error is printed above the table | | |")


if __name__ == "__main__":
    main()
