"""Add a pre-trained agent (a `*_pretrained.pt` of calql_offline.py, wsrl_calql_sac.py or
wsrl_iql_sac.py) to `pretrained/`, with its provenance, so that runs on a small machine can start
from it instead of pre-training for hours:

    python tools/ship_pretrained.py runs/<run>/calql_offline_pretrained.pt --name halfcheetah-medium-calql \\
        --command "python calql_offline.py --dataset-id local/halfcheetah/medium-v0 ..."

It copies the checkpoint as it is (weights, target critics, temperature and Adam states: WSRL
keeps them all), evaluates its policy over 20 deterministic episodes, and writes
`pretrained/<name>.json`: the command, the dataset, the gradient steps, the networks, the
evaluation, the machine and the date.
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import sac_fast as S  # noqa: E402
import wsrl_utils as U  # noqa: E402
from make_datasets import cpu_name  # noqa: E402

PRETRAINED_DIR = os.path.join(ROOT, "pretrained")


def ship(path: str, name: str, command: str, episodes: int = 20, out_dir: str = PRETRAINED_DIR) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "format" not in ckpt or "actor" not in ckpt:
        raise SystemExit(f"error: {path} is not a checkpoint of these scripts (format 2).")
    args = ckpt["args"]
    env_id = ckpt.get("env_id") or args.get("env_id")
    spec = None  # outside locomotion: the environment as the dataset names it (a maze's evaluation maze)
    if U.domain_of(env_id) != "locomotion" and args.get("dataset_id"):
        spec = U.dataset_env_spec(dict(U.load_minari(args["dataset_id"]).storage.metadata))
    env = U.build_env(env_id, 70_000, spec)
    actor = S.Actor(env.observation_space.shape[0], env.action_space.shape[0], args["actor_hidden"], args["actor_layers"],
                    state_dependent_std="log_std.weight" in ckpt["actor"],
                    layer_norm=any(k.startswith("norms.") for k in ckpt["critic"]))
    actor.load_state_dict(ckpt["actor"])
    returns, successes = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=70_000 + i)
        done, total, info = False, 0.0, {}
        while not done:
            obs, r, terminated, truncated, info = env.step(actor.act(obs, deterministic=True))
            total, done = total + float(r), terminated or truncated
        returns.append(total)
        successes.append(info.get("success"))
    env.close()
    refs = U.reference_scores(env_id)
    mean = float(np.mean(returns))
    success = None if successes[0] is None else float(np.mean(successes))  # sparse domains
    provenance = {
        "name": name, "command": command, "env_id": env_id, "dataset_id": args.get("dataset_id"),
        "gradient_steps": ckpt["step"], "seed": args["seed"],
        "networks": {k: args.get(k) for k in ("num_qs", "num_min_qs", "critic_hidden", "critic_layers", "actor_hidden",
                                              "actor_layers", "batch_size")},
        "deterministic_return": {"mean": mean, "std": float(np.std(returns)), "episodes": episodes,
                                 "normalized": None if refs is None else 100 * (mean - refs[0]) / (refs[1] - refs[0]),
                                 "success_rate": success},
        "machine": f"{cpu_name()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
    }
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(path, os.path.join(out_dir, f"{name}.pt"))
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(provenance, f, indent=2)
    print(f"{out_dir}/{name}.pt: {ckpt['step']:,} gradient steps on {provenance['dataset_id']}, deterministic return "
          f"{mean:.1f} +- {np.std(returns):.1f} over {episodes} episodes"
          + ("" if success is None else f", success rate {success:.2f}"))
    return provenance


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a *_pretrained.pt")
    p.add_argument("--name", required=True, help="e.g. halfcheetah-medium-calql")
    p.add_argument("--command", required=True, help="the exact pre-training command, for the provenance")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--out-dir", default=PRETRAINED_DIR)
    a = p.parse_args()
    ship(a.checkpoint, a.name, a.command, a.episodes, a.out_dir)
