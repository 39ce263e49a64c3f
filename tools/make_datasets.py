"""D4RL-style MuJoCo datasets made on this machine, from the behaviour policies in `policies/`.

D4RL's `medium` datasets are the episodes of a SAC policy whose training was stopped part-way
(about a third of expert level), recorded with its stochastic actions; `expert` the same with
a fully trained policy; `medium-expert` both together. Minari's hub serves them as
`mujoco/<env>/<level>-v0`. Where the hub cannot be reached, this tool writes datasets of the
same shape under `local/<env>/<level>-v0`, with D4RL's reference scores, from the behaviour
policies this project trained with its own `sac_fast.py` and ships in `policies/` (each with
its provenance in a .json next to it):

    python tools/make_datasets.py make                                 # local/halfcheetah/medium-v0, 100k steps
    python tools/make_datasets.py make --size 1000000                  # D4RL's size
    python tools/make_datasets.py make --levels medium-expert          # needs an expert policy too
    python tools/make_datasets.py list                                 # the shipped policies

A dataset made here and the hub's are interchangeable in every script (`--dataset-id
local/halfcheetah/medium-v0` or `mujoco/halfcheetah/medium-v0`): same environment, spaces and scores.
How the behaviour policies were made, and how to add one (`ship`), is in docs/datasets.md.
"""

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
import warnings
from typing import Literal, Optional, Union

import numpy as np
import torch
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import sac_fast as S  # noqa: E402  (the project's own networks and env handling)
import wsrl_utils as U  # noqa: E402
from export_dataset import save_minari  # noqa: E402  (Minari's writer, whole or nothing)

POLICY_DIR = os.path.join(ROOT, "policies")
ENV_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
LEVELS = ("medium", "expert", "medium-expert")


@dataclasses.dataclass
class Make:
    """Write local/<env>/<level>-v0 Minari datasets from the shipped behaviour policies."""

    envs: list[Literal["hopper", "halfcheetah", "walker2d"]] = dataclasses.field(default_factory=lambda: ["halfcheetah"])
    """environments (D4RL's names; policies/ has all three at medium)"""
    levels: list[Literal["medium", "expert", "medium-expert"]] = dataclasses.field(default_factory=lambda: ["medium"])
    """dataset levels; medium-expert is the medium and expert datasets one after the other (D4RL)"""
    size: int = 100_000
    """transitions per policy (D4RL: 1,000,000; medium-expert holds twice this); the last episode
    is cut at this size and stored as truncated, as in D4RL"""
    seed: int = 0
    """seed of the environments and of the policy's action noise"""
    num_envs: int = 10
    """environments recorded side by side (one forward pass for all); the data does not depend
    on the machine, only on this and the seed"""
    namespace: str = "local"
    """dataset ids are NAMESPACE/<env>/<level>-v<version>"""
    version: int = 0
    """the -vN suffix"""
    overwrite: bool = False
    """replace a dataset of the same id (otherwise an existing id is skipped)"""
    policy_dir: str = POLICY_DIR
    """where the behaviour policies and their provenance live"""


@dataclasses.dataclass
class Ship:
    """Evaluate an actor saved by `sac_fast.py --save-actors` and add it to the policies, with its
    provenance (command, seed, steps, returns over 20 deterministic and 20 stochastic episodes)."""

    actor: tyro.conf.Positional[str]
    """runs/<run>/actors/step_N.pt"""
    level: Literal["medium", "expert"] = "medium"
    """which level the actor stands for (it becomes policies/<env>-<level>.pt)"""
    episodes: int = 20
    """evaluation episodes, each deterministic (tanh of the mean) and stochastic (as recorded)"""
    command: str = ""
    """the exact training command, for the provenance"""
    policy_dir: str = POLICY_DIR


@dataclasses.dataclass
class List:
    """Print the shipped behaviour policies and their returns."""

    policy_dir: str = POLICY_DIR


