"""Tests of jsrl.py: the roll-in curriculum (schedule and geometric lengths, by hand and over
many draws), the frozen guide, the initialisation from the checkpoint, and a smoke run."""

import os

import numpy as np
import pytest
import torch

import jsrl as J

import wsrl_utils as U
import sac_fast

TINY = dict(batch_size=32, eval_interval=60, eval_episodes=1)


@pytest.fixture(scope="module")
def checkpoint(module_sandbox):
    """A small SAC checkpoint on Hopper-v5 (sac_fast.py --save-model): the guide of these tests."""
    summary = sac_fast.main(sac_fast.Args(online_steps=40, learning_starts=20, num_qs=3, critic_hidden=32,
                                          actor_hidden=32, batch_size=32, eval_interval=40, eval_episodes=1,
                                          save_model=True))
    return os.path.abspath(summary["checkpoint"])


def load(path):
    return U.read_checkpoint(path, torch.device("cpu"))


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# The curriculum, by hand
# ---------------------------------------------------------------------------------------------
def test_rollin_probability_decays_linearly_to_zero_and_stays_there():
    assert J.rollin_probability(0, 0.5, 100_000) == 0.5
    assert J.rollin_probability(25_000, 0.5, 100_000) == pytest.approx(0.375)
    assert J.rollin_probability(50_000, 0.5, 100_000) == pytest.approx(0.25)
    assert J.rollin_probability(100_000, 0.5, 100_000) == 0.0
    assert J.rollin_probability(250_000, 0.5, 100_000) == 0.0  # never negative
    assert J.rollin_probability(0, 0.5, 0) == 0.0  # no decay window: no roll-ins


def test_rollin_lengths_are_geometric_with_mean_100():
    rng = np.random.default_rng(0)
    n = 20_000
    lengths = np.array([J.draw_rollin_length(rng, 1.0, 0.99) for _ in range(n)])
    assert lengths.min() >= 1  # with probability 1 there is always a roll-in of at least one step
    # mean 1 / (1 - 0.99) = 100, std 99.5, so the mean of 20,000 draws has std 0.70:
    # a tolerance of 3 is more than 4 standard errors
    assert abs(lengths.mean() - 100.0) < 3.0
    # P(H = 1) = 1 - q = 0.01 and P(H > 100) = 0.99^100 = 0.366 (binomial std 0.0007 and 0.0034)
    assert abs((lengths == 1).mean() - 0.01) < 0.004
    assert abs((lengths > 100).mean() - 0.99 ** 100) < 0.015


def test_rollin_happens_with_the_given_probability_and_q_sets_the_length():
    rng = np.random.default_rng(1)
    draws = np.array([J.draw_rollin_length(rng, 0.3, 0.9) for _ in range(20_000)])
    assert abs((draws > 0).mean() - 0.3) < 0.015  # binomial std 0.0032
    assert abs(draws[draws > 0].mean() - 10.0) < 0.6  # 1 / (1 - 0.9); std of the mean ~0.12
    assert all(J.draw_rollin_length(rng, 1.0, 0.0) == 1 for _ in range(100))  # q = 0: one guide step
    assert all(J.draw_rollin_length(rng, 0.0, 0.99) == 0 for _ in range(100))


# ---------------------------------------------------------------------------------------------
# The script
# ---------------------------------------------------------------------------------------------
def test_guide_rolls_in_never_changes_and_never_evaluates(checkpoint, monkeypatch):
    pre = load(checkpoint)
    calls = []  # (actor object, deterministic) for every action taken
    original_act = J.Actor.act

    def act(self, obs, deterministic):
        calls.append((self, deterministic))
        return original_act(self, obs, deterministic)

    monkeypatch.setattr(J.Actor, "act", act)
    # every episode starts with a roll-in of mean length 5, so guide and learner both act
    summary = J.main(J.Args(pretrained_checkpoint=checkpoint, online_steps=120, jsrl_initial_prob=1.0,
                            jsrl_continue_prob=0.8, save_model=True, **TINY))
    guide = summary["guide"]
    assert same_tensors(guide.state_dict(), pre["actor"])  # the guide is the pre-trained actor, unchanged
    assert not any(p.requires_grad for p in guide.parameters())
    end = load(summary["checkpoint"])
    assert not same_tensors(end["actor"], pre["actor"])  # ... while the learner was trained
    training = [who for who, det in calls if not det]
    assert len(training) == 120
    guide_acts = sum(who is guide for who in training)
    logged = sum(g for _, g, _ in summary["rollins"])
    assert logged > 0 and guide_acts >= logged  # the unfinished last episode may add guide steps
    assert guide_acts < 120  # the learner rolled out
    assert not any(who is guide for who, det in calls if det)  # evaluation: the learner alone
    # an episode's guide steps are its first ones: no roll-in is longer than its episode
    assert all(0 < g <= length for _, g, length in summary["rollins"])


def test_no_rollin_once_the_probability_has_decayed(checkpoint):
    summary = J.main(J.Args(pretrained_checkpoint=checkpoint, online_steps=200, jsrl_initial_prob=1.0,
                            jsrl_decay_steps=60, jsrl_continue_prob=0.8, **TINY))
    starts = [(end - length, g) for end, g, length in summary["rollins"]]
    assert any(s < 60 and g > 0 for s, g in starts)  # p = 1 at step 0: the first episode has one
    late = [g for s, g in starts if s >= 60]
    assert late and all(g == 0 for g in late)


