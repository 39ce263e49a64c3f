"""Tests of td3c.py: TD3's target, TD3+BC's and TD3-C's actor losses, the Lagrange multiplier and
dQ/da clipping against values worked out by hand; the state normalisation; short runs through
both phases with each online learner. Whether TD3-C prevents the collapse is for benchmarks, not
for timed tests."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

import td3c as T

import wsrl_utils as U
from conftest import write_random_dataset

TINY = dict(offline_steps=100, online_steps=300, critic_hidden=32, actor_hidden=32, batch_size=32, min_replay_size=50,
            offline_eval_interval=100, eval_interval=300, eval_episodes=1, analysis_interval=100, heldout_size=50)


class LinearCritic(nn.Module):
    """Two critics linear in the action: Q_i(s, a) = w_i . a + c_i, whatever s. dQ_1/da = w_1."""

    def __init__(self, w, c):
        super().__init__()
        self.w, self.c = torch.tensor(w), torch.tensor(c)

    def forward(self, obs, action, idx=None):
        return (action @ self.w.T).T + self.c.unsqueeze(1)  # (2, B)


def actions_and_batch():
    # B = 2 states, A = 2 action dimensions
    actions = torch.tensor([[0.5, -0.5], [0.2, 0.4]], requires_grad=True)  # pi(s)
    target_actions = torch.tensor([[0.4, -0.5], [0.2, 0.1]])  # pi'(s)
    batch = {"obs": torch.zeros(2, 3), "actions": torch.tensor([[0.0, 0.0], [1.0, 0.0]])}  # the data's a
    return actions, target_actions, batch


# ---------------------------------------------------------------------------------------------
# Actor losses
# ---------------------------------------------------------------------------------------------
def test_td3bc_actor_loss_weighs_q_by_a_constant_lambda():
    critic = LinearCritic([[2.0, -1.0], [0.0, 0.0]], [3.0, 0.0])
    actions, target_actions, batch = actions_and_batch()
    args = T.Args(bc_alpha=2.5)
    terms = T.actor_loss(critic, batch, actions, target_actions, torch.zeros(()), "td3bc", 0.0, args)
    # Q_1 = 2 a_0 - a_1 + 3: 2(0.5) + 0.5 + 3 = 4.5 and 2(0.2) - 0.4 + 3 = 3.0; mean 3.75, mean|Q_1| 3.75
    lam = 2.5 / 3.75
    # (pi - a)^2 over batch and action dims: (0.25 + 0.25 + 0.64 + 0.16) / 4 = 0.325
    assert float(terms["td3bc_lambda"]) == pytest.approx(lam)
    assert float(terms["bc_loss"]) == pytest.approx(0.325)
    assert terms["actor_loss"].item() == pytest.approx(-lam * 3.75 + 0.325)
    # gradient w.r.t. pi(s): -lambda w_1 / B + 2 (pi - a) / (B A); lambda held constant (were it not,
    # the gradient would also carry d lambda / d pi, which is not 0 for this critic)
    (grad,) = torch.autograd.grad(terms["actor_loss"], actions)
    expected = -lam * torch.tensor([2.0, -1.0]) / 2 + 2 * (actions.detach() - batch["actions"]) / 4
    torch.testing.assert_close(grad, expected)


def test_td3c_actor_loss_is_minus_q_plus_lambda_times_d_and_leaves_the_multiplier_alone():
    critic = LinearCritic([[0.5, -0.25], [9.0, 9.0]], [1.0, -50.0])  # the second critic plays no part
    actions, target_actions, batch = actions_and_batch()
    p = torch.tensor(T.inverse_softplus(3.0), requires_grad=True)  # lambda = 3
    terms = T.actor_loss(critic, batch, actions, target_actions, p, "td3c", 1.0, T.Args())
    # Q_1: 0.25 + 0.125 + 1 = 1.375 and 0.1 - 0.1 + 1 = 1.0, mean 1.1875
    # D: ((0.1)^2 + 0) and (0 + (0.3)^2), mean (0.01 + 0.09) / 2 = 0.05
    assert float(terms["policy_change"]) == pytest.approx(0.05)
    assert terms["actor_loss"].item() == pytest.approx(-1.1875 + 3.0 * 0.05)
    grad_actions, grad_p = torch.autograd.grad(terms["actor_loss"], [actions, p], allow_unused=True)
    assert grad_p is None  # lambda is a constant of the actor's step
    expected = -torch.tensor([0.5, -0.25]) / 2 + 2 * 3.0 * (actions.detach() - target_actions) / 2
    torch.testing.assert_close(grad_actions, expected)


def test_td3_actor_loss_is_minus_q_without_constraint_or_bc():
    critic = LinearCritic([[0.5, -0.25], [0.0, 0.0]], [1.0, 0.0])
    actions, target_actions, batch = actions_and_batch()
    terms = T.actor_loss(critic, batch, actions, target_actions, torch.tensor(5.0), "td3", 0.0, T.Args())
    assert terms["actor_loss"].item() == pytest.approx(-1.1875)
    assert "bc_loss" not in terms and float(terms["policy_change"]) == pytest.approx(0.05)  # D is logged all the same


def test_dqda_clipping_clips_each_component_of_the_policy_gradient():
    critic = LinearCritic([[5.0, -0.3], [0.0, 0.0]], [0.0, 0.0])  # dQ_1/da = (5, -0.3)
    torch.manual_seed(0)
    actor = T.DeterministicActor(3, 2, 16, 2)
    obs = torch.randn(4, 3)
    batch = {"obs": obs}
    grads = {}
    for clip in (1.0, 0.0):
        actor.zero_grad()
        actions = actor(obs)
        terms = T.actor_loss(critic, batch, actions, actions.detach(), torch.zeros(()), "td3", clip, T.Args())
        assert terms["actor_loss"].item() == pytest.approx(-float((actions.detach() @ critic.w[0]).mean()), rel=1e-5)  # -Q either way
        assert float(terms["dqda_abs"]) == pytest.approx(2.65)  # (5 + 0.3) / 2, before clipping
        terms["actor_loss"].backward()
        grads[clip] = [p.grad.clone() for p in actor.parameters()]
    for slope, clip in (([1.0, -0.3], 1.0), ([5.0, -0.3], 0.0)):  # the DPG with the clipped slope, by hand
        actor.zero_grad()
        (-(torch.tensor(slope) * actor(obs)).sum(-1).mean()).backward()
        for got, want in zip(grads[clip], [p.grad for p in actor.parameters()]):
            torch.testing.assert_close(got, want)
    assert not all(torch.allclose(a, b) for a, b in zip(grads[1.0], grads[0.0]))


def test_update_actor_changes_only_the_actor():
    torch.manual_seed(0)
    actor, critic = T.DeterministicActor(3, 2, 16, 2), T.QEnsemble(3, 2, 16, 2, 2)
    target = T.DeterministicActor(3, 2, 16, 2)
    p = torch.tensor(0.0, requires_grad=True)
    critic_before = [w.clone() for w in critic.parameters()]
    actor_before = [w.clone() for w in actor.parameters()]
    batch = {"obs": torch.randn(8, 3), "actions": torch.rand(8, 2) * 2 - 1}
    info = T.update_actor(actor, target, critic, p, torch.optim.Adam(actor.parameters(), lr=1e-2), batch, "td3c", 1.0,
                          T.Args())
    assert p.grad is None and all(w.grad is None for w in critic.parameters())
    assert all(torch.equal(a, b) for a, b in zip(critic_before, critic.parameters()))
    assert not any(torch.equal(a, b) for a, b in zip(actor_before, actor.parameters()))
    assert not any(v.requires_grad for v in info.values())
    # D is measured against the TARGET policy (a different network here): anchoring on the actor
    # itself would make it 0 and TD3-C's constraint void
    with torch.no_grad():
        expected = (actor(batch["obs"]) - target(batch["obs"])).pow(2).sum(-1).mean()
    assert float(info["policy_change"]) > 1e-4 and float(expected) > 1e-4


# ---------------------------------------------------------------------------------------------
# The multiplier
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d, direction", [(1e-3, +1), (0.0, -1)])
def test_lagrange_multiplier_grows_while_the_constraint_is_violated(d, direction):
    p = torch.tensor(T.inverse_softplus(1.0), requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-2)
    assert T.lagrange_loss(p, torch.tensor(d), 1e-5).item() == pytest.approx(1e-5 - d)  # lambda (eps - D), lambda = 1
    T.update_lagrange(p, opt, torch.tensor(d), 1e-5)
    assert direction * (float(torch.nn.functional.softplus(p.detach())) - 1.0) > 1e-3


# ---------------------------------------------------------------------------------------------
# The critic's target
# ---------------------------------------------------------------------------------------------
class RecordingCritic(nn.Module):
    """Q'_1 = 5, Q'_2 = 3 for the first next state, 1 and 4 for the second (0 for any other);
    records the actions it is asked about."""

    def forward(self, obs, action, idx=None):
        self.actions = action.clone()
        q = torch.zeros(2, len(action))
        q[:, :2] = torch.tensor([[5.0, 1.0], [3.0, 4.0]])
        return q


def target(pi_next, std, clip=0.5):
    torch.manual_seed(0)
    critic, n = RecordingCritic(), len(pi_next)
    batch = {"next_obs": torch.zeros(n, 4), "rewards": torch.arange(1.0, n + 1), "terminals": torch.zeros(n)}
    batch["terminals"][1] = 1.0
    y = T.td3_target(critic, lambda s: pi_next, batch, T.Args(target_noise=std, target_noise_clip=clip, gamma=0.5))
    return y, critic.actions


def test_target_is_the_min_of_both_target_critics_and_terminals_do_not_bootstrap():
    y, _ = target(torch.zeros(2, 3), 0.2)
    # min(5, 3) = 3 for the first, which bootstraps; the second is terminal: its reward alone
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.5 * 3.0, 2.0]))


def test_target_policy_smoothing_clips_the_noise_and_the_action():
    pi_next = torch.tensor([0.9, -0.2]).repeat(64, 1)
    _, actions = target(pi_next, 1e6)  # a huge std: every noise sample is clipped to +-0.5
    torch.testing.assert_close((actions[:, 1] - pi_next[:, 1]).abs(), torch.full((64,), 0.5))  # in the box
    # 0.9 - 0.5 = 0.4, and 0.9 + 0.5 is cut to the box's edge 1.0: both happen among 64 draws
    assert torch.isclose(actions[:, 0], torch.tensor(0.4)).any() and (actions[:, 0] == 1.0).any()
    assert torch.isclose(actions[:, 0], torch.tensor(0.4)).logical_or(actions[:, 0] == 1.0).all()
    _, actions = target(pi_next, 1e-9)  # a tiny std: the target policy's own action
    torch.testing.assert_close(actions, pi_next)


def test_actor_steps_follow_every_second_critic_step():
    assert T.actor_step_pattern(0, 1, 2) == (False,) and T.actor_step_pattern(1, 1, 2) == (True,)
    assert T.actor_step_pattern(0, 4, 2) == (False, True, False, True)
    assert T.actor_step_pattern(5, 3, 1) == (True, True, True)


def test_td3_update_moves_the_targets_only_with_the_actor():
    torch.manual_seed(0)
    actor, critic = T.DeterministicActor(3, 2, 16, 2), T.QEnsemble(3, 2, 16, 2, 2)
    actor_target, critic_target = T.DeterministicActor(3, 2, 16, 2), T.QEnsemble(3, 2, 16, 2, 2)
    p = torch.tensor(0.0, requires_grad=True)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (actor, critic)] + [torch.optim.Adam([p], lr=1e-2)]
    batch = {"obs": torch.randn(16, 3), "actions": torch.rand(16, 2) * 2 - 1, "rewards": torch.randn(16),
             "next_obs": torch.randn(16, 3), "terminals": torch.zeros(16)}
    args = T.Args(batch_size=8)
    before = [w.clone() for w in list(actor_target.parameters()) + list(critic_target.parameters())]
    info = T.td3_update(actor, actor_target, critic, critic_target, p, *opts, batch, args, "td3c", 1.0, (False, False))
    assert "actor_loss" not in info and float(p.detach()) == 0.0  # two critic steps, no actor step, no multiplier step
    after = list(actor_target.parameters()) + list(critic_target.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    info = T.td3_update(actor, actor_target, critic, critic_target, p, *opts, batch, args, "td3c", 1.0, (False, True))
    assert "actor_loss" in info and float(p.detach()) != 0.0
    assert not any(torch.equal(a, b) for a, b in zip(before, after))


# ---------------------------------------------------------------------------------------------
# State normalisation and buffers
# ---------------------------------------------------------------------------------------------
def test_state_statistics_are_the_datasets_with_std_plus_1e3():
    obs = np.array([[0.0, 10.0], [2.0, 10.0]])
    mean, std = T.state_statistics(obs, True)
    np.testing.assert_allclose(mean, [1.0, 10.0])
    np.testing.assert_allclose(std, [1.001, 0.001], rtol=1e-6)  # a constant feature: std 1e-3, not 0
    mean, std = T.state_statistics(obs, False)
    np.testing.assert_array_equal(mean, [0.0, 0.0])
    np.testing.assert_array_equal(std, [1.0, 1.0])


def test_normalized_states_wrapper_applies_the_statistics_on_reset_and_step():
    raw = T.build_env("Hopper-v5", 0)
    env = T.NormalizedStates(T.build_env("Hopper-v5", 0), np.full(11, 0.5, np.float32), np.full(11, 2.0, np.float32))
    o_raw, _ = raw.reset(seed=3)
    o, _ = env.reset(seed=3)
    np.testing.assert_allclose(o, (o_raw - 0.5) / 2.0)
    action = np.zeros(3, np.float32)
    np.testing.assert_allclose(env.step(action)[0], (raw.step(action)[0] - 0.5) / 2.0)


def test_sample_newest_draws_only_the_online_part():
    rb = T.ReplayBuffer(1, 1, capacity=10, device=torch.device("cpu"))
    for r in range(8):  # 6 "offline" transitions, then 2 online ones
        rb.add(np.zeros(1), np.zeros(1), float(r), np.zeros(1), False, False)
    drawn = T.sample_newest(rb, 2, 500, torch.Generator().manual_seed(0))["rewards"]
    assert set(drawn.tolist()) == {6.0, 7.0}


def test_settings_that_mean_nothing_are_refused():
    with pytest.raises(SystemExit, match="choose one"):
        T.main(T.Args(offline_ratio=0.5, offline_data_in_buffer=True))
    with pytest.raises(SystemExit, match="--td3c-epsilon is 0"):
        T.main(T.Args(td3c_epsilon=0.0))


def test_sac_checkpoints_are_refused_with_a_clear_message(tmp_path):
    torch.save({"actor": {}, "alpha_param": torch.tensor(0.0), "format": 2}, tmp_path / "sac.pt")
    with pytest.raises(SystemExit, match="SAC agent.*td3c.py --dataset-id"):
        T.read_td3_checkpoint(str(tmp_path / "sac.pt"), torch.device("cpu"))
    with pytest.raises(SystemExit, match="no checkpoint at"):
        T.read_td3_checkpoint(str(tmp_path / "missing.pt"), torch.device("cpu"))


# ---------------------------------------------------------------------------------------------
# Runs through both phases on a dataset the test makes
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(module_sandbox):
    return write_random_dataset(T)


def run(dataset, **overrides):
    return T.main(T.Args(dataset_id=dataset, **{**TINY, **overrides}))


def scalars(run_dir) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("algo", ["td3c", "td3", "td3bc"])
def test_both_phases_update_and_log_for_each_online_learner(dataset, algo):
    summary = run(dataset, online_algo=algo)
    logged = scalars(summary["run_dir"])
    assert [s for s, _, _ in summary["offline_evals"]] == [100] and [s for s, _, _ in summary["evals"]] == [0, 300]
    assert {"offline/losses/actor_loss", "offline/losses/bc_loss", "offline/losses/td3bc_lambda",
            "offline/analysis/q_heldout", "offline/eval/return"} <= set(logged)
    # online: one critic step per env step from step 50 (the buffer holds 50), the actor every 2nd
    assert [s for s, _ in logged["losses/actor_loss"]] == [100, 200, 300]
    assert [s for s, _ in logged["analysis/policy_distance_online"]] == [100, 200, 300]
    assert logged["analysis/policy_distance_heldout"][0] == (0, 0.0)  # step 0: pi is pi_pre
    assert logged["analysis/policy_distance_heldout"][-1][1] > 0.0  # and the actor moved
    assert ("losses/lagrange_multiplier" in logged) == (algo == "td3c")
    assert ("losses/bc_loss" in logged) == (algo == "td3bc")
    assert os.path.exists(summary["pretrained_checkpoint"]) and os.path.exists(os.path.join(summary["run_dir"],
                                                                                           "eval_curve.png"))


def test_updates_start_at_the_minimum_replay_size_and_preloaded_data_counts(dataset, monkeypatch):
    calls, original = [], T.td3_update

    def td3_update(*a, **kw):
        calls.append(1)
        return original(*a, **kw)

    monkeypatch.setattr(T, "td3_update", td3_update)
    run(dataset, online_steps=80)
    assert len(calls) == 100 + (80 - 50 + 1)  # 100 offline, then one per step from step 50 (the buffer holds 50)
    n = len(T.load_offline_data(dataset, "locomotion")[0]["rewards"])
    trained_on = n - min(50, n // 10)  # all but the held-out transitions
    calls.clear()
    run(dataset, online_steps=80, offline_data_in_buffer=True, min_replay_size=trained_on + 30)
    assert len(calls) == 100 + (80 - 30 + 1)  # the dataset fills all but 30 of the minimum
    calls.clear()
    run(dataset, online_steps=80, offline_data_in_buffer=True)  # --min-replay-size 50 < the dataset: at once
    assert len(calls) == 100 + 80


def test_the_pretrained_checkpoint_holds_the_state_statistics_and_starts_a_second_run(dataset, monkeypatch):
    raw = T.load_offline_data(dataset, "locomotion")[0]["observations"]
    buffers = []
    original = T.ReplayBuffer.from_arrays.__func__

    def from_arrays(cls, data, device):
        buffers.append(data["observations"])
        return original(cls, data, device)

    monkeypatch.setattr(T.ReplayBuffer, "from_arrays", classmethod(from_arrays))
    summary = run(dataset, online_steps=0)
    ckpt = T.read_td3_checkpoint(summary["pretrained_checkpoint"], torch.device("cpu"))
    mean, std = T.state_statistics(raw, True)
    np.testing.assert_allclose(ckpt["obs_mean"].numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(ckpt["obs_std"].numpy(), std, rtol=1e-5)
    # the training data is normalised with them (all but the held-out tenth: mean ~0, std ~1)
    np.testing.assert_allclose(buffers[0].mean(0), 0.0, atol=0.1)
    assert ckpt["complete"] is True and ckpt["step"] == 100 and ckpt["args"]["critic_hidden"] == 32

    seen = []
    original_init = T.NormalizedStates.__init__

    def init(self, env, m, s):
        seen.append((m, s))
        original_init(self, env, m, s)

    monkeypatch.setattr(T.NormalizedStates, "__init__", init)
    again = run(None, pretrained_checkpoint=summary["pretrained_checkpoint"], online_steps=0, save_model=True,
                critic_hidden=64, normalize_states=False)  # the checkpoint's settings win over these flags
    assert again["offline_evals"] == [] and "pretrained_checkpoint" not in again
    assert len(seen) == 2
    assert all(np.array_equal(m, ckpt["obs_mean"].numpy()) and np.array_equal(s, ckpt["obs_std"].numpy()) for m, s in seen)
    end = T.read_td3_checkpoint(again["checkpoint"], torch.device("cpu"))
    for key in ("actor", "actor_target", "critic", "critic_target"):
        for name, tensor in ckpt[key].items():
            assert torch.equal(tensor, end[key][name]), (key, name)
    assert end["args"]["dataset_id"] == dataset and end["args"]["critic_hidden"] == 32


def test_an_interrupted_pretraining_still_saves_its_checkpoint_and_stops(dataset, monkeypatch):
    calls, original = [], T.td3_update

    def interrupt_on_tenth(*a, **kw):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return original(*a, **kw)

    monkeypatch.setattr(T, "td3_update", interrupt_on_tenth)
    summary = run(dataset, save_model=True)
    ckpt = T.read_td3_checkpoint(summary["pretrained_checkpoint"], torch.device("cpu"))  # (it warns: cut short)
    assert ckpt["complete"] is False and ckpt["step"] == 10 and ckpt["planned_steps"] == 100
    assert len(calls) == 10 and summary["evals"] == [] and "checkpoint" not in summary  # no online phase


@pytest.mark.parametrize("flags", [dict(utd=2, offline_ratio=0.5), dict(precision="bf16")])
def test_other_replay_and_precision_settings_run(dataset, flags):
    summary = run(dataset, online_steps=120, **flags)
    assert summary["first_losses"]["qf_loss"] > 0 and len(summary["evals"]) == 2


def test_a_run_through_the_cuda_graph_path_equals_the_plain_run(dataset, monkeypatch):
    """(--cuda-graphs needs a GPU; on the CPU its bookkeeping runs in emulation, bit for bit)"""
    import functools

    plain = run(dataset, online_steps=120, seed=3)
    monkeypatch.setattr(U, "CudaGraphs", functools.partial(U.CudaGraphs, emulate=True))
    graphed = run(dataset, online_steps=120, seed=3)
    assert graphed["first_losses"] == plain["first_losses"] and graphed["evals"] == plain["evals"]
    assert graphed["offline_evals"] == plain["offline_evals"]


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "td3c.py", "--help"], cwd=os.path.dirname(T.__file__), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ("--online-algo", "--td3c-epsilon", "--lagrange-init", "--lagrange-lr", "--dqda-clip",
                 "--offline-data-in-buffer", "--normalize-states", "--min-replay-size"):
        assert flag in out.stdout
    assert math.isclose(T.Args().td3c_epsilon, 1e-5)