def policy_paths(policy_dir: str, env: str, level: str) -> tuple[str, str]:
    base = os.path.join(policy_dir, f"{env}-{level}")
    return base + ".pt", base + ".json"


def load_policy(policy_dir: str, env: str, level: str) -> tuple[S.Actor, dict]:
    """The behaviour actor and its provenance; a clear error when it is not shipped."""
    pt, meta = policy_paths(policy_dir, env, level)
    if not os.path.exists(pt):
        have = sorted(f[:-3] for f in os.listdir(policy_dir) if f.endswith(".pt")) if os.path.isdir(policy_dir) else []
        raise SystemExit(
            f"error: no {level} behaviour policy for {env} in {policy_dir} (shipped: {', '.join(have) or 'none'}).\n"
            f"Train one with sac_fast.py --env-id {ENV_IDS[env]} --stop-at-return R --save-actors, then\n"
            f"    python tools/make_datasets.py ship runs/<run>/actors/step_N.pt --level {level}")
    with open(meta) as f:
        provenance = json.load(f)
    return build_actor(torch.load(pt, map_location="cpu", weights_only=False)), provenance


def build_actor(saved: dict) -> S.Actor:
    """The actor of a file written by `sac_fast.py --save-actors` (or shipped from one)."""
    env = U.build_env(saved["env_id"], 0)
    actor = S.Actor(env.observation_space.shape[0], env.action_space.shape[0], saved["actor_hidden"], saved["actor_layers"],
                    # a LayerNorm's weight is the only 1-dim ".weight" of an actor (a Dense's is 2-dim)
                    layer_norm=any(".weight" in k and saved["actor"][k].dim() == 1 for k in saved["actor"]))
    env.close()
    actor.load_state_dict(saved["actor"])
    return actor.eval()


def rollout_returns(actor: S.Actor, env_id: str, episodes: int, deterministic: bool, seed: int) -> list:
    env = U.build_env(env_id, seed)
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            obs, r, terminated, truncated, _ = env.step(actor.act(obs, deterministic=deterministic))
            total, done = total + float(r), terminated or truncated
        out.append(total)
    env.close()
    return out


