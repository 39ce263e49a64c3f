"""Tests of wsrl_calql_sac.py: the warmup touches nothing, fine-tuning starts from exactly the
pre-trained agent (or not, with the --no-init-* ablations), the data is never sampled after
phase 1, the KL estimators, and a smoke run of every ablation flag."""

import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsrl_calql_sac as W

import wsrl_utils as U
from conftest import write_random_dataset

TINY = dict(num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=8, cql_n_actions=4, offline_eval_interval=20,
            eval_interval=30, eval_episodes=1, analysis_interval=15, heldout_size=50, analysis_actions=4)


@pytest.fixture(scope="module")
def pretrained(module_sandbox):
    """A random-policy Hopper dataset and a 20-step Cal-QL checkpoint, made once for the module."""
    write_random_dataset(W)
    summary = W.main(W.Args(dataset_id="test/hopper/random-v0", offline_steps=20, online_steps=0, **TINY))
    return module_sandbox, os.path.abspath(summary["pretrained_checkpoint"])


def run(pretrained, **overrides):
    root, ckpt = pretrained
    args = {**TINY, "pretrained_checkpoint": ckpt, "online_steps": 30, "warmup_steps": 10, **overrides}
    return W.main(W.Args(**args))


def load(path):
    return U.read_checkpoint(path, torch.device("cpu"))


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def same_optimizer(a: dict, b: dict) -> bool:
    return a["state"].keys() == b["state"].keys() and all(
        same_tensors(a["state"][i], b["state"][i]) for i in a["state"])


# ---------------------------------------------------------------------------------------------
# Warmup and initialisation
# ---------------------------------------------------------------------------------------------
def test_warmup_acts_with_the_frozen_pretrained_policy_stochastically_and_changes_nothing(pretrained, monkeypatch):
    pre = load(pretrained[1])
    acts = []
    original_act = W.Actor.act

    def act(self, obs, deterministic):
        action = original_act(self, obs, deterministic)
        if not deterministic:  # evaluation acts deterministically; training steps do not
            with torch.no_grad():
                mean = torch.tanh(self(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0])[0].numpy()
            acts.append((same_tensors(self.state_dict(), pre["actor"]), np.abs(action - mean).max()))
        return action

    monkeypatch.setattr(W.Actor, "act", act)
    summary = run(pretrained, online_steps=25, warmup_steps=25, save_model=True)  # all warmup
    assert len(acts) == 25 and all(is_pre for is_pre, _ in acts)  # the pre-trained policy acted every step
    assert np.mean([gap for _, gap in acts]) > 1e-3  # ... by sampling, not with its mean
    end = load(summary["checkpoint"])
    for key in ("actor", "critic", "critic_target"):
        assert same_tensors(end[key], pre[key]), key
    assert torch.equal(end["alpha_param"], pre["alpha_param"])
    for key in ("actor_opt", "critic_opt", "alpha_opt"):
        assert same_optimizer(end[key], pre[key]), key


@pytest.mark.parametrize("flags", [{}, {"init_policy": False}, {"init_critic": False}])
def test_fine_tuning_starts_from_the_pretrained_agent_unless_told_otherwise(pretrained, monkeypatch, flags):
    pre = load(pretrained[1])
    first = {}
    original = W.sac_update

    def sac_update(actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt, *rest, **kw):
        if not first:  # clone: the state dicts share storage with tensors the update is about to change
            clone = lambda sd: {k: v.clone() for k, v in sd.items()}
            first.update(actor=clone(actor.state_dict()), critic=clone(critic.state_dict()),
                         critic_target=clone(critic_target.state_dict()), alpha_param=alpha_param.detach().clone(),
                         actor_opt=actor_opt.state_dict(), critic_opt=critic_opt.state_dict(),
                         alpha_opt=alpha_opt.state_dict())
            for key in ("actor_opt", "critic_opt", "alpha_opt"):
                first[key] = {"state": {i: clone(s) for i, s in first[key]["state"].items()}}
        return original(actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt, *rest, **kw)

    monkeypatch.setattr(W, "sac_update", sac_update)
    run(pretrained, **flags)
    init_policy, init_critic = flags.get("init_policy", True), flags.get("init_critic", True)
    assert same_tensors(first["actor"], pre["actor"]) == init_policy
    assert same_optimizer(first["actor_opt"], pre["actor_opt"]) == init_policy
    assert (first["actor_opt"]["state"] == {}) == (not init_policy)  # a fresh Adam has no moments yet
    assert same_tensors(first["critic"], pre["critic"]) == init_critic
    assert same_tensors(first["critic_target"], pre["critic_target"]) == init_critic
    assert same_optimizer(first["critic_opt"], pre["critic_opt"]) == init_critic
    if not init_critic:
        assert same_tensors(first["critic_target"], first["critic"])  # the fresh target copies the fresh critic
    assert torch.equal(first["alpha_param"], pre["alpha_param"])  # the temperature always carries over
    assert same_optimizer(first["alpha_opt"], pre["alpha_opt"])


