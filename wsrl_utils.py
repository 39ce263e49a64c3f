"""Support code of the WSRL reference scripts: everything that is NOT the algorithm.

Each script (sac_fast.py, calql_offline.py, wsrl_calql_sac.py, wsrl_iql_sac.py, jsrl.py,
td3c.py) holds its algorithm in full: its flags, networks, losses and updates, evaluation and
`main`. What they all need besides lives here, once, the way CleanRL keeps `cleanrl_utils`:

    domain presets      the paper's per-domain settings and reward transforms (docs/domains.md)
    datasets            Minari loading, dataset-id checks, the hub probe, flat offline arrays
    domains, env        AntMaze, Kitchen, Adroit and PointMaze as the paper uses them; build_env, env_step
    replay buffer       a preallocated tensor buffer, and batches mixed from online and offline data
    precision           --precision bf16 plumbing (autocast regions, fp32 output layers)
    checkpoints         saving and reading an agent (a model file), its checks; td3c.py's own format
    argument checks     settings that would train but mean nothing, refused before anything is built
    resume points       a run's whole state at an episode end, written whole or not at all
    CUDA graphs         --cuda-graphs: an update function wrapped once, recorded, then replayed
    progress            progress lines, the run summary, curves, run folders
    the task            load_pretrained, load_task, build_envs: checkpoint, data, domain, environments
    RunArgs             the flags every script shares (seed, device, precision, --track, --capture-video)
    Run                 one run's plumbing behind a few calls (resume, logs, W&B, videos, Ctrl-C, the summary)

Nothing here is needed to understand an algorithm: read the scripts first. Copy this file next
to a script you take elsewhere; the script runs with it alone.
"""

import contextlib
import hashlib
import io
import math
import os
import random
import re
import shutil
import signal
import socket
import threading
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from typing import Literal, Optional

# OpenMP threads (torch's, on the CPU) wait for work passively unless you say otherwise: spinning
# ones run a run several times slower as soon as anything else uses a core (a second seed, a
# browser). Set before torch loads OpenMP (the scripts import this module before torch);
# `OMP_WAIT_POLICY=ACTIVE` is faster on an idle machine (docs/speed.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.optim.adam import adam as functional_adam  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Domain presets: what the paper changes from one benchmark to another (docs/algorithms.md §2-6).
# A flag left at None takes the preset of the dataset's domain; a flag given on the command line wins.
# ---------------------------------------------------------------------------------------------
DOMAIN_PRESETS = {  # (each script uses the keys it has flags for: Cal-QL's cql_*, IQL's expectile and beta)
    "locomotion": dict(critic_hidden=256, critic_layers=2, actor_hidden=256, actor_layers=2, last_hidden_init_scale=0.01,
                       state_dependent_std=True, layer_norm=True,
                       cql_alpha=5.0, cql_importance_sample=True, cql_lagrange=False, expectile=0.7, awr_beta=3.0),
    "antmaze": dict(critic_hidden=256, critic_layers=4, actor_hidden=256, actor_layers=2, last_hidden_init_scale=0.01,
                    state_dependent_std=False, layer_norm=True,  # one learned std per action dim (std_parameterization="uniform")
                    cql_alpha=5.0, cql_importance_sample=True, cql_lagrange=True, expectile=0.9, awr_beta=10.0),
    # PointMaze (this project's sparse-maze demo; not in the paper): antmaze's settings
    "pointmaze": dict(critic_hidden=256, critic_layers=4, actor_hidden=256, actor_layers=2, last_hidden_init_scale=0.01,
                      state_dependent_std=False, layer_norm=True,
                      cql_alpha=5.0, cql_importance_sample=True, cql_lagrange=True, expectile=0.9, awr_beta=10.0),
    "adroit": dict(critic_hidden=512, critic_layers=3, actor_hidden=512, actor_layers=2, last_hidden_init_scale=0.01,
                   state_dependent_std=True, layer_norm=True,
                   cql_alpha=1.0, cql_importance_sample=True, cql_lagrange=False, expectile=0.7, awr_beta=0.5),
    "kitchen": dict(critic_hidden=512, critic_layers=3, actor_hidden=512, actor_layers=3, last_hidden_init_scale=math.sqrt(2.0),
                    state_dependent_std=True, layer_norm=True,
                    cql_alpha=5.0, cql_importance_sample=False, cql_lagrange=False, expectile=0.7, awr_beta=0.5),
}


def apply_domain_preset(args, domain: str) -> dict:
    """Fill the flags left at None with the domain's values; returns {flag: value} it set."""
    chosen = {}
    for key, value in DOMAIN_PRESETS[domain].items():
        if hasattr(args, key) and getattr(args, key) is None:
            setattr(args, key, value)
            chosen[key] = value
    return chosen


# ---------------------------------------------------------------------------------------------
# Data: Minari datasets (loading, flattening, reward transform), made locally or downloaded
# ---------------------------------------------------------------------------------------------
# D4RL's reference returns (random policy, expert policy) for the normalised score
# 100 * (R - random) / (expert - random). Minari's `mujoco/*` datasets do not carry them.
D4RL_REF_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}
# Applied to offline rewards, online rewards and returns-to-go, never to the evaluation return
# (docs/algorithms.md §6). Sparse tasks get a negative reward per step so that "not there yet" costs.
REWARD_TRANSFORMS = {
    "antmaze": lambda r: r * 10.0 - 5.0,  # +5 at the goal, -5 otherwise
    "pointmaze": lambda r: r * 10.0 - 5.0,  # as antmaze
    "adroit": lambda r: r * 10.0 + 5.0,  # binary -1/0 becomes -5/+5
    "kitchen": lambda r: r - 4.0,  # 0..4 subtasks done becomes -4..0
    "locomotion": lambda r: r,
}
DATASET_ID_RE = re.compile(r"^(?:[\w-]+/)*[\w-]+-v\d+$")


def reference_scores(env_id: str, metadata: Optional[dict] = None):
    """(random, expert) returns for the normalised score, or None when unknown."""
    if metadata and metadata.get("ref_min_score") is not None and metadata.get("ref_max_score") is not None:
        return float(metadata["ref_min_score"]), float(metadata["ref_max_score"])
    base = env_id.split("-v")[0].lower()  # "Hopper-v5" -> "hopper", "AntMaze_..." stays apart
    return D4RL_REF_SCORES.get(base)


def validate_dataset_id(dataset_id: str) -> None:
    """Fail before anything is written: a malformed id would leave a folder that breaks Minari."""
    if not DATASET_ID_RE.match(dataset_id) or "//" in dataset_id:
        raise SystemExit(
            f"error: bad dataset id {dataset_id!r}. A Minari id is NAMESPACE/NAME-vN with a version "
            "suffix, letters, digits, '_' and '-' only, e.g. local/hopper/sac-v0."
        )


def local_datasets_message() -> str:
    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = sorted(minari.list_local_datasets().keys())
    where = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
    listing = "\n".join(f"    {d}" for d in local) if local else "    (none)"
    return (
        f"Local Minari datasets (in {where}):\n{listing}\n"
        "Make one with this repository's own code, e.g.\n"
        "    python tools/export_dataset.py --online-steps 30000 --save-rollouts 50 --save-dataset-id local/hopper/sac-v0"
    )


def hub_reachable(timeout: float = 1.5) -> bool:
    """Can Minari's remote (the Hugging Face hub by default) be reached at all? Answered in at
    most `timeout` seconds: without this check an offline download retries for a long while."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    if not os.environ.get("MINARI_REMOTE", "hf://").startswith("hf://"):
        return True  # another remote (e.g. gcs://): let Minari try it and report its own error
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    match = re.match(r"^(\w+)://([^/:]+)(?::(\d+))?", endpoint)
    if not match:
        return False
    host, port = match.group(2), int(match.group(3) or (443 if match.group(1) == "https" else 80))
    result = []

    def probe():  # DNS lookups ignore socket timeouts, so the probe runs in a thread we can abandon
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def damaged_dataset(dataset_id: str, e: Exception) -> SystemExit:
    """The one-line error for a dataset whose files cannot be read."""
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    return SystemExit(f"error: dataset {dataset_id!r} cannot be read ({first}); its files are damaged. Delete it "
                      f"(`minari delete {dataset_id}`) and make or download it again.")


def load_minari(dataset_id: str):
    """Load a local Minari dataset, or download it when a network is there; fail fast otherwise."""
    import minari

    validate_dataset_id(dataset_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dataset_id in minari.list_local_datasets():
            try:
                return minari.load_dataset(dataset_id)
            except (OSError, KeyError, ValueError) as e:  # its metadata or data file damaged
                raise damaged_dataset(dataset_id, e) from None
    if not hub_reachable():
        raise SystemExit(
            f"error: dataset {dataset_id!r} is not on this machine and Minari's hub cannot be reached "
            f"(no network?).\n{local_datasets_message()}"
        )
    try:  # the real download path, for users with a network
        return minari.load_dataset(dataset_id, download=True)
    except Exception as e:  # unknown id, incompatible version, missing huggingface_hub, ...
        raise SystemExit(f"error: could not download {dataset_id!r}: {e}\n{local_datasets_message()}")


# Offline data: a Minari dataset -> flat transition arrays, through the domain's path
def flatten_dataset(dataset, relabel=None, domain: str = "locomotion") -> dict:
    """Episodes -> flat transition arrays, each episode through `relabel` (the domain's path,
    DomainWrapper.relabel_episode), cached next to the dataset (h5py reads episodes one by one,
    slow enough on a large dataset to be felt at every start)."""
    name = "flat_cache.npz" if domain == "locomotion" else f"flat_cache_{domain}.npz"
    cache = os.path.join(os.path.dirname(dataset.storage.data_path), name)
    if os.path.exists(cache):
        try:
            with np.load(cache) as f:
                return {k: f[k] for k in f.files}
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # cut short (a disk that filled, a copy stopped): made again from the episodes below
    parts = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    for ep in dataset.iterate_episodes():
        if relabel is None and not isinstance(ep.observations, np.ndarray):
            raise SystemExit("error: this dataset has dict observations but no domain that reads them "
                             "(antmaze, pointmaze, kitchen); pass --domain.")
        ep_data = relabel(ep.observations, ep.rewards, ep.terminations) if relabel else dict(
            observations=ep.observations, rewards=ep.rewards, terminals=ep.terminations)
        if ep_data is None:  # dropped by the domain (adroit: never reached the goal)
            continue
        n = len(ep_data["rewards"])
        parts["observations"].append(ep_data["observations"][:-1])  # an episode stores N+1 observations
        parts["next_observations"].append(ep_data["observations"][1:])
        parts["actions"].append(ep.actions[:n])
        parts["rewards"].append(ep_data["rewards"])
        parts["terminals"].append(ep_data["terminals"])
        # An episode that ends without terminating was cut (time limit): not terminal, but the
        # trajectory ends there (returns-to-go must not run into the next episode).
        last = np.arange(n) == n - 1
        parts["timeouts"].append(last & ~np.asarray(ep_data["terminals"], dtype=bool))
    if not parts["rewards"]:
        raise SystemExit(f"error: no episode of this dataset is left for the {domain} domain (adroit keeps the "
                         "episodes that reach the goal).")
    flat = {k: np.concatenate(v).astype(np.bool_ if k in ("terminals", "timeouts") else np.float32) for k, v in parts.items()}
    # whole or not at all: written to a file of this process's own, then renamed over the cache, so
    # the runs of two seeds that load the dataset at the same moment never read half of it
    tmp = f"{cache}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **flat)
        os.replace(tmp, cache)
    except OSError:
        pass  # (a read-only dataset folder: no cache, the episodes are flattened at every start)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)  # (gone already when the write succeeded)
    return flat


def load_offline_data(dataset_id: str, domain: str) -> tuple[dict, dict]:
    """Flat offline arrays with the domain's reward transform applied, and the dataset metadata."""
    dataset = load_minari(dataset_id)
    metadata = dict(dataset.storage.metadata)
    metadata["spec"] = spec = dataset_env_spec(metadata)  # the environment the scripts then make
    env_domain = domain_of(spec.id) if spec is not None else "locomotion"
    # the very wrapper the online environment will have: the data and the env cannot disagree
    relabel = build_env(spec.id, 0, spec).get_wrapper_attr("relabel_episode") if env_domain != "locomotion" else None
    try:
        data = flatten_dataset(dataset, relabel, env_domain)
    except (OSError, KeyError, ValueError) as e:  # h5py on a file cut short (a copy, a full disk), a missing key
        raise damaged_dataset(dataset_id, e) from None
    metadata["fingerprint"] = data_fingerprint(data)  # what checkpoints and resume points record
    for key in ("observations", "next_observations", "actions", "rewards"):  # one NaN would poison every Q
        bad = ~np.isfinite(data[key].reshape(len(data[key]), -1)).all(axis=1)
        if bad.any():
            raise SystemExit(f"error: dataset {dataset_id!r} has non-finite {key} in {bad.sum():,} transitions "
                             f"(the first at transition {int(np.argmax(bad)):,}); clean or remake it.")
    data["rewards"] = REWARD_TRANSFORMS[domain](data["rewards"]).astype(np.float32)
    data["actions"] = np.clip(data["actions"], -0.99999, 0.99999)  # atanh must stay finite
    metadata["env_id"] = dataset.env_spec.id if dataset.env_spec is not None else None
    if metadata.get("complete") is False:
        print(f"WARNING: dataset {dataset_id!r} was saved by a run cut short (Ctrl-C); it is used as it is.")
    return data, metadata