def record(actor: S.Actor, env_id: str, size: int, seed: int, num_envs: int = 10) -> list:
    """Exactly `size` transitions of the stochastic policy, as episodes (obs has N+1 rows).
    Stochastic, as D4RL: the policy's own noise gives offline RL the action coverage it needs.
    `num_envs` environments step side by side so that one forward pass serves them all (the
    per-call overhead of a small network dominates otherwise); each one's last episode is cut
    and stored as truncated."""
    shares = [size // num_envs + (i < size % num_envs) for i in range(num_envs)]
    envs = [U.build_env(env_id, seed + i) for i in range(num_envs) if shares[i] > 0]
    buffers = [U.ReplayBuffer(e.observation_space.shape[0], e.action_space.shape[0], n, torch.device("cpu"))
               for e, n in zip(envs, shares)]
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    for t in range(max(shares)):
        live = [i for i in range(len(envs)) if t < shares[i]]
        with torch.no_grad():
            actions = actor.sample(torch.as_tensor(np.stack([obs[i] for i in live]), dtype=torch.float32))[0].numpy()
        for i, action in zip(live, actions):
            (o, a, r, next_o, terminated, ended), obs[i], _ = U.env_step(envs[i], obs[i], action)
            buffers[i].add(o, a, r, next_o, terminated, ended)  # raw rewards: the scripts transform at load
    for e in envs:
        e.close()
    return [ep for rb in buffers for ep in rb.episodes()]  # each unfinished last episode comes back truncated


def dataset_stats(episodes: list, max_episode_steps: int = 1000) -> dict:
    """Size and returns; the mean return counts whole episodes only (terminated, or cut by the
    time limit), not the ones the dataset's size cut short."""
    whole = [e for e in episodes if bool(e[3][-1]) or len(e[1]) == max_episode_steps]
    returns = [float(np.sum(e[2])) for e in whole]
    return {"transitions": int(sum(len(e[1]) for e in episodes)), "episodes": len(episodes),
            "whole_episodes": len(whole), "mean_return": float(np.mean(returns)) if returns else float("nan"),
            "std_return": float(np.std(returns)) if returns else float("nan"),
            "terminated_episodes": int(sum(bool(e[3][-1]) for e in episodes))}


def make(args: Make) -> dict:
    """Returns {dataset id: its statistics} for the datasets written (or found)."""
    import minari

    from minari.storage import get_dataset_path

    for name, value in (("--size", args.size), ("--num-envs", args.num_envs)):
        if value < 1:
            raise SystemExit(f"error: {name} is {value}; it must be at least 1.")
    # all of it must fit on the disk before any of it is recorded (h5py on a full disk can crash)
    needed = 0
    for env in args.envs:
        probe = U.build_env(ENV_IDS[env], 0)
        dims = probe.observation_space.shape[0], probe.action_space.shape[0]
        probe.close()
        needed += sum(U.dataset_bytes(args.size * (2 if level == "medium-expert" else 1), *dims) for level in args.levels)
    count = len(args.envs) * len(args.levels)
    U.check_free_space(str(get_dataset_path()), needed, f"{count} dataset{'s' * (count > 1)} of --size {args.size:,}",
                       "free some space, or set MINARI_DATASETS_PATH to a folder on another disk")
    torch.set_num_threads(1)  # one small forward pass per step: more threads only add overhead
    made = {}
    for env in args.envs:
        env_id, refs = ENV_IDS[env], U.D4RL_REF_SCORES[env]
        recorded = {}  # level -> episodes (medium-expert reuses what medium and expert recorded)
        for level in args.levels:
            dataset_id = f"{args.namespace}/{env}/{level}-v{args.version}"
            U.validate_dataset_id(dataset_id)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exists = dataset_id in minari.list_local_datasets()
            if exists and not args.overwrite:
                try:  # a dataset that cannot be read is not kept: it would fail every script later
                    found = minari.load_dataset(dataset_id).total_steps
                except Exception as e:
                    raise SystemExit(f"error: {dataset_id} exists but cannot be read ({e}); make it again with --overwrite.")
                expected = args.size * (2 if level == "medium-expert" else 1)
                note = "" if found == expected else f" (it holds {found:,} transitions, not --size {expected:,})"
                print(f"{dataset_id}: exists{note}, kept (--overwrite to replace it)")
                made[dataset_id] = None
                continue
            parts = ["medium", "expert"] if level == "medium-expert" else [level]
            for i, part in enumerate(parts):
                if part not in recorded:
                    actor, _ = load_policy(args.policy_dir, env, part)  # refuse before any work
                    t0 = time.time()
                    torch.manual_seed(args.seed + 1000 * i)
                    recorded[part] = record(actor, env_id, args.size, args.seed + 1000 * i, args.num_envs)
                    print(f"  recorded {args.size:,} steps of the {part} policy on {env_id} in {time.time() - t0:.0f} s")
            episodes = [e for part in parts for e in recorded[part]]
            final_dir = str(get_dataset_path(dataset_id))
            old_dir = f"{final_dir}.replaced{os.getpid()}"
            if exists:  # --overwrite: the old one moves aside, and is deleted once the new one is whole
                os.rename(final_dir, old_dir)
            try:  # written under a temporary id, renamed once whole: a full disk or Ctrl-C leaves nothing
                path = save_minari(dataset_id, episodes, env_id, refs, f"sac_fast {level} behaviour policy")
            except BaseException as e:
                if exists:
                    os.rename(old_dir, final_dir)  # the dataset that was there stays
                if isinstance(e, OSError):
                    raise SystemExit(f"error: {e}. {dataset_id} is as it was; free some space (or set "
                                     "MINARI_DATASETS_PATH to a folder on another disk) and run again.")
                raise
            if exists:
                shutil.rmtree(old_dir)
            stats = dataset_stats(episodes)
            stats["normalized_mean_return"] = 100 * (stats["mean_return"] - refs[0]) / (refs[1] - refs[0])
            made[dataset_id] = stats
            print(f"{dataset_id}: {stats['transitions']:,} transitions, {stats['episodes']} episodes "
                  f"({stats['whole_episodes']} whole), return "
                  f"{stats['mean_return']:.1f} +- {stats['std_return']:.1f} (normalised "
                  f"{stats['normalized_mean_return']:.1f}) -> {path}")
    return made


def ship(args: Ship) -> str:
    """Copy the actor into the policies with its provenance; returns the .json path."""
    saved = torch.load(args.actor, map_location="cpu", weights_only=False)
    env = next((k for k, v in ENV_IDS.items() if v == saved["env_id"]), None)
    if env is None:
        raise SystemExit(f"error: {saved['env_id']} is not one of {', '.join(ENV_IDS.values())}.")
    os.makedirs(args.policy_dir, exist_ok=True)
    pt, meta = policy_paths(args.policy_dir, env, args.level)
    keep = {k: saved[k] for k in ("actor", "env_id", "step", "eval_return", "actor_hidden", "actor_layers", "format")}
    torch.save(keep, pt)
    actor = build_actor(saved)
    torch.manual_seed(0)
    det = rollout_returns(actor, saved["env_id"], args.episodes, True, 50_000)
    sto = rollout_returns(actor, saved["env_id"], args.episodes, False, 60_000)
    refs = U.D4RL_REF_SCORES[env]
    norm = lambda r: 100 * (r - refs[0]) / (refs[1] - refs[0])
    provenance = {
        "env_id": saved["env_id"], "level": args.level, "command": args.command, "seed": saved["args"]["seed"],
        "training_steps": saved["step"], "eval_return_at_stop": saved["eval_return"],
        "config": {k: saved["args"][k] for k in ("num_qs", "num_min_qs", "utd", "batch_size", "learning_starts",
                                                 "actor_hidden", "actor_layers", "critic_hidden", "critic_layers",
                                                 "eval_episodes", "stop_at_return")},
        "deterministic_return": {"mean": float(np.mean(det)), "std": float(np.std(det)), "episodes": len(det),
                                 "normalized": norm(float(np.mean(det)))},
        "stochastic_return": {"mean": float(np.mean(sto)), "std": float(np.std(sto)), "episodes": len(sto),
                              "normalized": norm(float(np.mean(sto)))},
        "machine": f"{cpu_name()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
    }
    with open(meta, "w") as f:
        json.dump(provenance, f, indent=2)
    print(f"{pt}: deterministic {provenance['deterministic_return']['mean']:.1f} +- {provenance['deterministic_return']['std']:.1f}, "
          f"stochastic {provenance['stochastic_return']['mean']:.1f} +- {provenance['stochastic_return']['std']:.1f}")
    return meta


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def list_policies(args: List) -> None:
    for name in sorted(f for f in os.listdir(args.policy_dir) if f.endswith(".json")):
        with open(os.path.join(args.policy_dir, name)) as f:
            p = json.load(f)
        print(f"{name[:-5]:24s} {p['training_steps']:>8,} steps | deterministic {p['deterministic_return']['mean']:7.1f} "
              f"({p['deterministic_return']['normalized']:5.1f}) | stochastic {p['stochastic_return']['mean']:7.1f} "
              f"({p['stochastic_return']['normalized']:5.1f})")


def main(cmd: Union[Make, Ship, List]) -> Optional[dict]:
    if isinstance(cmd, Make):
        return make(cmd)
    if isinstance(cmd, Ship):
        ship(cmd)
    else:
        list_policies(cmd)
    return None


if __name__ == "__main__":
    main(tyro.extras.subcommand_cli_from_dict({"make": Make, "ship": Ship, "list": List}))
