"""Fingerprints of the scripts' behaviour: every logged scalar of a short run of each script and
phase (same seed, CPU), to hold a refactor to "behaviour unchanged".

    python tools/fingerprint.py record                 # write tests/fingerprints.json (before a refactor)
    python tools/fingerprint.py check                  # rerun every case, compare with the file
    python tools/fingerprint.py check --case wsrl      # one case

Each case runs in its own process, in a temporary folder, on a small random Hopper-v5 dataset
made here with a seeded policy. What is compared: every tensorboard scalar the run logged (losses,
Q-values, KL diagnostics, evaluation returns; wall-clock tags such as SPS left out) and the
summary's evaluations. On the machine that recorded them (same torch build, same CPU capability)
the values must be equal bit for bit; elsewhere a float path may round differently, so they are
compared to a relative 1e-4 (see `tolerance`).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE = os.path.join(ROOT, "tests", "fingerprints.json")
DATASET = "test/hopper/fingerprint-v0"
NET = dict(num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=32, eval_episodes=1)
# (script, keyword arguments of its Args); "CKPT" is replaced by the checkpoint of case "sac"
CASES = {
    "sac": ("sac_fast", dict(NET, online_steps=300, learning_starts=200, eval_interval=100, save_model=True)),
    "rlpd": ("sac_fast", dict(NET, online_steps=250, learning_starts=200, eval_interval=125, dataset_id=DATASET,
                              offline_ratio=0.5, utd=2)),
    # (Cal-QL's online updates start after one Hopper episode, 1,000 steps: too long for a case; the
    # online Cal-QL/CQL loop is fingerprinted with CQL, whose updates start after one online batch)
    "calql": ("calql_offline", dict(NET, offline_steps=40, online_steps=0, cql_n_actions=4, offline_eval_interval=20,
                                    analysis_interval=20, heldout_size=50, dataset_id=DATASET)),
    "cql-online": ("calql_offline", dict(NET, offline_steps=20, online_steps=120, calql=False, cql_n_actions=4,
                                         offline_eval_interval=20, eval_interval=60, analysis_interval=20,
                                         heldout_size=50, dataset_id=DATASET)),
    "wsrl": ("wsrl_calql_sac", dict(NET, offline_steps=40, warmup_steps=60, online_steps=160, utd=2, cql_n_actions=4,
                                    offline_eval_interval=20, eval_interval=40, analysis_interval=40, heldout_size=50,
                                    analysis_actions=4, dataset_id=DATASET)),
    "wsrl-so2": ("wsrl_calql_sac", dict(NET, offline_steps=20, warmup_steps=0, online_steps=60, online_algo="so2",
                                        cql_n_actions=4, offline_eval_interval=20, eval_interval=30,
                                        analysis_interval=30, heldout_size=50, analysis_actions=4, dataset_id=DATASET)),
    "wsrl-iql": ("wsrl_iql_sac", dict(NET, offline_steps=40, warmup_steps=60, online_steps=160, utd=2,
                                      offline_eval_interval=20, eval_interval=40, analysis_interval=40, heldout_size=50,
                                      analysis_actions=4, dataset_id=DATASET)),
    "iql-online": ("wsrl_iql_sac", dict(NET, offline_steps=20, warmup_steps=0, online_steps=80, online_algo="iql",
                                        offline_eval_interval=20, eval_interval=40, analysis_interval=40,
                                        heldout_size=50, analysis_actions=4, dataset_id=DATASET)),
    "jsrl": ("jsrl", dict(batch_size=32, eval_episodes=1, online_steps=200, eval_interval=100,
                          pretrained_checkpoint="CKPT", jsrl_decay_steps=200)),
    "td3c": ("td3c", dict(offline_steps=60, online_steps=200, critic_hidden=32, actor_hidden=32, batch_size=32,
                          min_replay_size=50, offline_eval_interval=30, eval_interval=100, eval_episodes=1,
                          analysis_interval=50, heldout_size=50, dataset_id=DATASET)),
    "td3": ("td3c", dict(offline_steps=30, online_steps=120, critic_hidden=32, actor_hidden=32, batch_size=32,
                         min_replay_size=50, offline_eval_interval=30, eval_interval=60, eval_episodes=1,
                         analysis_interval=60, heldout_size=50, dataset_id=DATASET, online_algo="td3")),
}
WALL_CLOCK = ("SPS", "sps", "seconds", "time")


def machine() -> str:
    import torch

    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"


def make_dataset() -> None:
    """30 episodes of a uniform random policy (action space seeded) on Hopper-v5."""
    import numpy as np

    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gymnasium as gym
    from export_dataset import save_minari

    env = gym.make("Hopper-v5")
    env.action_space.seed(0)
    episodes, done = [], 0
    while done < 30:
        obs, _ = env.reset(seed=done)
        o, a, r, te, tr = [obs], [], [], [], []
        while True:
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            o.append(obs), a.append(action), r.append(reward), te.append(terminated), tr.append(truncated)
            if terminated or truncated:
                break
        episodes.append((np.array(o), np.array(a), np.array(r), np.array(te), np.array(tr)))
        done += 1
    save_minari(DATASET, episodes, "Hopper-v5", (-20.272305, 3234.3), "random")


def run_case(name: str, checkpoint: str = "") -> dict:
    """Run one case in this process (called in a fresh process by `record`/`check`)."""
    import importlib

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sys.path.insert(0, ROOT)
    script, kwargs = CASES[name]
    kwargs = {k: (checkpoint if v == "CKPT" else v) for k, v in kwargs.items()}
    module = importlib.import_module(script)
    summary = module.main(module.Args(**kwargs))
    events = EventAccumulator(summary["run_dir"], size_guidance={"scalars": 0}).Reload()
    scalars = {tag: [[e.step, e.value] for e in events.Scalars(tag)] for tag in sorted(events.Tags()["scalars"])
               if not any(w in tag for w in WALL_CLOCK)}
    return {"scalars": scalars, "evals": [list(map(float, e)) for e in summary["evals"]],
            "checkpoint": os.path.abspath(summary.get("checkpoint") or "")}


def run_all(names: list) -> dict:
    """Each case in a fresh process, in one temporary folder with its own Minari datasets."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MINARI_DATASETS_PATH=os.path.join(tmp, "minari"), HF_ENDPOINT="http://127.0.0.1:9",
                   PYTHONHASHSEED="0")
        subprocess.run([sys.executable, __file__, "_dataset"], cwd=tmp, env=env, check=True)
        checkpoint = ""
        for name in ["sac"] + [n for n in names if n != "sac"] if "jsrl" in names else names:
            path = os.path.join(tmp, f"{name}.json")
            subprocess.run([sys.executable, __file__, "_run", name, path, checkpoint], cwd=tmp, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            with open(path) as f:
                out[name] = json.load(f)
            if name == "sac":
                checkpoint = out[name].pop("checkpoint")
            else:
                out[name].pop("checkpoint")
    return {n: out[n] for n in names}


def tolerance(recorded_on: str) -> float:
    return 0.0 if recorded_on == machine() else 1e-4


def differences(expected: dict, got: dict, rtol: float) -> list:
    """Human-readable differences between two cases' fingerprints (empty when they agree)."""
    diffs = []
    if expected["scalars"].keys() != got["scalars"].keys():
        diffs.append(f"tags: missing {sorted(expected['scalars'].keys() - got['scalars'].keys())}, "
                     f"new {sorted(got['scalars'].keys() - expected['scalars'].keys())}")
    pairs = [(tag, expected["scalars"][tag], got["scalars"][tag]) for tag in expected["scalars"] if tag in got["scalars"]]
    pairs.append(("summary evals", expected["evals"], got["evals"]))
    for tag, a, b in pairs:
        flat_a, flat_b = sum(a, []), sum(b, [])
        if len(flat_a) != len(flat_b):
            diffs.append(f"{tag}: {len(a)} points expected, {len(b)} now")
            continue
        for x, y in zip(flat_a, flat_b):
            same = (math.isnan(x) and math.isnan(y)) or x == y or abs(x - y) <= rtol * max(abs(x), abs(y))
            if not same:
                diffs.append(f"{tag}: {x!r} expected, {y!r} now")
                break
    return diffs


def main() -> int:
    if sys.argv[1:2] == ["_dataset"]:
        make_dataset()
        return 0
    if sys.argv[1:2] == ["_run"]:
        name, path, checkpoint = sys.argv[2], sys.argv[3], sys.argv[4]
        with open(path, "w") as f:
            json.dump(run_case(name, checkpoint), f)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["record", "check"])
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="only this case (repeatable)")
    opts = parser.parse_args()
    names = opts.case or list(CASES)
    if opts.command == "record":
        recorded = run_all(names)
        old = json.load(open(FILE)) if os.path.exists(FILE) and opts.case else {"cases": {}}
        old["machine"] = machine()
        old["cases"].update(recorded)
        with open(FILE, "w") as f:
            json.dump(old, f, indent=0)
        print(f"recorded {', '.join(names)} on {machine()} -> {os.path.relpath(FILE, ROOT)}")
        return 0
    expected = json.load(open(FILE))
    rtol = tolerance(expected["machine"])
    got = run_all(names)
    bad = 0
    for name in names:
        diffs = differences(expected["cases"][name], got[name], rtol)
        print(f"{name}: {'same' if not diffs else 'DIFFERENT'}" + "".join(f"\n  {d}" for d in diffs[:10]))
        bad += bool(diffs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
