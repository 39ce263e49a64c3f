"""A Minari dataset from a run of `sac_fast.py`: its replay buffer (like D4RL's medium-replay),
or N episodes of its final stochastic policy (like D4RL's medium and expert).

    python tools/export_dataset.py --save-dataset-id local/hopper/replay-30k-v0 --env-id Hopper-v5 --online-steps 30000
    python tools/export_dataset.py --save-dataset-id local/hopper/sac-v0 --save-rollouts 50 --online-steps 30000

Every other flag is `sac_fast.py`'s own (`--help` lists both): this runs `sac_fast.main` with
them, then writes what it learned from. The id, its folder and the room on its disk are
checked BEFORE training (an hour of training must not end on a refused name or a full disk); the
run's checkpoint is always saved (`--save-model`), so a dataset that still cannot be written
loses no training (the error says where the agent is); the dataset is written with Minari's own
writer under a temporary id and renamed once whole, so nothing half-written is ever left under
the id. A run cut short (Ctrl-C) still writes its data, marked `complete: false` in the
dataset's metadata (loading such a dataset warns). Locomotion runs only: elsewhere the buffer
holds the domain's flat observations and transformed rewards, not the environment's own; the
other domains' datasets come from Minari's hub or from `tools/make_domain_datasets.py`.

(This lived in `sac_fast.py` as `--save-dataset-id` until the scripts were trimmed to what their
algorithm needs; the flags kept their names.)
"""

import dataclasses
import os
import signal
import sys
import warnings
from typing import Annotated

import numpy as np
import torch
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import sac_fast as S  # noqa: E402  (the run, its environments and replay buffer)
import wsrl_utils as U  # noqa: E402


@dataclasses.dataclass
class Export:
    save_dataset_id: str
    """the Minari dataset to write, `NAMESPACE/NAME-vN`, e.g. local/hopper/replay-30k-v0"""
    save_rollouts: int = 0
    """0: the run's replay buffer; N > 0: N episodes of the final (stochastic) policy instead"""
    sac: Annotated[S.Args, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=S.Args)
    """the run: every flag of sac_fast.py"""


def save_minari(dataset_id: str, episodes: list, env_id: str, ref_scores, algorithm: str,
                complete: bool = True) -> str:
    """Write episodes [(obs (N+1, d), actions (N, a), rewards, terminations, truncations)] as a
    Minari dataset with Minari's own writer; returns the folder. It is written under a temporary
    id and renamed once whole, so a write cut short (Ctrl-C, full disk) leaves nothing under
    `dataset_id`; `complete=False` (a run cut short) is recorded in the metadata, and loading
    such a dataset warns."""
    import json
    import shutil

    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.storage import get_dataset_path

    buffers = [
        EpisodeBuffer(id=i, observations=o, actions=a, rewards=r, terminations=te, truncations=tr, infos={})
        for i, (o, a, r, te, tr) in enumerate(episodes)
    ]
    stem, version = dataset_id.rsplit("-v", 1)
    partial = f"{stem}-partial{os.getpid()}-v{version}"
    final_dir, partial_dir = str(get_dataset_path(dataset_id)), str(get_dataset_path(partial))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Minari warns about every metadata field left empty
            minari.create_dataset_from_buffers(
                partial, buffers, env=env_id, algorithm_name=algorithm, author="wsrl reference scripts",
                author_email="n/a", code_permalink="n/a", description=f"{algorithm} data on {env_id}",
                ref_min_score=float(ref_scores[0]), ref_max_score=float(ref_scores[1]),  # both, or none is stored
            )
        # whole: give it its real id (Minari keeps the id in data/metadata.json) and move it in place
        meta_path = os.path.join(partial_dir, "data", "metadata.json")
        with open(meta_path) as f:
            meta = json.load(f)
        meta.update(dataset_id=dataset_id, complete=complete)
        with open(meta_path, "w") as f:
            json.dump(meta, f)
        os.rename(partial_dir, final_dir)
    except BaseException as e:
        shutil.rmtree(partial_dir, ignore_errors=True)
        if isinstance(e, (OSError, RuntimeError)):  # a full disk (h5py: OSError or RuntimeError), a folder
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1][:200]
            raise OSError(f"cannot write dataset {dataset_id}: {reason}") from None
        raise  # Ctrl-C: nothing left behind, and the interrupt goes on
    return final_dir