@pytest.mark.parametrize("flags", [{}, {"init_critic": False}, {"init_policy": False}])
def test_learner_starts_from_the_checkpoint_unless_told_otherwise(checkpoint, monkeypatch, flags):
    pre = load(checkpoint)
    first = {}
    original = J.sac_update

    calls = []

    def sac_update(actor, critic, critic_target, alpha_param, *rest, **kw):
        calls.append(1)
        if not first:
            first.update(actor={k: v.clone() for k, v in actor.state_dict().items()},
                         critic={k: v.clone() for k, v in critic.state_dict().items()},
                         critic_target={k: v.clone() for k, v in critic_target.state_dict().items()},
                         alpha_param=alpha_param.detach().clone())
        return original(actor, critic, critic_target, alpha_param, *rest, **kw)

    monkeypatch.setattr(J, "sac_update", sac_update)
    summary = J.main(J.Args(pretrained_checkpoint=checkpoint, online_steps=40, **TINY, **flags))
    assert len(calls) == 40 - 32  # one update per step once the buffer holds one batch (32), as the official loop
    assert same_tensors(first["actor"], pre["actor"]) == flags.get("init_policy", True)
    assert same_tensors(first["critic"], pre["critic"]) == flags.get("init_critic", True)
    if flags.get("init_critic", True):
        assert same_tensors(first["critic_target"], pre["critic_target"])
    else:  # a fresh target copies the fresh critic
        assert same_tensors(first["critic_target"], first["critic"])
    assert torch.equal(first["alpha_param"], pre["alpha_param"])
    assert same_tensors(summary["guide"].state_dict(), pre["actor"])  # the guide is always the checkpoint's
    assert np.isfinite(summary["first_losses"]["qf_loss"])


@pytest.mark.parametrize("dataset_id, flag, expected", [("D4RL/antmaze/umaze-v1", None, (1, True)),
                                                         ("mujoco/hopper/medium-v0", None, (2, False)),
                                                         ("D4RL/antmaze/umaze-v1", 2, (2, True))])
def test_min_of_one_subsampled_critic_on_antmaze_as_rlpd(checkpoint, tmp_path, monkeypatch, dataset_id, flag, expected):
    """JSRL runs with RLPD's settings in the paper: the target's min over 1 sub-sampled critic and
    the max-target backup on antmaze, 2 and a plain backup elsewhere; an explicit --num-min-qs wins."""
    ckpt = torch.load(checkpoint, weights_only=False)
    ckpt["args"]["dataset_id"] = dataset_id  # the domain comes from the data the guide was trained on
    path = str(tmp_path / "guide.pt")
    torch.save(ckpt, path)
    seen = set()
    original = J.sac_update

    def sac_update(*a, **kw):
        args = kw["args"] if "args" in kw else a[8]  # (actor, critic, target, alpha, 3 optimizers, batch, args, ...)
        seen.add((args.num_min_qs, args.max_target_backup))
        return original(*a, **kw)

    monkeypatch.setattr(J, "sac_update", sac_update)
    J.main(J.Args(pretrained_checkpoint=path, online_steps=40, num_min_qs=flag, **TINY))
    assert seen == {expected}


def test_missing_checkpoint_fails_fast_with_a_recipe(sandbox):
    with pytest.raises(SystemExit, match="--pretrained-checkpoint"):
        J.main(J.Args())
    with pytest.raises(SystemExit, match="no checkpoint at"):
        J.main(J.Args(pretrained_checkpoint="nowhere.pt"))
    with pytest.raises(SystemExit, match="continue-prob"):
        J.main(J.Args(pretrained_checkpoint="nowhere.pt", jsrl_continue_prob=1.0))


def test_a_run_interrupted_and_resumed_equals_the_run_uninterrupted(sandbox, checkpoint, monkeypatch):
    """Cut mid-run, then --resume: the same weights, evaluations and roll-ins as a run never stopped
    (the roll-in generator and the drawn roll-in of the next episode are kept too)."""
    flags = dict(TINY, pretrained_checkpoint=checkpoint, online_steps=400, jsrl_initial_prob=1.0, eval_interval=100,
                 resume_interval=120, save_model=True, seed=7)
    whole = J.main(J.Args(**flags))
    real, calls = J.sac_update, {"n": 0}

    def update_then_interrupt(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 330:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(J, "sac_update", update_then_interrupt)
    cut = J.main(J.Args(**flags))
    monkeypatch.setattr(J, "sac_update", real)
    assert torch.load(cut["checkpoint"], weights_only=False)["complete"] is False  # it was cut
    resumed = J.main(J.Args(resume=cut["run_dir"]))
    assert resumed["evals"] == whole["evals"] and resumed["rollins"] == whole["rollins"]
    a, b = torch.load(whole["checkpoint"], weights_only=False), torch.load(resumed["checkpoint"], weights_only=False)
    for key in ("actor", "critic", "critic_target"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