def data_fingerprint(data: dict) -> str:
    """16 hex digits of SHA-256 over the flat arrays as loaded (before the reward transform): a
    dataset made again, or replaced under the same id, gets another (0.13 s per 1M transitions)."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(data[key]))
    return digest.hexdigest()[:16]


def check_same_data(recorded: Optional[dict], dataset: Optional[dict], what: str, refuse: bool) -> None:
    """`recorded` and `dataset`: {"id", "fingerprint"}. The same id with other contents is refused
    (`refuse`: a resumed run would go on with other data) or warned about (a checkpoint fine-tuned
    on data made again: its held-out transitions may have been trained on)."""
    if not recorded or not dataset or recorded.get("id") != dataset["id"]:
        return  # nothing recorded (older files, no data), or another dataset asked for by name
    if recorded.get("fingerprint") != dataset["fingerprint"]:
        message = (f"dataset {dataset['id']!r} has changed since {what} was made (fingerprint "
                   f"{recorded.get('fingerprint')} then, {dataset['fingerprint']} now)")
        if refuse:
            raise SystemExit(f"error: {message}: resuming would go on with other data. Put the dataset it began "
                             "with back, or start a new run.")
        print(f"WARNING: {message}; it is used as it is now.")


def env_id_for(dataset_id: str, metadata: dict, env_id: Optional[str]) -> str:
    """The environment to act in: --env-id if given, else the one the dataset names. A dataset of
    one body refused for another (same sizes would train without a word); versions may differ."""
    recorded = metadata.get("env_id")
    if env_id and recorded and env_id.split("-v")[0] != recorded.split("-v")[0]:
        raise SystemExit(f"error: dataset {dataset_id!r} was recorded in {recorded}, not {env_id}: "
                         f"drop --env-id or pass --env-id {recorded}.")
    return env_id or recorded or "Hopper-v5"


# ---------------------------------------------------------------------------------------------
# Domains: ONE observation and reward path for the offline data and the online environment
# (docs/algorithms.md §6). Online, `DomainWrapper` turns the environment's own observations,
# rewards and ends into the paper's; offline, `DomainWrapper.relabel_episode` runs the same
# functions over each recorded episode, so the data and the environment cannot disagree.
# ---------------------------------------------------------------------------------------------
ADROIT_TASKS = ("pen", "door", "relocate")  # the binary Adroit tasks of the paper (Cal-QL's)
ADROIT_MAX_STEPS = {"pen": 100, "door": 200, "relocate": 200}  # their episode lengths (official mj_envs)
MAZE_GOAL_RADIUS = 0.5  # "at the goal" in D4RL and the official code (gymnasium-robotics's own is 0.45)
KITCHEN_TASK_RADIUS = 0.3  # a kitchen task is done when its joints are this close to their goal
KITCHEN_MAX_STEPS = 280  # D4RL's kitchen episodes (the official envs and the paper's main comparison)


def domain_of(name: str) -> str:
    """The benchmark domain of an env or dataset id; it picks the data path and the presets."""
    name = name.lower()
    if "antmaze" in name:
        return "antmaze"
    if "pointmaze" in name:
        return "pointmaze"
    if "kitchen" in name:
        return "kitchen"
    # (by substring, as the ids go: "D4RL/pen/human-v2", "AdroitHandPen-v1"; hammer is refused later:
    # it has no binary version in the paper)
    if any(task in name for task in ("door", "pen", "relocate", "hammer")):
        return "adroit"
    return "locomotion"


def env_kwargs_for(domain: str, env_id: str) -> dict:
    """What the wrapper below needs from the environment: it decides the ends of episodes itself."""
    if domain in ("antmaze", "pointmaze"):  # never end or move the goal on its own (the wrapper ends at the goal)
        return dict(continuing_task=True, reset_target=False)
    if domain == "kitchen":  # the episode ends when all four tasks are done (the wrapper), not on the env's terms,
        # or after D4RL's 280 steps, as the paper's kitchen runs (Minari's partial/mixed specs say 450)
        return dict(terminate_on_tasks_completed=False, remove_task_when_completed=False,
                    max_episode_steps=KITCHEN_MAX_STEPS)
    if domain == "adroit":
        task = adroit_task(env_id)
        return dict(max_episode_steps=ADROIT_MAX_STEPS[task])
    return {}


def adroit_task(name: str) -> str:
    for task in ADROIT_TASKS:
        if task in name.lower():
            return task
    raise SystemExit(f"error: {name} has no binary version in the paper; the Adroit tasks are {', '.join(ADROIT_TASKS)}.")


class DomainWrapper(gym.Wrapper):
    """The paper's version of each domain, on top of gymnasium-robotics's environments:

    - antmaze / pointmaze: the goal is FIXED (the one goal cell of the maze map, as in D4RL's
      evaluation mazes), so it is not observed: antmaze sees D4RL's 29 numbers (x, y, then the
      ant's 27), pointmaze (x, y, vx, vy). Reward 1 within MAZE_GOAL_RADIUS of the goal cell's
      centre, else 0, and the episode ends there (terminal: nothing is bootstrapped after it).
    - kitchen: D4RL's observation without its constant goal vector: robot joint positions (9)
      and object positions (21). Online reward = the number of the four tasks done SO FAR in the
      episode (the official env: a task once done stays counted); offline (relabel_episode) =
      the number at their goal in the observation reached, D4RL's stored reward, which falls when
      a task is undone. The episode ends when all four are done (terminal) or after 280 steps;
      success = the reward / 4.
    - adroit (pen, door, relocate): the binary tasks of Cal-QL: reward = goal reached - 1, in
      {-1, 0}, read from the observation; the episode ends at the goal.
    - locomotion: unchanged.

    The scripts then scale and shift the rewards (REWARD_TRANSFORMS) for training only; the
    evaluation return is the reward defined here."""

    def __init__(self, env: gym.Env, domain: str):
        super().__init__(env)
        self.domain, self.goal_xy, self.tasks = domain, None, ()
        if domain in ("antmaze", "pointmaze"):
            goals = env.unwrapped.maze.unique_goal_locations  # (x, y) centres of the map's goal cells
            if len(goals) != 1:
                raise SystemExit(f"error: {env.spec.id} has {len(goals)} possible goal cells; the paper's mazes have one "
                                 "fixed goal: use the dataset's evaluation maze (its --dataset-id) or a maze_map with "
                                 "one goal cell.")
            self.goal_xy = np.asarray(goals[0], dtype=np.float64)
        elif domain == "kitchen":
            self.tasks = tuple(env.unwrapped.goal.keys())
        elif domain == "adroit":
            self.task = adroit_task(env.spec.id if env.spec else "")
        flat = self.flat_observation(env.observation_space.sample())  # only to learn the flat size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, flat.shape, np.float64)
        self.done_tasks = np.zeros(len(self.tasks), dtype=bool)

    def flat_observation(self, obs):
        """The vector the networks see; one observation, or an episode's stacked along axis 0."""
        if self.domain == "antmaze":
            return np.concatenate([obs["achieved_goal"], obs["observation"]], axis=-1)
        if self.domain == "pointmaze":  # its "observation" starts with (x, y) already
            return np.asarray(obs["observation"])
        if self.domain == "kitchen":  # observation = robot qpos 0:9, qvel 9:18, object qpos 18:39, qvel 39:59
            return np.concatenate([obs["observation"][..., 0:9], obs["observation"][..., 18:39]], axis=-1)
        return np.asarray(obs)

    def goal_flags(self, obs) -> np.ndarray:
        """Reached the goal (mazes, adroit: one flag) or each task done (kitchen), per observation."""
        if self.domain in ("antmaze", "pointmaze"):
            return (np.linalg.norm(obs["achieved_goal"] - self.goal_xy, axis=-1) <= MAZE_GOAL_RADIUS)[..., None]
        if self.domain == "kitchen":
            return np.stack([np.linalg.norm(obs["achieved_goal"][t] - obs["desired_goal"][t], axis=-1) < KITCHEN_TASK_RADIUS
                             for t in self.tasks], axis=-1)
        # adroit: the thresholds of the envs' own "goal achieved" (mj_envs, which Cal-QL's binary
        # tasks use), read from the observation so that recorded data can be relabelled too
        o = np.asarray(obs)
        if self.task == "door":  # the door's hinge angle
            return (o[..., 28] >= 1.35)[..., None]
        if self.task == "relocate":  # object to target
            return (np.linalg.norm(o[..., 36:39], axis=-1) < 0.1)[..., None]
        # pen: position error and orientation agreement (unit vectors)
        return ((np.linalg.norm(o[..., 39:42], axis=-1) < 0.075) & ((o[..., 33:36] * o[..., 36:39]).sum(-1) > 0.95))[..., None]

    def reward_and_end(self, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reward, terminal, success) from the flags after each step (kitchen: one per task)."""
        if self.domain == "kitchen":
            done = flags.sum(-1).astype(np.float64)
            return done, flags.all(-1), done / len(self.tasks)
        reached = flags[..., 0]
        return reached - (1.0 if self.domain == "adroit" else 0.0), reached, reached.astype(np.float64)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.done_tasks[:] = False
        return (obs if self.domain == "locomotion" else self.flat_observation(obs)), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.domain == "locomotion":
            return obs, reward, terminated, truncated, info
        flags = self.goal_flags(obs)
        if self.domain == "kitchen":
            self.done_tasks |= flags
            flags = self.done_tasks
        reward, terminal, success = self.reward_and_end(flags)
        info["success"] = float(success)
        return self.flat_observation(obs), float(reward), bool(terminal), truncated, info

    def relabel_episode(self, obs, rewards, terminations) -> Optional[dict]:
        """One recorded episode (N+1 observations, N rewards) through the same path as `step`:
        flat observations, rewards and terminals; None for an episode the domain drops."""
        if self.domain == "locomotion":
            return dict(observations=np.asarray(obs), rewards=rewards, terminals=np.asarray(terminations, bool))
        # the flags of the observation each step led to (kitchen: tasks at their goal THERE, not done
        # so far: the official code trains on D4RL's stored reward, which is Markovian)
        flags = self.goal_flags(after_first(obs))
        reward, terminal, _ = self.reward_and_end(flags)
        flat = self.flat_observation(obs)
        if self.domain == "adroit":  # official Cal-QL data: episodes that never succeed are dropped,
            if not terminal.any():  # the others end at their last success
                return None
            last = int(np.flatnonzero(terminal)[-1]) + 1
            flat, reward, terminal = flat[: last + 1], reward[:last], terminal[:last]
        return dict(observations=flat, rewards=reward, terminals=terminal)


def after_first(obs):
    """An episode's observations without the first (dicts of arrays, nested for kitchen, too)."""
    return {k: after_first(v) for k, v in obs.items()} if isinstance(obs, dict) else obs[1:]