def check_dataset_id_is_free(dataset_id: str) -> None:
    """Refuse, before any training, an id Minari would refuse after it, or a folder that cannot be
    written (data would be lost)."""
    import minari
    from minari.storage import get_dataset_path

    U.validate_dataset_id(dataset_id)
    try:  # the folder must take a file now, not after an hour of training
        parent = os.path.dirname(str(get_dataset_path(dataset_id)))
        os.makedirs(parent, exist_ok=True)
        probe = os.path.join(parent, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise SystemExit(f"error: cannot write the dataset {dataset_id!r} under {root} ({e.strerror}). "
                         "Set MINARI_DATASETS_PATH to a folder you can write.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dataset_id in minari.list_local_datasets():
            raise SystemExit(
                f"error: dataset {dataset_id!r} already exists. Pick another name or version, or "
                f"delete it with `minari delete {dataset_id}`."
            )


def rollouts(env_id: str, actor, n: int, seed: int, obs_dim: int, act_dim: int) -> list:
    """n episodes of the policy's STOCHASTIC actions, as D4RL's medium/expert data: a policy's own
    noise gives the action coverage that offline RL needs. Raw rewards: transforms happen at load."""
    env = U.build_env(env_id, seed)
    rb = U.ReplayBuffer(obs_dim, act_dim, n * env.spec.max_episode_steps, torch.device("cpu"))
    obs, _ = env.reset(seed=seed)
    done = 0
    while done < n:
        (o, a, r, next_o, terminated, ended), obs, _ = U.env_step(env, obs, actor.act(obs, deterministic=False))
        rb.add(o, a, r, next_o, terminated, ended)
        done += int(ended)
    return rb.episodes()


def random_buffer(env_id: str, steps: int, seed: int) -> tuple[list, int]:
    """What the buffer of a run that never updates holds (--learning-starts >= --online-steps):
    `steps` transitions of uniformly random actions, a D4RL-style "random" dataset. Ctrl-C (or
    SIGTERM) stops it with what there is; returns the episodes and the steps taken."""
    env = U.build_env(env_id, seed)
    rb = U.ReplayBuffer(env.observation_space.shape[0], env.action_space.shape[0], steps, torch.device("cpu"))
    obs, _ = env.reset(seed=seed)
    previous = U.interrupt_on_sigterm()
    try:
        for _ in range(steps):
            (o, a, r, next_o, terminated, ended), obs, _ = U.env_step(env, obs, env.action_space.sample())
            rb.add(o, a, r, next_o, terminated, ended)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {rb.size:,} steps; saving what there is")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if rb.size == 0:
        raise SystemExit("error: interrupted before the first step: no dataset written.")
    return rb.episodes(), rb.size


def evaluate_random(env_id: str, seed: int, episodes: int) -> float:
    """Mean return of uniformly random actions: the low reference score of an unknown environment."""
    env = U.build_env(env_id, seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            _, r, terminated, truncated, _ = env.step(env.action_space.sample())
            total, done = total + float(r), terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def check_dataset_fits(e: Export) -> None:
    """The dataset the run will write must fit on the disk, checked before an hour of training."""
    from minari.storage import get_dataset_path

    env_id = e.sac.env_id or (U.load_minari(e.sac.dataset_id).env_spec.id if e.sac.dataset_id else "Hopper-v5")
    env = U.build_env(env_id, 0)
    transitions = e.save_rollouts * env.spec.max_episode_steps if e.save_rollouts > 0 else e.sac.online_steps
    needed = U.dataset_bytes(transitions, env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    U.check_free_space(str(get_dataset_path(e.save_dataset_id)), needed, f"dataset {e.save_dataset_id} "
                       f"({transitions:,} transitions)", "free some space, or set MINARI_DATASETS_PATH to a folder on "
                       "another disk")


def main(e: Export) -> dict:
    check_dataset_id_is_free(e.save_dataset_id)
    if e.sac.online_steps < 1:
        raise SystemExit(f"error: --online-steps is {e.sac.online_steps}; a dataset needs at least 1 step.")
    if U.domain_of(e.sac.env_id or e.sac.dataset_id or "") != "locomotion":
        raise SystemExit("error: tools/export_dataset.py exports locomotion runs only; datasets of the other domains "
                         "come from Minari's hub or from tools/make_domain_datasets.py.")
    check_dataset_fits(e)
    e.sac.save_model = True  # what the run learned is kept in its folder, even if the dataset cannot be written
    if e.sac.learning_starts >= e.sac.online_steps:  # a run that would never update: random actions only
        if e.save_rollouts > 0:
            raise SystemExit("error: --save-rollouts records the final policy of a run that learns: raise "
                             "--online-steps above --learning-starts.")
        env_id, summary = e.sac.env_id or "Hopper-v5", {"evals": []}
        episodes, steps = random_buffer(env_id, e.sac.online_steps, e.sac.seed)
        complete, what = steps == e.sac.online_steps, f"{steps:,} steps of uniformly random actions"
    else:
        summary = S.main(e.sac)  # returns after the last step, or after Ctrl-C with what there is
        # whole: every planned step, or stopped on purpose by --stop-at-return (not cut short)
        complete = summary["steps"] == e.sac.online_steps or "stopped_at" in summary
        env_id, rb = summary["env_id"], summary["buffer"]
        if e.save_rollouts > 0:
            episodes = rollouts(env_id, summary["policy"], e.save_rollouts, e.sac.seed + 20_000, rb.obs.shape[1],
                                rb.actions.shape[1])
            what = f"{e.save_rollouts} episodes of the final policy"
        else:
            episodes, what = rb.episodes(), f"the replay buffer ({rb.size:,} transitions)"
    ref_scores = U.reference_scores(env_id)
    if ref_scores is None:  # unknown env: random policy as min, the final evaluation as max
        evals = summary["evals"]
        ref_scores = (evaluate_random(env_id, e.sac.seed, e.sac.eval_episodes), evals[-1][1] if evals else 0.0)
    try:
        path = save_minari(e.save_dataset_id, episodes, env_id, ref_scores, "sac_fast", complete=complete)
    except OSError as err:  # the disk filled up during the run: one line, and where the learning is
        kept = f"the run's agent is kept in {summary['checkpoint']}" if "checkpoint" in summary else "nothing was kept"
        raise SystemExit(f"error: {err}. Nothing was left under {e.save_dataset_id}; {kept}.")
    print(f"saved Minari dataset {e.save_dataset_id} ({what}{'' if complete else ', CUT SHORT: marked incomplete'}) "
          f"to {path}")
    summary["dataset"] = path
    return summary


if __name__ == "__main__":
    main(tyro.cli(Export))
