"""tools/make_datasets.py: behaviour policies shipped with their provenance, and D4RL-style
Minari datasets made from them (exact size, D4RL's reference scores, loadable by Minari and by
every script, returns that match the policy's provenance)."""

import glob
import json
import os
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_datasets as M  # noqa: E402
import ship_pretrained  # noqa: E402
import sac_fast as S  # noqa: E402
import wsrl_utils as U  # noqa: E402


@pytest.fixture(scope="module")
def tiny_policies(module_sandbox):
    """A policy dir with a 'medium' and an 'expert' Hopper actor from tiny sac_fast runs (their
    quality does not matter here; the shipped policies are tested below)."""
    policy_dir = str(module_sandbox / "policies")
    for level, seed in (("medium", 1), ("expert", 2)):
        summary = S.main(S.Args(seed=seed, online_steps=60, learning_starts=30, num_qs=2, critic_hidden=16,
                                actor_hidden=16, batch_size=16, eval_interval=60, eval_episodes=1, save_actors=True))
        M.ship(M.Ship(actor=summary["actor"], level=level, episodes=2, command="test run", policy_dir=policy_dir))
    return policy_dir


def test_ship_writes_the_actor_and_its_provenance(tiny_policies):
    with open(os.path.join(tiny_policies, "hopper-medium.json")) as f:
        p = json.load(f)
    assert p["env_id"] == "Hopper-v5" and p["level"] == "medium" and p["command"] == "test run"
    assert p["training_steps"] == 60 and p["seed"] == 1 and p["config"]["num_qs"] == 2
    assert p["deterministic_return"]["episodes"] == 2 and p["stochastic_return"]["episodes"] == 2
    lo, hi = U.D4RL_REF_SCORES["hopper"]
    det = p["deterministic_return"]
    assert det["normalized"] == pytest.approx(100 * (det["mean"] - lo) / (hi - lo))
    actor, _ = M.load_policy(tiny_policies, "hopper", "medium")
    assert actor.trunk[0].in_features == 11 and actor.mean.out_features == 3


def test_make_writes_a_dataset_of_exactly_the_size_asked(sandbox, tiny_policies):
    import minari

    made = M.make(M.Make(envs=["hopper"], size=2_500, num_envs=4, policy_dir=tiny_policies))
    stats = made["local/hopper/medium-v0"]
    ds = minari.load_dataset("local/hopper/medium-v0")
    assert ds.total_steps == 2_500 == stats["transitions"]
    assert ds.env_spec.id == "Hopper-v5" and ds.observation_space.shape == (11,) and ds.action_space.shape == (3,)
    assert (ds.storage.metadata["ref_min_score"], ds.storage.metadata["ref_max_score"]) == U.D4RL_REF_SCORES["hopper"]
    episodes = list(ds.iterate_episodes())
    assert sum(len(e.rewards) for e in episodes) == 2_500
    for e in episodes:  # every episode ends once: terminated (fell) or truncated (time limit or cut)
        ends = np.asarray(e.terminations) | np.asarray(e.truncations)
        assert ends[-1] and not ends[:-1].any()
    # the scripts read it as they read the hub's mujoco/hopper/medium-v0: same env, same scores
    data, metadata = S.load_offline_data("local/hopper/medium-v0", "locomotion")
    assert data["observations"].shape == (2_500, 11)
    assert S.reference_scores("Hopper-v5", metadata) == S.reference_scores("Hopper-v5", {})  # the hub's fallback
    # the actions are the policy's stochastic ones: not all equal to tanh(mean)
    actor, _ = M.load_policy(tiny_policies, "hopper", "medium")
    with torch.no_grad():
        mean_action = torch.tanh(actor(torch.as_tensor(data["observations"][:200]))[0]).numpy()
    assert np.abs(mean_action - data["actions"][:200]).mean() > 1e-3


def test_existing_ids_are_skipped_unless_overwrite(sandbox, tiny_policies):
    M.make(M.Make(envs=["hopper"], size=500, num_envs=2, policy_dir=tiny_policies))
    assert M.make(M.Make(envs=["hopper"], size=800, num_envs=2, policy_dir=tiny_policies))["local/hopper/medium-v0"] is None
    stats = M.make(M.Make(envs=["hopper"], size=800, num_envs=2, overwrite=True, policy_dir=tiny_policies))["local/hopper/medium-v0"]
    assert stats["transitions"] == 800


def test_medium_expert_is_medium_then_expert(sandbox, tiny_policies):
    made = M.make(M.Make(envs=["hopper"], levels=["medium", "medium-expert"], size=600, num_envs=3, policy_dir=tiny_policies))
    assert made["local/hopper/medium-expert-v0"]["transitions"] == 1_200
    medium, _ = S.load_offline_data("local/hopper/medium-v0", "locomotion")
    both, _ = S.load_offline_data("local/hopper/medium-expert-v0", "locomotion")
    np.testing.assert_array_equal(both["observations"][:600], medium["observations"])  # the same medium episodes
    assert not np.array_equal(both["observations"][600:], medium["observations"])