def dataset_env_spec(metadata: dict):
    """The environment a dataset names for evaluation (AntMaze: its fixed start and goal), else
    the one it was recorded in; None when it names neither. Kitchen: the tasks are the dataset's
    (its desired_goal keys), whatever the spec says."""
    text = metadata.get("eval_env_spec") or metadata.get("env_spec")
    if not text:
        return None
    spec = gym.envs.registration.EnvSpec.from_json(text)
    space = metadata.get("observation_space")
    if domain_of(spec.id) == "kitchen" and isinstance(space, gym.spaces.Dict) and "desired_goal" in space.spaces:
        spec.kwargs = {**spec.kwargs, "tasks_to_complete": list(space["desired_goal"].spaces.keys())}
    return spec


# ---------------------------------------------------------------------------------------------
# Environment: one env, reset by hand, so no transition ever spans two episodes
# ---------------------------------------------------------------------------------------------
def build_env(env_id: str, seed: int, spec=None, render: bool = False) -> gym.Env:
    """The environment `env_id`, in its domain's form (DomainWrapper). Outside locomotion, a
    dataset's own spec of it (dataset_env_spec: AntMaze's evaluation maze, kitchen's tasks) is
    used when given. `render`: it can draw frames (rgb_array, for --capture-video); nothing is
    drawn until a frame is asked for."""
    domain = domain_of(env_id)
    if domain != "locomotion":  # AntMaze, PointMaze, FrankaKitchen and Adroit come from gymnasium-robotics
        # (its notice on import is about Adroit's DENSE rewards, which these scripts never use)
        with contextlib.redirect_stderr(io.StringIO()):
            import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
    use_spec = spec is not None and spec.id == env_id and domain != "locomotion"
    try:
        env = gym.make(spec if use_spec else env_id, render_mode="rgb_array" if render else None,
                       **env_kwargs_for(domain, env_id))
    except gym.error.Error as e:  # an unknown id or version: gymnasium's own words, without the traceback
        raise SystemExit(f"error: cannot make environment {env_id!r}: {e}")
    if domain != "locomotion":
        env = DomainWrapper(env, domain)
    if not isinstance(env.action_space, gym.spaces.Box) or not isinstance(env.observation_space, gym.spaces.Box):
        raise SystemExit(f"error: {env_id} has {env.action_space} actions and {env.observation_space} observations; "
                         "these scripts need continuous (Box) actions and flat Box observations, e.g. Hopper-v5.")
    env = gym.wrappers.RecordEpisodeStatistics(env)
    low, high = env.action_space.low, env.action_space.high
    if not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
        raise SystemExit(f"error: {env_id} has actions in [{low.min()}, {high.max()}]; these scripts expect [-1, 1].")
    env.action_space.seed(seed)
    return env


def env_step(env: gym.Env, obs: np.ndarray, action: np.ndarray):
    """Step once. Returns the transition to store and the observation to act from next.

    Gymnasium 1.x vector envs reset on the step AFTER an episode ends: that step ignores the
    action and returns the first observation of the next episode, a classic source of
    transitions that span two episodes. A single env that we reset here cannot do that. The
    stored `terminated` flag is the true termination only: a time-limit truncation is not
    terminal, so its TD target still bootstraps from next_obs."""
    next_obs, reward, terminated, truncated, info = env.step(action)
    if not np.isfinite(next_obs).all() or not math.isfinite(reward):  # the simulator blew up
        raise SystemExit(f"error: {env.spec.id if env.spec else 'the environment'} returned a non-finite "
                         "observation or reward; the run stops here and saves nothing.")
    transition = (obs, action, float(reward), next_obs, bool(terminated), bool(terminated or truncated))
    episode = info.get("episode") if (terminated or truncated) else None  # {"r": return, "l": length}
    if terminated or truncated:
        next_obs, _ = env.reset()
    return transition, next_obs, episode