def test_dataset_is_never_sampled_after_phase_1(pretrained, monkeypatch):
    calls = []
    original_from_arrays, original_sample = W.ReplayBuffer.from_arrays.__func__, W.ReplayBuffer.sample

    def from_arrays(cls, data, device):
        rb = original_from_arrays(cls, data, device)
        rb.holds_offline_data = True
        return rb

    def sample(self, shape, generator, skip_newest=0):
        calls.append("offline" if getattr(self, "holds_offline_data", False) else "online")
        return original_sample(self, shape, generator, skip_newest)

    monkeypatch.setattr(W.ReplayBuffer, "from_arrays", classmethod(from_arrays))
    monkeypatch.setattr(W.ReplayBuffer, "sample", sample)
    W.main(W.Args(dataset_id="test/hopper/random-v0", offline_steps=20, online_steps=30, warmup_steps=10, **TINY))
    first_online = calls.index("online")
    assert calls[:first_online] == ["offline"] * 20 and "offline" not in calls[first_online:]
    assert calls[first_online:].count("online") == 20 + 2  # 20 updates, 2 analysis batches


# ---------------------------------------------------------------------------------------------
# The KL estimators
# ---------------------------------------------------------------------------------------------
def test_heldout_sample_is_the_pretrainings_whatever_the_online_seed(pretrained, monkeypatch):
    """One checkpoint serves several online seeds (benchmark.sh): each must hold out the same
    transitions the pre-training held out (seed 1), never ones it trained on."""
    seeds = []
    original = W.heldout_split
    monkeypatch.setattr(W, "heldout_split", lambda data, size, seed: seeds.append(seed) or original(data, size, seed))
    run(pretrained, seed=7, online_steps=12, warmup_steps=12)
    assert seeds == [1]


def constant_actor(mean, std):
    actor = W.Actor(3, len(mean), 8, 1)
    with torch.no_grad():
        actor.mean.weight.zero_()
        actor.mean.bias.copy_(torch.tensor(mean))
        actor.log_std.weight.zero_()
        actor.log_std.bias.copy_(torch.tensor(std).log())
    return actor


def test_state_independent_std_is_one_learned_number_per_action_dimension():
    """Antmaze's policy (official std_parameterization="uniform"): log std is a parameter of
    shape (A,), 0 at the start (std 1), the same for every state, trained by the actor loss."""
    torch.manual_seed(0)
    actor = W.Actor(3, 2, 8, 2, state_dependent_std=False)
    assert isinstance(actor.log_std, torch.nn.Parameter) and actor.log_std.shape == (2,)
    obs = torch.randn(5, 3)
    mean, log_std = actor(obs)
    torch.testing.assert_close(log_std, torch.zeros(5, 2))
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([math.log(0.5), 30.0]))  # 30: clipped at std 10
    torch.testing.assert_close(actor(obs)[1], torch.tensor([[math.log(0.5), math.log(10.0)]] * 5))
    # log pi of u = mean + 1 (one std away in dim 0, 0.1 std in dim 1) by hand, with tanh's correction
    u = mean + 1.0
    gauss = [-0.5 * (1.0 / 0.5) ** 2 - math.log(0.5), -0.5 * (1.0 / 10.0) ** 2 - math.log(10.0)]
    hand = [sum(g - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(x) ** 2) for g, x in zip(gauss, row))
            for row in u.tolist()]
    torch.testing.assert_close(W.tanh_gaussian_log_prob(u, mean, actor(obs)[1]), torch.tensor(hand), rtol=1e-5, atol=1e-5)
    actor.sample(obs)[1].mean().backward()
    assert actor.log_std.grad is not None and actor.log_std.grad[0] != 0