def test_missing_policy_says_how_to_make_one(sandbox, tiny_policies):
    with pytest.raises(SystemExit, match="tools/make_datasets.py ship"):
        M.make(M.Make(envs=["walker2d"], policy_dir=tiny_policies))
    assert not os.path.exists(os.path.join(sandbox, "minari", "local", "walker2d"))  # nothing half-made


def test_shipped_policies_give_datasets_of_their_stated_quality(sandbox):
    """Every policy in policies/ makes data whose whole-episode mean return lies within the band
    of its provenance (stochastic return over 20 episodes): 3 standard errors plus 10%."""
    shipped = sorted(glob.glob(os.path.join(M.POLICY_DIR, "*.json")))
    assert any(p.endswith("halfcheetah-medium.json") for p in shipped), "the HalfCheetah medium policy is missing"
    for path in shipped:
        with open(path) as f:
            p = json.load(f)
        env = os.path.basename(path).split("-")[0]
        stats = M.make(M.Make(envs=[env], levels=[p["level"]], size=8_000, num_envs=8))[f"local/{env}/{p['level']}-v0"]
        assert stats["whole_episodes"] >= 5, path
        ref = p["stochastic_return"]
        band = 3 * ref["std"] / np.sqrt(stats["whole_episodes"]) + 0.1 * abs(ref["mean"])
        assert abs(stats["mean_return"] - ref["mean"]) <= band, (path, stats, ref)


def test_ship_pretrained_copies_the_checkpoint_with_its_provenance(sandbox):
    import filecmp

    import calql_offline

    from conftest import write_random_dataset

    write_random_dataset(calql_offline)
    ck = calql_offline.main(calql_offline.Args(dataset_id="test/hopper/random-v0", offline_steps=15, online_steps=0,
                                               num_qs=3, critic_hidden=16, actor_hidden=16, batch_size=16,
                                               cql_n_actions=2, eval_episodes=1))["pretrained_checkpoint"]
    p = ship_pretrained.ship(ck, "hopper-random-calql", "the command", episodes=2, out_dir=str(sandbox / "pre"))
    assert filecmp.cmp(ck, sandbox / "pre" / "hopper-random-calql.pt", shallow=False)
    with open(sandbox / "pre" / "hopper-random-calql.json") as f:
        assert json.load(f) == p
    assert p["gradient_steps"] == 15 and p["dataset_id"] == "test/hopper/random-v0" and p["env_id"] == "Hopper-v5"
    assert p["networks"]["num_qs"] == 3 and p["deterministic_return"]["episodes"] == 2 and p["command"] == "the command"
    with pytest.raises(SystemExit, match="not a checkpoint"):
        torch.save({"x": 1}, sandbox / "bad.pt")
        ship_pretrained.ship(str(sandbox / "bad.pt"), "x", "c", out_dir=str(sandbox / "pre"))


def test_shipped_pretrained_agents_match_their_provenance():
    """pretrained/*.pt are what their .json say: the steps, the dataset (one this tool makes), the
    networks; and they load into the scripts' networks."""
    shipped = sorted(glob.glob(os.path.join(ship_pretrained.PRETRAINED_DIR, "*.json")))
    assert any(p.endswith("halfcheetah-medium-iql.json") for p in shipped), "the IQL agent of demo.sh is missing"
    for path in shipped:
        with open(path) as f:
            p = json.load(f)
        ckpt = torch.load(path[:-5] + ".pt", map_location="cpu", weights_only=False)
        assert ckpt["format"] == U.CHECKPOINT_FORMAT and ckpt["step"] == p["gradient_steps"], path
        # a dataset one of the tools makes: (observation, action) sizes of its environment
        obs_dim, act_dim = {"local/halfcheetah/medium-v0": (17, 6), "local/pointmaze/umaze-v0": (4, 2)}[p["dataset_id"]]
        assert ckpt["args"]["dataset_id"] == p["dataset_id"]
        assert ("log_std" in ckpt["actor"]) == ("pointmaze" in p["dataset_id"])  # the mazes: one std per dimension
        assert all(ckpt["args"][k] == v for k, v in p["networks"].items())
        actor = S.Actor(obs_dim, act_dim, p["networks"]["actor_hidden"], p["networks"]["actor_layers"],
                        state_dependent_std="log_std.weight" in ckpt["actor"])
        actor.load_state_dict(ckpt["actor"])
        critic = S.QEnsemble(obs_dim, act_dim, p["networks"]["critic_hidden"], p["networks"]["critic_layers"],
                             p["networks"]["num_qs"])
        critic.load_state_dict(ckpt["critic"])