class ReplayBuffer:
    """Flat circular buffer of transitions kept as torch tensors, so sampling is one index op."""

    # Tensors live on the training device from the start: at UTD 4 we sample 1,024 transitions
    # per env step, and a numpy -> torch copy of each batch would cost more than the indexing.
    # The same class holds the offline dataset (RLPD), so both are sampled the same way.

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, device: torch.device):
        self.capacity, self.device, self.size, self.pos = capacity, device, 0, 0
        self.obs = torch.zeros((capacity, obs_dim), device=device)
        self.actions = torch.zeros((capacity, act_dim), device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.next_obs = torch.zeros((capacity, obs_dim), device=device)
        self.terminals = torch.zeros(capacity, device=device)  # 1 = terminated: do not bootstrap
        self.ends = torch.zeros(capacity, dtype=torch.bool, device=device)  # episode ended here (for export)
        # Cal-QL's lower bound: the discounted return-to-go of the trajectory through each
        # transition; -inf = not known (yet), which leaves the bound off. Unused by plain SAC.
        self.mc_returns = torch.full((capacity,), -math.inf, device=device)

    @classmethod
    def from_arrays(cls, data: dict, device: torch.device) -> "ReplayBuffer":
        n, obs_dim = data["observations"].shape
        rb = cls(obs_dim, data["actions"].shape[1], n, device)
        rb.obs[:] = torch.as_tensor(data["observations"])
        rb.actions[:] = torch.as_tensor(data["actions"])
        rb.rewards[:] = torch.as_tensor(data["rewards"])
        rb.next_obs[:] = torch.as_tensor(data["next_observations"])
        rb.terminals[:] = torch.as_tensor(data["terminals"], dtype=torch.float32)
        rb.ends[:] = torch.as_tensor(data["terminals"] | data["timeouts"])
        if "mc_returns" in data:
            rb.mc_returns[:] = torch.as_tensor(data["mc_returns"])
        rb.size = n
        return rb

    def add(self, obs, action, reward, next_obs, terminated, ended):
        i = self.pos
        self.obs[i] = torch.as_tensor(obs)
        self.actions[i] = torch.as_tensor(action)
        self.rewards[i] = reward
        self.next_obs[i] = torch.as_tensor(next_obs)
        self.terminals[i] = float(terminated)
        self.ends[i] = ended
        self.mc_returns[i] = -math.inf
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, shape: tuple, generator: torch.Generator, skip_newest: int = 0) -> dict:
        """Uniform over what is stored, but the `skip_newest` transitions added last (Cal-QL
        online: the unfinished episode, whose returns-to-go are not known yet)."""
        # our own generator keeps runs reproducible for a seed
        idx = torch.randint(0, self.size - skip_newest, shape, generator=generator, device="cpu")
        if skip_newest:  # count back from just before the skipped ones (the buffer is circular)
            idx = (self.pos - skip_newest - 1 - idx) % self.capacity
        idx = idx.to(self.device)
        return {"obs": self.obs[idx], "actions": self.actions[idx], "rewards": self.rewards[idx],
                "next_obs": self.next_obs[idx], "terminals": self.terminals[idx], "mc_returns": self.mc_returns[idx]}

    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals", "ends", "mc_returns")

    def state_dict(self) -> dict:
        """What is stored, for a resume point (a 1M-transition buffer after 20k steps saves 20k)."""
        # (.clone(): a slice is a view, and torch.save would write the whole 1M-row storage behind it)
        return {"size": self.size, "pos": self.pos, **{k: getattr(self, k)[: self.size].cpu().clone() for k in self.FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.pos = state["size"], state["pos"]
        for k in self.FIELDS:
            getattr(self, k)[: self.size] = state[k].to(self.device)

    def episodes(self) -> list:
        """The stored transitions cut back into episodes, oldest first (for dataset export)."""
        order = torch.arange(self.size)
        if self.size == self.capacity:  # wrapped around: the oldest transition sits at `pos`
            order = torch.roll(order, -self.pos)
        episodes, start = [], 0
        ends = self.ends[order].cpu().numpy()
        ends[-1] = True  # an unfinished last episode is stored as truncated
        for stop in np.flatnonzero(ends) + 1:
            ix = order[start:stop]
            obs = torch.cat([self.obs[ix], self.next_obs[ix[-1:]]]).cpu().numpy()
            terminations = self.terminals[ix].cpu().numpy().astype(bool)
            episodes.append((obs, self.actions[ix].cpu().numpy(), self.rewards[ix].cpu().numpy().astype(np.float64),
                             terminations, ~terminations & (np.arange(len(ix)) == len(ix) - 1)))
            start = stop
        return episodes


def offline_per_batch(batch_size: int, offline_ratio: float) -> int:
    return int(round(batch_size * offline_ratio))


def sample_batch(online: ReplayBuffer, offline: Optional[ReplayBuffer], utd: int, batch_size: int,
                 offline_ratio: float, generator: torch.Generator, skip_newest: int = 0) -> dict:
    """utd minibatches of batch_size, stacked as (utd * batch_size, ...). With offline data every
    minibatch holds the same share of it (RLPD's symmetric sampling: 50/50). `skip_newest`: see
    ReplayBuffer.sample."""
    n_off = offline_per_batch(batch_size, offline_ratio) if offline is not None else 0
    # (utd, b_online) and (utd, b_offline) joined along dim 1, so minibatch k (row k) holds
    # exactly b_offline offline transitions, then flattened to (utd * batch_size, ...). The
    # official WSRL code concatenates the whole online sample and then the offline one, so at UTD
    # 4 two of its minibatches are online-only and two offline-only; we keep RLPD's own mix inside
    # every minibatch, which is what the RLPD paper describes and what keeps each critic step's
    # data the same.
    parts = [online.sample((utd, batch_size - n_off), generator, skip_newest)]
    if n_off > 0:
        parts.append(offline.sample((utd, n_off), generator))
    return {k: torch.cat([p[k] for p in parts], dim=1).flatten(0, 1) for k in parts[0]}


def autocast(args, device: torch.device):
    """`--precision bf16`: inside a gradient update, the networks' matmuls (forward and backward)
    run in bfloat16 (torch.autocast); the weights, their gradients and Adam states stay float32,
    and so do the output layers (below), hence the Q-values, log-probabilities, losses and TD
    targets. fp32 (the default): a no-op. No weight cache: autocast would otherwise keep the
    bf16 copy of each weight for the whole region, and the second of `utd` critic steps would
    run on the weights from before the first."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16", cache_enabled=False)


def backward(loss: torch.Tensor, **kwargs) -> None:
    """loss.backward() outside the bf16 region: autocast would also cast the backward's own
    matmuls (on the CPU the backward runs in this thread), those of the fp32 output layers
    included. The trunk's backward still runs in the bf16 of its forward."""
    if not torch.is_autocast_enabled(loss.device.type):  # (fp32: nothing to leave)
        return loss.backward(**kwargs)
    with torch.autocast(loss.device.type, enabled=False):
        loss.backward(**kwargs)


def gradient(output: torch.Tensor, inputs: list) -> tuple:
    """torch.autograd.grad(output, inputs), outside the bf16 region as backward() (--compile traces
    it, where backward(inputs=...) of a tensor made inside the update cannot be traced)."""
    with torch.autocast(output.device.type, enabled=False):
        return torch.autograd.grad(output, inputs)


def full_precision(layer: nn.Module, x: torch.Tensor, *rest) -> torch.Tensor:
    """layer(x) in float32, also inside a bf16 autocast region: an output layer keeps its outputs
    exact (a Q-value of 500 in bfloat16 is only known to +-2, more than a TD error)."""
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float(), *rest)


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """opt.load_state_dict(state), keeping THIS run's Adam settings (fused, capturable): loading
    would put back the saving run's, e.g. a CPU run's non-capturable Adam into a --cuda-graphs
    run, or a capturable one into a CPU run. Step counts go where these settings keep them."""
    settings = [{k: group[k] for k in ("fused", "capturable", "foreach") if k in group} for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, kept in zip(opt.param_groups, settings):
        group.update(kept)
        for param in group["params"]:
            if "step" in opt.state.get(param, {}):
                on_device = kept.get("capturable") or kept.get("fused")
                opt.state[param]["step"] = opt.state[param]["step"].to(param.device if on_device else "cpu", torch.float32)


def adam_options(device: torch.device, args, fused: bool = True) -> dict:
    """Fused Adam on CPU and GPU; capturable (its step count stays on the GPU) for --cuda-graphs."""
    options = {"fused": True} if fused and device.type in ("cpu", "cuda") else {}
    if device.type == "cuda" and args.cuda_graphs:
        options["capturable"] = True
    return options


class Adam(torch.optim.Adam):
    """torch.optim.Adam as it is, except inside torch.compile (--compile): there its zero_grad and
    step trace into the same graph as the update's forward and backward, through torch's own
    functional Adam (torch's step breaks the graph on purpose, and zero_grad is never traced).
    Called eagerly it is torch's, so numbers, checkpoints and resume points are unchanged. After
    its step it lets the gradients go (nothing reads them after the step)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not torch.compiler.is_compiling():
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure=None):
        if not torch.compiler.is_compiling():
            out = super().step(closure)
        else:
            out = None
            for group in self.param_groups:  # (the state exists: the first call of an update is eager)
                params = [p for p in group["params"] if p.grad is not None]
                states = [self.state[p] for p in params]
                functional_adam([p.detach() for p in params], [p.grad.detach() for p in params],
                                [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
                                [s["step"] for s in states], foreach=False, fused=False, capturable=group["capturable"],
                                differentiable=False, amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1],
                                lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
        for group in self.param_groups:  # nothing reads a gradient after its step: every update starts from
            for p in group["params"]:  # none, so a compiled one always finds the same state
                p.grad = None
        return out

    step.hooked = True  # (torch wraps a class's step in its profiling hooks once, unless so marked)


def make_run_dir(env_id: str, exp_name: str, seed: int) -> str:
    """runs/{env}__{exp_name}__{seed}__{unix time}, created here and unique: runs started in the
    same second (seeds launched side by side) get a suffix instead of sharing one log folder."""
    base = os.path.join("runs", f"{env_id}__{exp_name}__{seed}__{int(time.time())}")
    run_dir, n = base, 1
    while True:
        try:
            os.makedirs(run_dir)  # fails if it exists, even when another process made it a moment ago
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = f"{base}_{n}"


def save_curve(path: str, evals: list, title: str, marks: Optional[dict] = None) -> None:
    """Evaluation return against environment steps, as a PNG next to the tensorboard logs;
    `marks` {label: step} draws the phase boundaries (e.g. where updates start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([e[0] for e in evals], [e[1] for e in evals], marker="o")
    for label, step in (marks or {}).items():
        ax.axvline(step, color="gray", linestyle="--", linewidth=1)
        ax.annotate(label, (step, 1.0), xycoords=("data", "axes fraction"), fontsize=8, color="gray",
                    rotation=90, ha="right", va="top")
    ax.set(xlabel="environment steps", ylabel="evaluation return", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def heldout_split(data: dict, size: int, seed: int) -> tuple[dict, dict]:
    """Split the flat offline arrays into (training, held-out): `size` random transitions (at most
    a tenth) are set aside for evaluation only, so Q on offline data can still be measured once
    the dataset has been discarded."""
    n = len(data["rewards"])
    held = np.random.default_rng(seed).permutation(n)[: min(size, n // 10)]
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return {k: v[~mask] for k, v in data.items()}, {k: v[mask] for k, v in data.items()}


def to_batch(data: dict, device: torch.device) -> dict:
    """Flat offline arrays -> the dict of tensors that ReplayBuffer.sample returns."""
    names = {"obs": "observations", "actions": "actions", "rewards": "rewards", "next_obs": "next_observations",
             "terminals": "terminals", "mc_returns": "mc_returns"}
    return {k: torch.as_tensor(data[v], dtype=torch.float32, device=device) for k, v in names.items() if v in data}


# ---------------------------------------------------------------------------------------------
# Saving an SAC agent (every script but td3c.py), read back by read_checkpoint below
# ---------------------------------------------------------------------------------------------
# Version 2: LayerNorm in the actor, temperature and CQL multiplier through a softplus. Older
# checkpoints cannot be loaded: their actor lacks the norms, and their `log_alpha` means exp().
CHECKPOINT_FORMAT = 2


def check_free_space(folder: str, needed: int, what: str, fix: str) -> None:
    """Before long work whose output has a known size: refuse it if `folder`'s disk has less
    than `needed` bytes free (the work would be lost at its end). `fix`: what the user can do."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):  # (the folder may not exist yet: its disk is its first parent's)
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise SystemExit(f"error: {what}: about {needed / 1e6:,.0f} MB needed in {folder}, whose disk has "
                         f"{free / 1e6:,.0f} MB free; {fix}.")


def dataset_bytes(transitions: int, obs_dim: int, act_dim: int) -> int:
    """Disk a Minari dataset of this size takes, with the flat cache the scripts write at its first
    load (float32: observations, actions, reward, flags; ~20% and 1 MB to spare)."""
    per_transition = 4 * ((obs_dim + act_dim + 3) + (2 * obs_dim + act_dim + 3))
    return int(1.2 * transitions * per_transition) + 1_000_000


def save_or_exit(obj, path: str) -> None:
    """A checkpoint written whole (atomic_save), or a one-line error that says where the logs are."""
    try:
        atomic_save(obj, path)
    except OSError as e:
        raise SystemExit(f"error: {e}. The logs of the run are in {os.path.dirname(path) or '.'}; free some space "
                         "(or fix the folder's permissions) and run again.")


def save_checkpoint(path: str, actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt,
                    args, step: int, **extra) -> None:
    """Everything needed to resume or fine-tune: the format the WSRL scripts load. `extra` holds
    what a script adds (e.g. Cal-QL's Lagrange multiplier and its optimizer: a tensor is saved on
    the CPU, an optimizer or network as its state dict)."""
    extra = {k: v.state_dict() if hasattr(v, "state_dict") else v.detach().cpu() if torch.is_tensor(v) else v
             for k, v in extra.items()}
    save_or_exit({"actor": actor.state_dict(), "critic": critic.state_dict(),
                "critic_target": critic_target.state_dict(), "alpha_param": alpha_param.detach().cpu(),
                "actor_opt": actor_opt.state_dict(), "critic_opt": critic_opt.state_dict(),
                "alpha_opt": alpha_opt.state_dict(), "args": asdict(args), "step": step,
                "format": CHECKPOINT_FORMAT, **extra}, path)


def save_actor(run_dir: str, actor: nn.Module, args, env_id: str, step: int, eval_return: float) -> str:
    """The actor alone, with what is needed to rebuild it: a behaviour policy to record data with."""
    os.makedirs(os.path.join(run_dir, "actors"), exist_ok=True)
    path = os.path.join(run_dir, "actors", f"step_{step:07d}.pt")
    save_or_exit({"actor": actor.state_dict(), "env_id": env_id, "step": step, "eval_return": eval_return,
                "actor_hidden": args.actor_hidden, "actor_layers": args.actor_layers, "args": asdict(args),
                "format": CHECKPOINT_FORMAT}, path)  # never a half-written file under the final name
    return path


# ---------------------------------------------------------------------------------------------
# Loading a checkpoint written by save_checkpoint (any script of this repository)
# ---------------------------------------------------------------------------------------------
NETWORK_ARGS = ("num_qs", "critic_hidden", "critic_layers", "actor_hidden", "actor_layers", "last_hidden_init_scale",
                "state_dependent_std", "layer_norm")


def read_checkpoint(path: str, device: torch.device) -> dict:
    if not os.path.isfile(path):
        raise SystemExit(
            f"error: no checkpoint at {path!r}. Pre-train one with `python calql_offline.py --dataset-id ID` "
            "(it writes runs/<run>/calql_offline_pretrained.pt), or save one with any script's --save-model."
        )
    try:  # weights_only: a checkpoint holds tensors, numbers and strings, never code to run
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(f"error: {path!r} is not a checkpoint these scripts can read (torch.load: {first[:200]}). "
                         "Pass a *_pretrained.pt or --save-model file.")
    if isinstance(ckpt, dict) and "log_alpha" in ckpt and "format" not in ckpt:
        raise SystemExit(
            f"error: {path!r} was written by an older version of these scripts (checkpoint format 1: no "
            "LayerNorm in the actor, exp-parameterised temperature), which this version cannot load without "
            "changing the networks. Pre-train it again, e.g. `python calql_offline.py --dataset-id ID`."
        )
    missing = [k for k in ("actor", "critic", "critic_target", "alpha_param", "actor_opt", "critic_opt",
                           "alpha_opt", "args", "format") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise SystemExit(f"error: {path!r} is not a checkpoint of these scripts (it lacks {', '.join(missing)}).")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise SystemExit(f"error: {path!r} has checkpoint format {ckpt['format']}; this version reads format "
                         f"{CHECKPOINT_FORMAT} only. Use the version of these scripts that wrote it, or pre-train again.")
    if ckpt.get("complete") is False:  # saved on Ctrl-C: fewer steps than its run asked for
        print(f"WARNING: {path} was saved by a run cut short (Ctrl-C) at step {ckpt['step']:,} of "
              f"{ckpt['planned_steps']:,}; it is used as it is.")
    if "cql_alpha_opt" in ckpt:  # the Lagrange multiplier's optimizer, under its name before December 2026
        ckpt["cql_lagrange_opt"] = ckpt.pop("cql_alpha_opt")
    return ckpt


def check_same_environment(ckpt: dict, env_id: str) -> None:
    """A checkpoint of another environment is refused even when its sizes fit (HalfCheetah-v5 and
    Walker2d-v5 both have 17-dim observations and 6-dim actions)."""
    trained_on = ckpt.get("env_id")
    if trained_on and trained_on != env_id:
        raise SystemExit(f"error: the checkpoint was trained on {trained_on}; this run's environment is {env_id}. "
                         f"Pass --env-id {trained_on} (or the dataset it was trained on), or a checkpoint of {env_id}.")


def check_checkpoint_fits(ckpt: dict, obs_dim: int, act_dim: int, env_id: str, action_head: str = "mean",
                          dataset: Optional[dict] = None) -> None:
    """Before anything is built: the checkpoint's networks must take this environment's sizes, and
    come from this environment (`action_head`: the actor's output layer, SAC's "mean", TD3's "head");
    `dataset` (dataset_record: this run's data) made again since the checkpoint's is warned about."""
    trained_obs = ckpt["actor"]["trunk.0.weight"].shape[1]  # the first Dense: (hidden, obs)
    trained_act = ckpt["actor"][f"{action_head}.weight"].shape[0]  # the output layer: (actions, hidden)
    if (trained_obs, trained_act) != (obs_dim, act_dim):
        trained_on = ckpt.get("env_id") or ckpt["args"].get("env_id") or ckpt["args"].get("dataset_id")
        raise SystemExit(f"error: the checkpoint was trained on {trained_on} ({trained_obs}-dim observations, "
                         f"{trained_act}-dim actions); {env_id} has {obs_dim} and {act_dim}. Pass --env-id {trained_on} "
                         "or a checkpoint of this environment.")
    check_same_environment(ckpt, env_id)  # the same sizes are not the same body
    check_same_data(ckpt.get("dataset"), dataset, "the checkpoint", refuse=False)


def use_checkpoint_network_sizes(args, ckpt: dict) -> None:
    """The networks must be built with the checkpoint's sizes: they override the flags (said aloud)."""
    for key in NETWORK_ARGS:
        # (the std's kind and the LayerNorms are read from the weights: checkpoints older than
        # those flags name them nowhere else)
        value = ("log_std.weight" in ckpt["actor"] if key == "state_dependent_std" else
                 any(k.startswith("norms.") for k in ckpt["critic"]) if key == "layer_norm" else ckpt["args"][key])
        if getattr(args, key) not in (None, value):
            print(f"note: --{key.replace('_', '-')} {getattr(args, key)} replaced by the checkpoint's {value}")
        setattr(args, key, value)


def restore(ckpt: dict, actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt, **extra) -> None:
    """Weights, temperature and Adam states, exactly as saved. `extra`: what a script added to
    save_checkpoint by name (a tensor, or an optimizer with its saved settings), when the
    checkpoint has it (e.g. Cal-QL's Lagrange multiplier: not in an IQL or SAC checkpoint)."""
    try:
        actor.load_state_dict(ckpt["actor"])
        critic.load_state_dict(ckpt["critic"])
        critic_target.load_state_dict(ckpt["critic_target"])
    except RuntimeError as e:
        raise SystemExit(f"error: the checkpoint (trained on {ckpt['args'].get('env_id') or ckpt['args'].get('dataset_id')}) "
                         f"does not fit this environment's observation/action sizes:\n{e}")
    with torch.no_grad():
        alpha_param.copy_(ckpt["alpha_param"])
    for opt, key in ((actor_opt, "actor_opt"), (critic_opt, "critic_opt"), (alpha_opt, "alpha_opt")):
        lrs = [group["lr"] for group in opt.param_groups]
        load_optimizer_state(opt, ckpt[key])  # Adam's moments and step counts, as the paper keeps them ...
        for group, lr in zip(opt.param_groups, lrs):
            group["lr"] = lr  # ... but the learning rates are this run's flags, not the checkpoint's
    for name, part in extra.items():
        if name not in ckpt:
            continue
        if isinstance(part, torch.optim.Optimizer):
            load_optimizer_state(part, ckpt[name])
        elif isinstance(part, nn.Module):
            part.load_state_dict(ckpt[name])
        else:
            with torch.no_grad():
                part.copy_(ckpt[name])


# ---------------------------------------------------------------------------------------------
# td3c.py's own: TD3+BC's state normalisation, the newest transitions of a buffer, TD3 checkpoints
# ---------------------------------------------------------------------------------------------
class NormalizedStates(gym.ObservationWrapper):
    """TD3+BC's normalisation at the environment's edge: every observation the agent sees, in
    training and in evaluation, is (s - mean) / std with fixed statistics (mean 0, std 1: unchanged)."""

    def __init__(self, env: gym.Env, mean: np.ndarray, std: np.ndarray):
        super().__init__(env)
        self.mean, self.std = mean, std
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float64)

    def observation(self, obs):
        return (obs - self.mean) / self.std


def sample_newest(rb: ReplayBuffer, count: int, size: int, generator: torch.Generator) -> dict:
    """`size` transitions drawn uniformly from the `count` added last: the online ones, also in a
    buffer that started with the offline data (--offline-data-in-buffer)."""
    idx = ((rb.pos - 1 - torch.randint(0, count, (size,), generator=generator)) % rb.capacity).to(rb.device)
    return {"obs": rb.obs[idx], "actions": rb.actions[idx], "rewards": rb.rewards[idx], "next_obs": rb.next_obs[idx],
            "terminals": rb.terminals[idx]}


# ---------------------------------------------------------------------------------------------
# Checkpoints of td3c.py: a TD3 agent (deterministic actor, twin critics, their targets), which
# the SAC scripts' checkpoints are not
# ---------------------------------------------------------------------------------------------
TD3_CHECKPOINT_FORMAT = "td3c-1"  # a string: the SAC scripts' integer formats cannot pass for it
TD3_CHECKPOINT_KEYS = ("actor", "actor_target", "critic", "critic_target", "actor_opt", "critic_opt", "obs_mean",
                       "obs_std", "args", "step", "format")
TD3_CHECKPOINT_ARGS = ("critic_hidden", "critic_layers", "actor_hidden", "actor_layers", "last_hidden_init_scale",
                   "normalize_states")


def save_td3_checkpoint(path: str, args, step: int, **parts) -> None:
    """Networks and optimizers as state dicts, the multiplier and the state statistics as tensors,
    the rest (env_id, complete, ...) as is. Atomically: a cut-short write leaves no file."""
    state = {k: v.state_dict() if hasattr(v, "state_dict") else torch.as_tensor(v).detach().cpu()
             if isinstance(v, (torch.Tensor, np.ndarray)) else v for k, v in parts.items()}
    save_or_exit({**state, "args": asdict(args), "step": step, "format": TD3_CHECKPOINT_FORMAT}, path)


def read_td3_checkpoint(path: str, device: torch.device) -> dict:
    if not os.path.isfile(path):
        raise SystemExit(f"error: no checkpoint at {path!r}. Pre-train one with `python td3c.py --dataset-id ID` "
                         "(it writes runs/<run>/td3c_pretrained.pt).")
    try:  # weights_only: a checkpoint holds tensors, numbers and strings, never code to run
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(f"error: {path!r} is not a checkpoint td3c.py can read (torch.load: {first[:200]}).")
    if isinstance(ckpt, dict) and ("alpha_param" in ckpt or "log_alpha" in ckpt):
        raise SystemExit(f"error: {path!r} is an SAC agent (a tanh-Gaussian actor and a critic ensemble) of the other "
                         "scripts (calql_offline.py, the WSRL scripts, --save-model); td3c.py fine-tunes a TD3 agent (a deterministic actor, 2 critics) and cannot start "
                         "from it. Pre-train one with `python td3c.py --dataset-id ID` (runs/<run>/td3c_pretrained.pt).")
    missing = [k for k in TD3_CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise SystemExit(f"error: {path!r} is not a checkpoint of td3c.py (it lacks {', '.join(missing)}).")
    if ckpt["format"] != TD3_CHECKPOINT_FORMAT:
        raise SystemExit(f"error: {path!r} has checkpoint format {ckpt['format']!r}; this version reads "
                         f"{TD3_CHECKPOINT_FORMAT!r} only.")
    if ckpt.get("complete") is False:  # saved on Ctrl-C: fewer steps than its run asked for
        print(f"WARNING: {path} was saved by a run cut short (Ctrl-C) at step {ckpt['step']:,} of "
              f"{ckpt['planned_steps']:,}; it is used as it is.")
    return ckpt


def use_td3_checkpoint_settings(args, ckpt: dict) -> None:
    """The networks and the state statistics are the checkpoint's: they override the flags (said aloud)."""
    for key in TD3_CHECKPOINT_ARGS:
        value = ckpt["args"][key]
        if getattr(args, key) not in (None, value):
            print(f"note: --{key.replace('_', '-')} {getattr(args, key)} replaced by the checkpoint's {value}")
        setattr(args, key, value)


def restore_td3(ckpt: dict, **parts) -> None:
    """Weights and Adam states exactly as saved (Adam's moments and step counts carry over the
    switch, as the other scripts keep them), but this run's learning rates."""
    for name, part in parts.items():
        if isinstance(part, torch.optim.Optimizer):
            lrs = [group["lr"] for group in part.param_groups]
            load_optimizer_state(part, ckpt[name])
            for group, lr in zip(part.param_groups, lrs):
                group["lr"] = lr
        else:
            part.load_state_dict(ckpt[name])


# ---------------------------------------------------------------------------------------------
# Settings that would run but mean nothing are refused before anything is built or written
# ---------------------------------------------------------------------------------------------
def check_args(args, budgets: dict) -> None:
    """Stop, before any run folder, network or dataset is made, on settings that would train but
    mean nothing (a negative budget, a minimum over more critics than exist, a learning rate that
    cannot learn, a negative noise). `budgets` maps each step-count flag to (its value, the
    smallest that makes sense); every other check applies to the flags the script has. Every
    problem is one line with the flag to change."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    def present(*names: str) -> list:  # (name, value) of the flags this script has and sets
        return [(n, getattr(args, n)) for n in names if getattr(args, n, None) is not None]

    problems = [f"{flag} is {value:,}; it must be at least {low:,}" for flag, (value, low) in budgets.items()
                if value < low]
    if getattr(args, "num_qs", None) is not None and not 1 <= args.num_min_qs <= args.num_qs:
        problems.append(f"--num-min-qs is {args.num_min_qs}; the target is a minimum over that many of the "
                        f"--num-qs {args.num_qs} critics, so it must be between 1 and {args.num_qs}")
    for name, value in present("batch_size", "utd", "eval_episodes", "eval_interval", "policy_delay"):
        if value < 1:
            problems.append(f"{flag(name)} is {value}; it must be at least 1")
    if getattr(args, "buffer_size", None) is not None and args.batch_size * args.utd > args.buffer_size:
        problems.append(f"--batch-size {args.batch_size:,} x --utd {args.utd} is more transitions per step than the "
                        f"replay buffer holds (--buffer-size {args.buffer_size:,})")
    for name, lr in present("actor_lr", "critic_lr", "temp_lr", "lagrange_lr"):
        if not 0.0 < lr < 1.0:  # Adam at a rate of 1 or more diverges within steps (the defaults are 1e-4, 3e-4)
            problems.append(f"{flag(name)} is {lr:g}; it must be in (0, 1)")
    for name, value in present("exploration_noise", "target_noise", "target_noise_clip", "dqda_clip",
                               "target_noise_clip"):
        if value < 0:
            problems.append(f"{flag(name)} is {value:g}; it must be at least 0")
    for name, value in present("bc_alpha", "td3c_epsilon", "lagrange_init", "handover_temperature"):
        if value <= 0:
            problems.append(f"{flag(name)} is {value:g}; it must be above 0")
    for name, value in present("gamma", "tau"):  # a discount above 1 diverges; a Polyak rate is a share
        if not 0.0 < value <= 1.0:
            problems.append(f"{flag(name)} is {value:g}; it must be in (0, 1]")
    for name, value in present("heldout_size", "resume_interval"):
        if value < (1 if name == "heldout_size" else 0):
            problems.append(f"{flag(name)} is {value}; it must be at least {1 if name == 'heldout_size' else 0}"
                            + (" (the diagnostics of analysis/ need held-out transitions)" if name == "heldout_size" else ""))
    name = getattr(args, "exp_name", "run")
    if not name or name in (".", "..") or "/" in name or os.sep in name:  # the run folder must stay in runs/
        problems.append(f"--exp-name is {name!r}; it names a folder inside runs/, so it must not be empty or "
                        "hold a path separator or '..'")
    if (getattr(args, "online_steps", 0) > 0 and getattr(args, "warmup_policy", "pretrained") != "dataset"
            and getattr(args, "warmup_steps", 0) > args.online_steps):  # (equal: the warmup alone, on purpose)
        problems.append(f"--online-steps {args.online_steps:,} is below --warmup-steps {args.warmup_steps:,}: the "
                        "warmup would be cut short and no online update would run; raise --online-steps, lower "
                        "--warmup-steps, or pass --online-steps 0 to pre-train only")
    if not 0.0 <= getattr(args, "offline_ratio", 0.0) < 1.0:
        problems.append(f"--offline-ratio is {args.offline_ratio:g}; it must be in [0, 1)")
    if getattr(args, "offline_ratio", 0.0) > 0 and getattr(args, "offline_data_in_buffer", False):
        problems.append("--offline-ratio and --offline-data-in-buffer are two ways of replaying the offline data "
                        "(App. C.1, Sec. 3.2); choose one")
    if problems:
        raise SystemExit("error: " + "\n       ".join(problems) + ".")


# ---------------------------------------------------------------------------------------------
# Resume points (--resume RUN_DIR): everything a run needs to continue exactly where it stopped
# ---------------------------------------------------------------------------------------------
RESUME_FILE = "resume.pt"


def interrupt_on_sigterm():
    """A cluster's preemption (SIGTERM) stops the run the way Ctrl-C does: results are saved.
    Returns the handler it replaced (None where signals cannot be set: not the main thread)."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def rng_states(gen: torch.Generator) -> dict:
    """Every random stream a run draws from: Python's, numpy's, torch's (CUDA's) and the replay
    sampler's."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [], "replay": gen.get_state()}


def set_rng_states(states: dict, gen: torch.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    gen.set_state(states["replay"])


def env_snapshot(env: gym.Env, simulator: bool = True) -> dict:
    """What the next steps of an env depend on, taken right after a reset (an episode boundary,
    where no time limit or episode statistic is running): its simulator state and its random
    streams. `simulator=False`: the random streams only (an env that is reset before each use)."""
    u = env.unwrapped
    snap = {"np_random": u.np_random.bit_generator.state, "action_space": env.action_space.np_random.bit_generator.state}
    if simulator and hasattr(u, "set_state"):  # MuJoCo: positions and velocities are the whole state
        snap.update(qpos=u.data.qpos.copy(), qvel=u.data.qvel.copy())
    elif simulator:  # another simulator: its state cannot be saved here, so a resume starts a new episode
        snap["inexact"] = True
    return snap


def restore_env(env: gym.Env, snap: dict, obs=None):
    """Put an env back where env_snapshot found it: a fresh episode, then its state and streams.
    Returns the observation to act from: the saved `obs`, or the fresh one if the state was not saved."""
    fresh, _ = env.reset()  # the wrappers (time limit, episode statistics) start an episode...
    u = env.unwrapped
    if snap.get("inexact"):
        print("note: this environment's simulator state is not saved (not MuJoCo): the resumed run starts a "
              "fresh episode and will not repeat the interrupted run exactly")
    if "qpos" in snap:
        u.set_state(snap["qpos"], snap["qvel"])  # ...in the saved simulator state...
    u.np_random.bit_generator.state = snap["np_random"]  # ...with the saved random streams
    env.action_space.np_random.bit_generator.state = snap["action_space"]
    return fresh if snap.get("inexact") or obs is None else obs


def atomic_save(obj, path: str) -> None:
    """torch.save(obj, path), whole or not at all: written to `path`.tmp, then renamed over `path`.
    Ctrl-C and SIGTERM wait until the file is whole (they are raised right after it), so a signal
    can neither leave a half-written file nor lose the previous one; a write that fails (a full
    disk) removes the temporary file and raises OSError in one line."""
    tmp, received, handlers = path + ".tmp", [], {}
    if threading.current_thread() is threading.main_thread():  # (signal handlers live in the main thread)
        # Python runs its signal handlers in the main thread, whichever thread the signal hits:
        # for the length of the write they only note the signal
        handlers = {s: signal.signal(s, lambda signum, frame: received.append(signum))
                    for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            torch.save(obj, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:  # (torch reports a full disk as a RuntimeError)
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1][:200]
            raise OSError(f"cannot write {path}: {reason}") from None
        finally:
            with contextlib.suppress(OSError):
                os.remove(tmp)  # (gone already when the write succeeded)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        if received:  # now that the file is whole: what the signal would have done
            handler = handlers[received[0]]
            if callable(handler):
                handler(received[0], None)  # Ctrl-C's KeyboardInterrupt, or a run's SIGTERM handler
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])


def save_resume_point(run_dir: str, **parts) -> None:
    """Write runs/<run>/resume.pt: networks, optimizers and buffers (anything with a state_dict) as
    their state dicts, tensors on the CPU, the rest (counters, env snapshots, random states) as is.
    Atomically: a write cut short by a kill never replaces the last whole point."""
    state = {k: v.state_dict() if hasattr(v, "state_dict") else v.detach().cpu() if torch.is_tensor(v) else v
             for k, v in parts.items()}
    atomic_save(state, os.path.join(run_dir, RESUME_FILE))


def restore_from(point: dict, **parts) -> None:
    """The inverse for what save_resume_point stored by these names: state dicts loaded, tensors copied."""
    for name, part in parts.items():
        if torch.is_tensor(part):
            with torch.no_grad():
                part.copy_(point[name])
        elif isinstance(part, torch.optim.Optimizer):
            load_optimizer_state(part, point[name])
        else:
            part.load_state_dict(point[name])


def load_resume_point(run_dir: str) -> dict:
    path = os.path.join(run_dir, RESUME_FILE)
    if not os.path.isfile(path):
        raise SystemExit(f"error: no resume point in {run_dir!r} ({RESUME_FILE} is written every "
                         "--resume-interval steps, at the next episode end). Is it a run folder of this script?")
    # not weights_only: a resume point holds random-generator states (numpy arrays, tuples) too.
    # It is a file this script wrote for you; do not resume from a folder you did not make.
    try:
        point = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # cut short by something other than this script (it writes whole files only)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SystemExit(f"error: {path} cannot be read ({first}); it is damaged. Start the run again.")
    if not isinstance(point, dict) or not {"args", "step", "summary"} <= set(point):
        raise SystemExit(f"error: {path} is not a resume point of these scripts.")
    return point


# ---------------------------------------------------------------------------------------------
# --cuda-graphs: a whole update recorded once as a CUDA graph, then replayed
# ---------------------------------------------------------------------------------------------
def use_cuda_graphs(args, device: torch.device) -> bool:
    if args.cuda_graphs and args.compile:
        raise SystemExit("error: --compile and --cuda-graphs are two ways to speed up the same updates: use one.")
    if args.cuda_graphs and device.type != "cuda":
        print("note: --cuda-graphs needs a GPU; on the CPU every update runs as a plain call")
    return args.cuda_graphs and device.type == "cuda"


class CudaGraphs:
    """On a GPU, small networks leave it idle between the hundreds of tiny kernels of one update
    (utd critic steps, the actor and temperature step, target updates, random draws), each
    launched from Python. A CUDA graph records the kernels of one call once and replays them with
    one launch (PyTorch's "whole-network capture": forward, backward and capturable Adam).

    `run(key, fn, batch)` runs fn(batch): the first WARMUP calls of a key eagerly on a side
    stream (they are real updates; PyTorch's recipe before capture), then it records fn on
    fixed input buffers, and from then on copies each batch into those buffers and replays.
    A graph replays what was recorded: the networks, optimizers and every Python value fn reads
    must stay the same for a key (a different value needs a different key). The outputs are
    copied out, since the next replay overwrites them. Disabled (CPU, or --cuda-graphs off): a
    plain call. `emulate=True` runs the same bookkeeping on any device with the recorded fn
    called in place of a replay, so that a CPU test can check it against plain calls."""

    WARMUP = 3

    def __init__(self, enabled: bool, emulate: bool = False, compile: bool = False):
        self.enabled, self.emulate, self.compile = enabled or emulate, emulate, compile
        self.graphs, self.calls = {}, {}

    def wrap(self, fn):
        """`update = graphs.wrap(update)`, once per use: then `update(batch, **flags)` runs through
        run(), with one graph per distinct set of keyword flags (e.g. update_actor=False). A
        function used on batches of two shapes (Cal-QL offline: B, online: utd * B) is wrapped
        twice, one wrap per shape: a graph replays on the shapes it recorded. With `compile`
        (--compile) the update is compiled instead (compiled())."""
        if self.compile:
            return compiled(fn)
        index = self.wrapped = getattr(self, "wrapped", 0) + 1  # each wrap its own graphs

        def wrapped(batch: dict, **flags) -> dict:
            key = (index, fn.__name__, tuple(sorted(flags.items())))
            return self.run(key, (lambda b: fn(b, **flags)) if flags else fn, batch)

        return wrapped

    def run(self, key, fn, batch: dict) -> dict:
        if not self.enabled:
            return fn(batch)
        if key not in self.graphs:
            self.calls[key] = self.calls.get(key, 0) + 1
            if self.calls[key] <= self.WARMUP:
                return self._warmup(fn, batch)
            self.graphs[key] = self._record(fn, batch)
        graph, static_in, static_out = self.graphs[key]
        if {k: v.shape for k, v in batch.items()} != {k: v.shape for k, v in static_in.items()}:
            # copy_ would broadcast a wrong shape silently and replay on the wrong data
            raise ValueError(f"--cuda-graphs: the batch for {key!r} has other keys or shapes than the one recorded")
        for name, value in batch.items():
            static_in[name].copy_(value)
        if self.emulate:  # the recorded function, on the fixed buffers
            static_out = graph(static_in)
        else:
            graph.replay()
        return {name: value.clone() for name, value in static_out.items()}

    def _warmup(self, fn, batch: dict) -> dict:
        if self.emulate:
            return fn(batch)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = fn(batch)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _record(self, fn, batch: dict):
        static_in = {name: value.clone() for name, value in batch.items()}
        if self.emulate:  # the "graph" is the recorded function itself
            return fn, static_in, None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records, runs nothing: the replay after it does this call's update
            static_out = fn(static_in)
        return graph, static_in, static_out


def inductor_with_bias_unfused():
    """Inductor, except that on the CPU an ensemble layer's float32 baddbmm (bias + x @ w) becomes
    bmm + add, so that the add joins the LayerNorm and ReLU kernel after it. Kept whole, the bias
    is first copied into the output of every matmul, one more pass over each activation (5% of a
    compiled SAC update at the paper's sizes on a 2-core Xeon, docs/speed.md). Inductor splits
    addmm this way on a GPU itself; bf16 stays whole (rounding the matmul's result before the add
    would lose precision)."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    def baddbmm(bias, a, b, beta=1, alpha=1):
        if a.device.type == "cpu" and a.dtype == torch.float32 and beta == 1 and alpha == 1:
            return torch.bmm(a, b) + bias
        return NotImplemented  # (Inductor's own way: an extern baddbmm)

    table = {**select_decomp_table(), torch.ops.aten.baddbmm.default: baddbmm}
    return lambda graph, example_inputs: compile_fx(graph, example_inputs, decompositions=table)


COMPILE_SECONDS = []  # how long each --compile took in this process (tools/speed.py leaves them out of a loop's rate)


def compiled(fn):
    """--compile: `update(batch, **flags)` through torch.compile, the WHOLE update as one graph
    (forward, backward, Adam, target updates: fullgraph=True fails rather than run in pieces), one
    compiled function per set of keyword flags. Each one's first call runs eagerly (Adam makes its
    state then); the second compiles, which takes a while once (tens of seconds on a CPU; torch
    caches the compiled code on disk for the next run) and says how long."""
    import torch._dynamo

    torch._dynamo.config.trace_autograd_ops = True  # backward() inside the graph
    versions = {}

    def wrapped(batch: dict, **flags) -> dict:
        key = tuple(sorted(flags.items()))
        call = (lambda b: fn(b, **flags)) if flags else fn
        if key not in versions:
            versions[key] = None
            return call(batch)
        if versions[key] is None:
            versions[key] = torch.compile(call, fullgraph=True, backend=inductor_with_bias_unfused())
            start = time.time()
            try:
                out = versions[key](batch)
            except Exception as e:  # (Inductor's errors are not one class across torch versions)
                if "file too short" not in str(e):
                    raise
                raise RuntimeError(
                    f"--compile read a half-written file from Inductor's cache ({inductor_cache_dir()}): a compile "
                    "stopped part-way (Ctrl-C, a time limit) can leave one behind (pytorch#102539). Delete that "
                    "folder and run again; the next compile takes its full time once.") from e
            COMPILE_SECONDS.append(time.time() - start)
            print(f"--compile: {fn.__name__}{'' if not flags else f' {dict(key)}'} compiled in {COMPILE_SECONDS[-1]:.0f} s")
            return out
        return versions[key](batch)

    return wrapped


def inductor_cache_dir() -> str:
    """Where torch.compile keeps its compiled code: TORCHINDUCTOR_CACHE_DIR, else torch's default
    (/tmp/torchinductor_$USER on Linux)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        return cache_dir()
    except ImportError:  # another torch's layout
        import getpass
        import tempfile

        default = os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")
        return os.environ.get("TORCHINDUCTOR_CACHE_DIR", default)


def keep_freed_memory() -> None:
    """CPU speed: glibc hands every block above 128 KiB straight back to the OS, so each
    (ensemble, batch, hidden) activation is page-faulted anew at every update (seen as high
    `sys` time). Keeping freed blocks up to 32 MiB for reuse makes updates faster on small CPUs
    (docs/speed.md has the measurement; `python tools/speed.py --no-malloc-tuning` compares on
    yours). Harmless elsewhere: it only changes when memory is returned to the OS."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: serve blocks up to 32 MiB from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: do not give freed heap memory back at once
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        pass


def stop_if_diverged(info: dict, step: int, phase: str, writer) -> None:
    """A loss or Q-value that is NaN or infinite ends the run at once: every later number would be
    NaN too, and nothing is saved that could pass for a result (the logs so far are flushed)."""
    bad = [k for k, v in info.items() if not math.isfinite(float(v))]
    if bad:
        writer.close()
        raise SystemExit(f"error: the run diverged at {phase} step {step:,}: {', '.join(bad)} not finite. Nothing "
                         f"was saved; the logs up to here are in {writer.log_dir}. Try lower learning rates "
                         "(--critic-lr, --actor-lr) and check the data's rewards.")


def print_progress(step, total, start_time, updates_start, last_return, evals, info, phase: str = "step") -> float:
    """One status line: progress, speed of the update phase, time left, latest returns.
    Returns the speed in steps per second (since updates began, once they have)."""
    now = time.time()
    if updates_start is not None and step > updates_start[1]:
        sps = (step - updates_start[1]) / (now - updates_start[0])  # speed with gradient updates
    else:
        sps = step / max(now - start_time, 1e-9)
    # before the first update the speed says nothing about what is left: updates cost far more
    eta = f"ETA {(total - step) / max(sps, 1e-9) / 60:5.1f} min" if updates_start is not None else "warmup, no updates"
    threads = torch.get_num_threads()
    line = f"{phase} {step:>8,}/{total:,} | {sps:6.1f} steps/s ({threads} thread{'s' if threads > 1 else ''}) | {eta}"
    if not math.isnan(last_return):  # nan: no episode finished yet (or none at all, offline)
        line += f" | episode return {last_return:8.1f}"
    if evals:
        s, ret, score = evals[-1]
        line += f" | eval {ret:8.1f}" + (f" ({score:5.1f})" if score is not None else "")
    if info:
        line += f" | qf_loss {float(info['qf_loss']):.3g}"
        if "alpha" in info:  # not while the actor and temperature are frozen (WSRL's App. F ablation)
            line += f" | alpha {float(info['alpha']):.3g}"
    print(line, flush=True)
    return sps


def print_summary(summary: dict, step: int, start_time: float) -> None:
    minutes = (time.time() - start_time) / 60
    print(f"\n===== SUMMARY: {step:,} steps in {minutes:.1f} min =====")
    for phase in ("offline", "online"):  # scripts with an offline phase keep its evals apart
        evals = summary["evals"] if phase == "online" else summary.get("offline_evals", [])
        if evals and "offline_evals" in summary:
            print(f"  {phase} phase ({'gradient' if phase == 'offline' else 'environment'} steps):")
        for s, ret, score in evals:
            print(f"  step {s:>9,}: eval return {ret:9.1f}" + (f"   normalized score {score:6.1f}" if score is not None else ""))
    print(f"  tensorboard --logdir {os.path.dirname(summary['run_dir'])}   (curve: {summary['run_dir']}/eval_curve.png)")
    for key in ("pretrained_checkpoint", "checkpoint", "dataset", "actor"):
        if key in summary:
            print(f"  {key}: {summary[key]}")


# ---------------------------------------------------------------------------------------------
# The task of a run: checkpoint, offline data, domain, environments
# ---------------------------------------------------------------------------------------------
def load_pretrained(args, device: torch.device) -> Optional[dict]:
    """--pretrained-checkpoint, read and checked (None without one): the networks take its sizes,
    and its dataset is this run's unless --dataset-id says otherwise."""
    if not args.pretrained_checkpoint:
        return None
    ckpt = read_checkpoint(args.pretrained_checkpoint, device)
    use_checkpoint_network_sizes(args, ckpt)
    if hasattr(args, "dataset_id"):
        args.dataset_id = args.dataset_id or ckpt["args"].get("dataset_id")  # the data it was pre-trained on
    return ckpt


def load_task(args, default_dataset: str = "mujoco/hopper/medium-v0") -> tuple:
    """The offline data of --dataset-id as flat arrays, its metadata, its domain (--domain auto:
    from the id) with the paper's settings for it applied (returned: the preset), and the
    environment it was recorded in (--env-id overrides)."""
    args.dataset_id = args.dataset_id or default_dataset
    domain = domain_of(args.dataset_id) if args.domain == "auto" else args.domain
    preset = apply_domain_preset(args, domain)
    data, metadata = load_offline_data(args.dataset_id, domain)
    return data, metadata, domain, env_id_for(args.dataset_id, metadata, args.env_id), preset


def dataset_record(dataset_id: Optional[str], metadata: dict) -> Optional[dict]:
    """What a checkpoint or resume point records of its data: {"id", "fingerprint"} (None: no data)."""
    return {"id": dataset_id, "fingerprint": metadata["fingerprint"]} if "fingerprint" in metadata else None


def build_envs(env_id: str, seed: int, metadata: dict, ckpt: Optional[dict] = None, data: Optional[dict] = None,
              dataset_id: str = "") -> tuple:
    """The training environment (seed) and the evaluation one (seed + 10,000), checked against the
    checkpoint's and the data's sizes before anything is built or written. Returns
    (env, eval_env, obs_dim, act_dim)."""
    env, eval_env = build_env(env_id, seed, metadata.get("spec")), build_env(env_id, seed + 10_000, metadata.get("spec"), True)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    if ckpt is not None:
        check_checkpoint_fits(ckpt, obs_dim, act_dim, env_id, dataset=dataset_record(dataset_id, metadata))
    if data is not None and data["observations"].shape[1] != obs_dim:
        raise SystemExit(f"error: dataset {dataset_id} has {data['observations'].shape[1]}-dim "
                         f"observations but {env_id} has {obs_dim}: pass the matching --env-id.")
    return env, eval_env, obs_dim, act_dim


# ---------------------------------------------------------------------------------------------
# Weights & Biases (--track) and videos of evaluations (--capture-video)
# ---------------------------------------------------------------------------------------------
def start_wandb(args, run_dir: str):
    """A W&B run that mirrors the tensorboard logs (sync_tensorboard, as CleanRL), with the flags as
    its config. Its id comes from the run folder, so a --resume continues the same W&B run (the
    steps redone after the resume point appear there twice: W&B cannot take back what it got)."""
    import wandb

    name = os.path.basename(os.path.normpath(run_dir))
    wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True, config=asdict(args),
               name=name, id=hashlib.sha1(name.encode()).hexdigest()[:16], resume="allow", save_code=True)
    return wandb


class EvalRecorder:
    """Films the first episode of every evaluation with gymnasium's RecordVideo, slipped into the
    evaluation env's wrappers under its episode statistics: the script's env object stays the same."""

    def __init__(self, env: gym.Env, folder: str):
        from gymnasium.wrappers import RecordVideo

        self.folder, self.armed = folder, True
        with warnings.catch_warnings():  # "overwriting existing videos": a resumed run adds to its folder
            warnings.simplefilter("ignore")
            self.recorder = RecordVideo(env, folder, episode_trigger=self._trigger, name_prefix="recording",
                                        disable_logger=True)

    def _trigger(self, episode: int) -> bool:  # at every reset: film the first episode after an evaluation
        armed, self.armed = self.armed, False
        return armed

    def save(self, name: str) -> Optional[str]:
        """After an evaluation: its film, renamed `name` in the folder; returns its path (None if none)."""
        if self.recorder.recording:  # (one episode per evaluation: the next reset never came)
            self.recorder.stop_recording()
        self.armed = True
        films = sorted(f for f in os.listdir(self.folder) if f.startswith("recording-episode-"))
        if not films:
            return None
        path = os.path.join(self.folder, name)
        os.replace(os.path.join(self.folder, films[-1]), path)
        return path


def record_evaluations(eval_env: gym.Env, folder: str) -> EvalRecorder:
    """Insert an EvalRecorder's RecordVideo just under RecordEpisodeStatistics of `eval_env`
    (built by build_env with render=True)."""
    if eval_env.render_mode != "rgb_array":
        raise SystemExit("error: --capture-video: this evaluation environment cannot draw frames (build it with "
                         "build_env(..., render=True)).")
    holder = eval_env
    while not isinstance(holder, gym.wrappers.RecordEpisodeStatistics):
        holder = holder.env
    video = EvalRecorder(holder.env, folder)
    holder.env = video.recorder
    return video


# ---------------------------------------------------------------------------------------------
# RunArgs: the flags every script shares (CleanRL's generic block); each script's Args extends it
# ---------------------------------------------------------------------------------------------
@dataclass
class RunArgs:
    seed: int = 1
    """seed of the experiment (python, numpy, torch, environment)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """use CUDA when it is available (the CPU is used otherwise)"""
    cuda_graphs: bool = False
    """on a GPU, record each update once as a CUDA graph and replay it (one launch instead of
    hundreds); off by default: this project has not measured it on a GPU yet"""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16: the networks' matmuls in bfloat16 during updates (autocast), weights, output layers,
    losses and targets in float32; faster where the hardware has bfloat16 (recent CPUs, GPUs)"""
    track: bool = False
    """log to Weights & Biases as well (the tensorboard scalars, the flags, the videos); needs
    `pip install wandb`; WANDB_MODE=offline writes the run to ./wandb/ for a later `wandb sync`"""
    wandb_project_name: str = "wsrl"
    """the W&B project (with --track)"""
    wandb_entity: Optional[str] = None
    """the W&B entity, a user or team (with --track; None: your default one)"""
    compile: bool = False
    """torch.compile each update once, whole (forward, backward, Adam: one graph); its first
    compiled call takes tens of seconds on a CPU, then updates run faster (docs/speed.md)"""
    capture_video: bool = False
    """record the first episode of every evaluation to runs/{run_name}/videos/*.mp4 (with
    --track, also to W&B); renders off-screen with MuJoCo's EGL (MUJOCO_GL=egl unless set)"""


# ---------------------------------------------------------------------------------------------
# Run: one run's plumbing behind a few calls, so that `main` shows the algorithm
# ---------------------------------------------------------------------------------------------
class Run:
    """What every script's `main` needs that is not the algorithm: the settings of a resumed run,
    the device, the run folder and its tensorboard writer, the summary, logging helpers, resume
    points, Ctrl-C / SIGTERM handling and the final summary.

        run = Run(args, "sac_fast.py")       # --resume: the run's own settings and its last resume point
        args, device = run.args, run.device
        gen = run.seed()                     # python, numpy, torch; returns the replay sampler's generator
        run.open_logs(env_id)                # runs/<run>/ and its tensorboard writer, run.writer (--track: W&B too)
        update = run.graphs.wrap(update)     # --compile, --cuda-graphs (a plain call otherwise)
        run.start(eval_env)                  # the eval env seeded (--capture-video: recorded); resumed: as it was
        with run.stoppable():                # Ctrl-C (or SIGTERM) ends the loop; the code after saves
            for step in run.steps(1, total): # run.step follows the loop
                run.log_losses("losses/", update(batch), step, "online")
                if run.resume_point_due(step, ended):
                    run.save_resume_point(step, actor=actor, ...)
        run.finish(step, env, eval_env)      # close everything, print the summary
    """

    def __init__(self, args, script: str):
        self.resume = None
        if getattr(args, "resume", None):  # the run's own settings, its state at its last resume point
            given = [f"--{k.replace('_', '-')}" for k, v in asdict(args).items()
                     if k != "resume" and v != getattr(type(args)(), k)]
            if given:  # they would be dropped without a word
                raise SystemExit(f"error: --resume continues a run with the settings it began with; drop "
                                 f"{', '.join(given)} (or start a new run with them).")
            self.resume = load_resume_point(args.resume)
            try:
                args = type(args)(**{**self.resume["args"], "resume": args.resume})
            except TypeError as e:  # another script's run, or flags renamed since (no crossing versions)
                raise SystemExit(f"error: {args.resume} is a run of another script, or of another version of {script} "
                                 f"({e}); resume it with the script and version that began it, or start it again.")
            phase = f"{self.resume['phase']} " if "phase" in self.resume else ""
            print(f"resuming {args.resume} after {phase}step {self.resume['step']:,}")
        self.args, self.script = args, script
        if args.track:  # W&B is imported only when asked for
            try:
                import wandb  # noqa: F401
            except ImportError:
                raise SystemExit("error: --track logs to Weights & Biases, which is not installed: pip install wandb")
        if args.capture_video:  # off-screen rendering (no display): MuJoCo's EGL, unless the user chose
            os.environ.setdefault("MUJOCO_GL", "egl")
        self.device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
        # --cuda-graphs: each update function is wrapped once (`run.graphs.wrap(update)`)
        self.graphs = CudaGraphs(use_cuda_graphs(args, self.device), compile=args.compile)
        self.start_time = time.time()
        self.step, self.resume_step, self.interrupted = 0, None, False
        self.run_dir = self.writer = self._previous_sigterm = self.dataset = self.wandb = self.video = None
        self.summary = {"run_dir": None, "evals": [], "first_losses": None}

    def start(self, eval_env: gym.Env, offline_evals: bool = False) -> Optional[str]:
        """Before the first step: the evaluation env seeded (seed + 10,000), or, resumed, the
        summary so far and the evaluation env as they were at the resume point. `offline_evals`:
        the summary keeps a pre-training's evaluations apart. Returns the phase of the resume
        point ("offline", "online"; "" if it has none), None when not resumed."""
        if offline_evals:
            self.summary["offline_evals"] = []
        eval_env.reset(seed=self.args.seed + 10_000)
        if self.resume:
            self.summary.update(self.resume["summary"])
            self.resume_step = self.resume["step"]
            restore_env(eval_env, self.resume["eval_env"])
        if self.args.capture_video:  # after the resets above, so the first evaluation's first episode is filmed
            self.video = record_evaluations(eval_env, os.path.join(self.run_dir, "videos"))
        return self.resume.get("phase", "") if self.resume else None

    def seed(self) -> torch.Generator:
        """Seed python, numpy and torch (CleanRL's block); returns the replay sampler's generator."""
        keep_freed_memory()
        random.seed(self.args.seed)
        np.random.seed(self.args.seed)
        torch.manual_seed(self.args.seed)
        torch.backends.cudnn.deterministic = self.args.torch_deterministic
        return torch.Generator().manual_seed(self.args.seed)

    def open_logs(self, env_id: str, purge: bool = True, metadata: Optional[dict] = None):
        """The run folder (runs/<env>__<exp>__<seed>__<time>, or the resumed one) and its writer.
        Resumed with `purge`: the logs continue the same curves (what came after the resume point
        goes); without, nothing is purged (the steps redone log the very same values again).
        `metadata`: the offline data's; its id and fingerprint go into run.dataset, which resume
        points and checkpoints record, and a resumed run refuses data changed since."""
        from torch.utils.tensorboard import SummaryWriter

        args = self.args
        self.dataset = dataset_record(getattr(args, "dataset_id", None), metadata or {})
        if self.resume:
            check_same_data(self.resume.get("dataset"), self.dataset, f"the run {args.resume} began", refuse=True)
        self.run_dir = args.resume if self.resume else make_run_dir(env_id, args.exp_name, args.seed)
        self.summary["run_dir"] = self.run_dir
        if args.track:  # before the writer: W&B mirrors what tensorboard gets (CleanRL's sync_tensorboard)
            self.wandb = start_wandb(args, self.run_dir)
        self.writer = SummaryWriter(self.run_dir, purge_step=self.resume["step"] + 1 if self.resume and purge else None)
        if not self.resume:
            self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(
                f"|{k}|{v}|" for k, v in vars(args).items()))
        return self.writer

    def log(self, prefix: str, scalars: dict, step: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(f"{prefix}{k}", float(v), step)

    def log_losses(self, prefix: str, info: dict, step: int, phase: str) -> None:
        """The losses of an update, and a stop if any is NaN or infinite."""
        self.log(prefix, info, step)
        stop_if_diverged(info, step, phase, self.writer)

    def log_eval(self, prefix: str, step: int, result: tuple, evals: list) -> float:
        """Record an evaluation (return, normalised score, success rate or None); returns the return."""
        ret, score, success = result
        evals.append((step, ret, score))
        self.writer.add_scalar(f"{prefix}eval/return", ret, step)
        if score is not None:
            self.writer.add_scalar(f"{prefix}eval/normalized_score", score, step)
        if success is not None:  # sparse domains
            self.writer.add_scalar(f"{prefix}eval/success_rate", success, step)
        if self.video is not None:  # --capture-video: this evaluation's first episode
            path = self.video.save(f"{prefix.replace('/', '_')}eval_step_{step}.mp4")
            if path and self.wandb is not None:
                self.wandb.log({f"videos/{prefix}eval": self.wandb.Video(path, format="mp4"), "global_step": step})
        return ret

    def log_episode(self, episode: Optional[dict], step: int, last_return: float) -> float:
        """The return and length of an episode that just ended; returns the latest episode return."""
        if episode is None:
            return last_return
        self.writer.add_scalar("charts/episodic_return", float(episode["r"]), step)
        self.writer.add_scalar("charts/episodic_length", int(episode["l"]), step)
        return float(episode["r"])

    def progress(self, step: int, total: int, start_time: float, updates_start, last_return: float, evals: list,
                 info: dict, phase: str = "step", tag: str = "charts/SPS") -> float:
        """The status line, and the speed logged under `tag`; returns the speed."""
        sps = print_progress(step, total, start_time, updates_start, last_return, evals, info, phase)
        self.writer.add_scalar(tag, sps, step)
        return sps

    def steps(self, first: int, last: int):
        """range(first, last + 1), with run.step following the loop (for the Ctrl-C message)."""
        for step in range(first, last + 1):
            self.step = step
            yield step

    def resume_point_due(self, step: int, ended: bool) -> bool:
        """Online resume points: at the first episode end after every --resume-interval steps
        (the env has just reset: a few numbers to save, no episode in progress)."""
        interval = self.args.resume_interval
        return bool(interval) and ended and step >= (self.resume_step or 0) + interval

    def save_resume_point(self, step: int, **parts) -> None:
        try:
            save_resume_point(self.run_dir, args=asdict(self.args), step=step, summary=self.summary,
                              dataset=self.dataset, **parts)
        except OSError as e:  # the previous point (if any) is whole and stays; training goes on
            print(f"WARNING: {e}; no resume point at step {step:,}"
                  + (f" (the one of step {self.resume_step:,} is kept)" if self.resume_step is not None else ""))
            return
        self.resume_step = step

    @contextlib.contextmanager
    def stoppable(self, phase: str = "", saving: str = "what there is"):
        """Ctrl-C, or SIGTERM (a cluster's preemption), inside ends the loop with a message and
        sets run.interrupted; the code after the block saves what was learned."""
        if self._previous_sigterm is None:
            self._previous_sigterm = interrupt_on_sigterm() or signal.SIG_DFL
        try:
            yield
        except KeyboardInterrupt:
            where = f"{phase} step" if phase else "step"
            print(f"\ninterrupted at {where} {self.step:,}; saving {saving}")
            if self.resume_step is not None:
                print(f"to continue from {where} {self.resume_step:,}: python {self.script} --resume {self.run_dir}")
            self.interrupted = True

    def finish(self, step: int, *envs) -> dict:
        """Close the environments and the logs, give SIGTERM its handler back, print the summary."""
        for env in envs:
            env.close()
        self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self._previous_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._previous_sigterm)
        print_summary(self.summary, step, self.start_time)
        return self.summary