def test_a_checkpoints_std_kind_is_read_from_its_weights_even_without_the_flag():
    """Checkpoints older than --state-dependent-std do not name it: the actor's weights tell."""
    for kind in (True, False):
        actor = W.Actor(3, 2, 8, 1, state_dependent_std=kind)
        args = W.Args()
        saved = {k: getattr(W.Args(critic_hidden=8, critic_layers=1, actor_hidden=8, actor_layers=1,
                                   last_hidden_init_scale=0.01), k) for k in U.NETWORK_ARGS
                 if k not in ("state_dependent_std", "layer_norm")}
        critic = W.QEnsemble(3, 2, 8, 1, 2)
        U.use_checkpoint_network_sizes(args, {"args": saved, "actor": actor.state_dict(), "critic": critic.state_dict()})
        assert args.state_dependent_std is kind and args.actor_hidden == 8


def test_policy_kl_matches_the_closed_form_for_two_gaussians():
    m1, s1, m2, s2 = [0.3, -0.5], [0.5, 1.0], [0.0, 0.2], [0.8, 0.6]
    # KL(N1 || N2) = sum over dims of log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
    closed = sum(math.log(b / a) + (a * a + (x - y) ** 2) / (2 * b * b) - 0.5 for x, a, y, b in zip(m1, s1, m2, s2))
    torch.manual_seed(0)
    estimate = W.policy_kl(constant_actor(m1, s1), constant_actor(m2, s2), torch.randn(64, 3), samples=500)
    assert estimate == pytest.approx(closed, rel=0.02)
    assert W.policy_kl(constant_actor(m1, s1), constant_actor(m1, s1), torch.randn(8, 3)) == pytest.approx(0.0, abs=1e-6)


def test_q_softmax_kl_against_a_hand_computed_value():
    class FixedActor(nn.Module):
        def __init__(self, a):
            super().__init__()
            self.a = a

        def sample(self, obs):
            return torch.full((len(obs), 1), self.a), torch.zeros(len(obs))

    class Critic(nn.Module):  # 2 members; their mean is scale * a
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, obs, action, idx=None):
            q = self.scale * action.squeeze(1)
            return torch.stack([q - 1.0, q + 1.0])

    # actions {0 (from pi_pre), 1 (from pi)}; Q_pre = 0 for both -> p = (1/2, 1/2);
    # Q = (0, ln 3) -> q = (1/4, 3/4); KL = 1/2 ln(2) + 1/2 ln(2/3)
    kl = W.q_softmax_kl(Critic(0.0), Critic(math.log(3.0)), FixedActor(0.0), FixedActor(1.0), torch.zeros(5, 2), 2)
    assert kl == pytest.approx(0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0), rel=1e-5)
    assert W.q_softmax_kl(Critic(2.0), Critic(2.0), FixedActor(0.0), FixedActor(1.0), torch.zeros(5, 2), 2) == \
        pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------------------------------------
# Every ablation runs with updates
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [
    dict(warmup_steps=0),
    dict(warmup_policy="random"),
    dict(warmup_policy="dataset"),
    dict(init_policy=False),
    dict(init_critic=False),
    dict(offline_ratio=0.5),
    dict(utd=2),
    dict(num_min_qs=1),
    dict(max_target_backup=True),
    dict(online_algo="so2", warmup_steps=0),  # the SO2 baseline: perturbed value updates, no warmup
    dict(online_algo="calql", batch_size=16),  # first update after max(10 warmup, 16, 20-step episode)
], ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_each_ablation_runs_with_updates(pretrained, flags, short_episodes):
    summary = run(pretrained, save_model=True, **flags)
    pre, end = load(pretrained[1]), load(summary["checkpoint"])
    assert not same_tensors(end["critic"], pre["critic"]) and not same_tensors(end["actor"], pre["actor"])
    assert [s for s, _, _ in summary["evals"]] == [0, 30]


