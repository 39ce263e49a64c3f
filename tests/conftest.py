import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Runs and Minari datasets go to a temporary folder; Minari's hub is made unreachable in a
    way that answers at once (a closed local port), whatever network the machine has."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path


def write_random_dataset(S, dataset_id: str = "test/hopper/random-v0", episodes: int = 30) -> str:
    """`episodes` episodes of a uniformly random policy on Hopper-v5, written with Minari's own
    writer (tools/export_dataset.py's), stepped through script module S."""
    import torch

    import wsrl_utils as U

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from export_dataset import save_minari

    env = U.build_env("Hopper-v5", 0)
    rb = U.ReplayBuffer(11, 3, 5000, torch.device("cpu"))
    obs, _ = env.reset(seed=0)
    done = 0
    while done < episodes:
        (o, a, r, next_o, terminated, ended), obs, _ = U.env_step(env, obs, env.action_space.sample())
        rb.add(o, a, r, next_o, terminated, ended)
        done += int(ended)
    save_minari(dataset_id, rb.episodes(), "Hopper-v5", U.D4RL_REF_SCORES["hopper"], "random")
    return dataset_id


@pytest.fixture(scope="module")
def module_sandbox(tmp_path_factory):
    """Like `sandbox`, for fixtures shared by a whole test module (e.g. one pre-trained checkpoint)."""
    root = tmp_path_factory.mktemp("module")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        yield root


@pytest.fixture
def short_episodes(monkeypatch):
    """Every environment made while the test runs has episodes of at most 20 steps, so runs of
    a few dozen steps finish episodes (Cal-QL's online start waits for one full episode length)."""
    import gymnasium

    original = gymnasium.make

    def make(env_id, **kwargs):
        return original(env_id, **{**kwargs, "max_episode_steps": 20})

    monkeypatch.setattr(gymnasium, "make", make)
    return 20