def test_policy_freeze_trains_the_critic_only(pretrained):
    summary = run(pretrained, save_model=True, policy_freeze_steps=100)  # longer than the run
    pre, end = load(pretrained[1]), load(summary["checkpoint"])
    assert same_tensors(end["actor"], pre["actor"]) and not same_tensors(end["critic"], pre["critic"])


def test_analysis_logs_kl_and_q_from_the_switch(pretrained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run(pretrained)
    events = EventAccumulator(summary["run_dir"]).Reload()
    for tag in ("analysis/q_heldout", "analysis/td_error_heldout", "analysis/policy_kl_heldout",
                "analysis/q_softmax_kl_heldout"):
        assert [e.step for e in events.Scalars(tag)] == [0, 15, 30], tag
    assert events.Scalars("analysis/policy_kl_heldout")[0].value == pytest.approx(0.0, abs=1e-6)  # at the switch
    for tag in ("analysis/q_online", "analysis/policy_kl_online", "analysis/q_softmax_kl_online"):
        assert [e.step for e in events.Scalars(tag)] == [15, 30], tag


def test_help_lists_the_ablation_flags():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "wsrl_calql_sac.py", "--help"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(W.__file__)), timeout=60).stdout
    for flag in ("--warmup-steps", "--warmup-policy", "--no-init-policy", "--no-init-critic", "--policy-freeze-steps",
                 "--offline-ratio", "--utd", "--num-qs", "--num-min-qs", "--max-target-backup", "--online-algo",
                 "--pretrained-checkpoint", "--offline-steps", "--online-steps"):
        assert flag in out, flag


@pytest.mark.parametrize("phase, cut_at", [("offline", 130), ("online", 200 + 60)])
def test_a_run_interrupted_and_resumed_equals_the_run_uninterrupted(sandbox, monkeypatch, phase, cut_at):
    """Cut during Cal-QL pre-training or during SAC fine-tuning (after the warmup), then --resume:
    the same weights and evaluations as the run never stopped (pi_pre, Q_pre and buffer kept)."""
    write_random_dataset(W, episodes=20)
    flags = dict(TINY, dataset_id="test/hopper/random-v0", offline_steps=200, online_steps=150, warmup_steps=40,
                 resume_interval=50, save_model=True, seed=5)
    whole = W.main(W.Args(**flags))
    name = "calql_update" if phase == "offline" else "sac_update"
    real, calls = getattr(W, name), {"n": 0}

    def update_then_interrupt(*a, **kw):
        calls["n"] += 1
        if calls["n"] == (cut_at if phase == "offline" else cut_at - 200):
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(W, name, update_then_interrupt)
    cut = W.main(W.Args(**flags))
    monkeypatch.setattr(W, name, real)
    assert torch.load(os.path.join(cut["run_dir"], "resume.pt"), weights_only=False)["phase"] == phase
    # it was cut: offline, no fine-tuned agent at all; online, one marked incomplete
    assert ("checkpoint" not in cut) if phase == "offline" else (load(cut["checkpoint"])["complete"] is False)
    resumed = W.main(W.Args(resume=cut["run_dir"]))
    assert resumed["evals"] == whole["evals"] and resumed["offline_evals"] == whole["offline_evals"]
    a, b = load(whole["checkpoint"]), load(resumed["checkpoint"])
    for key in ("actor", "critic", "critic_target"):
        assert same_tensors(a[key], b[key]), key


@pytest.mark.parametrize("algo, noise", [("so2", (math.sqrt(0.3), 0.6)), ("sac", None)])
def test_so2_hands_its_noise_to_every_online_target_and_sac_none(pretrained, short_episodes, monkeypatch, algo, noise):
    """--online-algo so2: every TD target of phase 3 (updates and the analysis/ TD error) backs up
    a perturbed next action, with the paper's variance 0.3 and clip 0.6; plain SAC never does."""
    seen, original = [], W.td_target

    def td_target(critic_target, actor, alpha_param, batch, args, max_backup, noise=None):
        seen.append(noise)
        return original(critic_target, actor, alpha_param, batch, args, max_backup, noise)

    monkeypatch.setattr(W, "td_target", td_target)
    run(pretrained, online_algo=algo, warmup_steps=0)
    assert len(seen) >= 30 - 8 and set(seen) == {noise}  # an update per step from step 9 (a batch of 8), the analysis
