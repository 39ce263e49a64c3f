"""Tests of wsrl_iql_sac.py: IQL's losses against hand-computed values, the IQL -> SAC hand-over
(weights carried over exactly, value net dropped, temperature reset), and runs through every
phase. The phases 2 and 3 are wsrl_calql_sac.py's code and are tested there."""

import math
import os

import pytest
import torch

import wsrl_iql_sac as I

import wsrl_utils as U
from conftest import write_random_dataset

TINY = dict(num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=8, offline_eval_interval=20, eval_interval=30,
            eval_episodes=1, analysis_interval=15, heldout_size=50, analysis_actions=4)


def test_expectile_loss_by_hand():
    # diff = Q - V = (2, -1), expectile 0.7: weights 0.7 and 0.3 -> (0.7 * 4 + 0.3 * 1) / 2 = 1.55
    assert I.expectile_loss(torch.tensor([2.0, -1.0]), 0.7).item() == pytest.approx(1.55)
    # expectile 0.5 is half the mean squared error
    assert I.expectile_loss(torch.tensor([2.0, -1.0]), 0.5).item() == pytest.approx(0.5 * 2.5)


def test_awr_weights_and_their_clip():
    w = I.awr_weights(torch.tensor([0.0, 1.0, -1.0, 10.0]), beta=3.0, max_weight=100.0)
    torch.testing.assert_close(w, torch.tensor([1.0, math.exp(3.0), math.exp(-3.0), 100.0]))  # exp(30) -> 100


def test_dataset_log_prob_is_finite_at_the_action_bounds():
    actor = I.Actor(3, 2, 8, 1)
    lp = I.dataset_log_prob(actor, torch.zeros(2, 3), torch.tensor([[1.0, -1.0], [0.3, 0.0]]))
    assert torch.isfinite(lp).all()
    mean, log_std = actor(torch.zeros(1, 3))
    expected = I.tanh_gaussian_log_prob(torch.atanh(torch.tensor([[0.3, 0.0]])), mean, log_std)
    torch.testing.assert_close(lp[1:], expected)


@pytest.fixture(scope="module")
def dataset(module_sandbox):
    return write_random_dataset(I)


def test_hand_over_copies_iql_weights_drops_value_and_resets_temperature(dataset, monkeypatch):
    first = {}
    original = I.sac_update

    def sac_update(actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt, *rest, **kw):
        if not first:
            clone = lambda sd: {k: v.clone() for k, v in sd.items()}
            first.update(actor=clone(actor.state_dict()), critic=clone(critic.state_dict()),
                         critic_target=clone(critic_target.state_dict()), alpha_param=alpha_param.item(),
                         alpha_state=alpha_opt.state_dict()["state"], actor_lr=actor_opt.param_groups[0]["lr"],
                         critic_lr=critic_opt.param_groups[0]["lr"],
                         actor_moments=clone(actor_opt.state_dict()["state"][0]))
        return original(actor, critic, critic_target, alpha_param, actor_opt, critic_opt, alpha_opt, *rest, **kw)

    monkeypatch.setattr(I, "sac_update", sac_update)
    summary = I.main(I.Args(dataset_id=dataset, offline_steps=20, online_steps=30, warmup_steps=10, save_model=True,
                            handover_temperature=0.5, **TINY))
    pre = U.read_checkpoint(summary["pretrained_checkpoint"], torch.device("cpu"))
    assert "value" in pre  # the IQL checkpoint keeps V, for --online-algo iql
    for key in ("actor", "critic", "critic_target"):
        for name, tensor in pre[key].items():
            assert torch.equal(first[key][name], tensor), (key, name)
    for name, tensor in pre["actor_opt"]["state"][0].items():  # Adam moments carried over
        assert torch.equal(first["actor_moments"][name], tensor), name
    assert first["actor_lr"] == 1e-4 and first["critic_lr"] == 3e-4  # SAC's rates, not IQL's 3e-4 / 3e-4
    assert pre["actor_opt"]["param_groups"][0]["lr"] == 3e-4  # (IQL trained the actor at 3e-4)
    assert first["alpha_param"] == pytest.approx(I.inverse_softplus(0.5)) and first["alpha_state"] == {}
    assert "value" not in U.read_checkpoint(summary["checkpoint"], torch.device("cpu"))  # dropped


def test_online_iql_baseline_keeps_training_the_value_net(dataset):
    summary = I.main(I.Args(dataset_id=dataset, offline_steps=20, online_steps=30, warmup_steps=0, save_model=True,
                            online_algo="iql", **TINY))
    assert [s for s, _, _ in summary["evals"]] == [0, 30]
    pre = U.read_checkpoint(summary["pretrained_checkpoint"], torch.device("cpu"))
    end = U.read_checkpoint(summary["checkpoint"], torch.device("cpu"))
    assert not torch.equal(pre["critic"]["head.weight"], end["critic"]["head.weight"])


def test_online_iql_baseline_keeps_iqls_learning_rate(dataset, monkeypatch):
    """The paper's IQL baseline fine-tunes at IQL's 3e-4: the hand-over to SAC's 1e-4 actor rate
    happens only when SAC is the online learner."""
    seen = []
    original = I.iql_update

    def iql_update(actor, critic, critic_target, value, actor_opt, critic_opt, value_opt, *rest, **kw):
        seen.append((actor_opt.param_groups[0]["lr"], critic_opt.param_groups[0]["lr"], value_opt.param_groups[0]["lr"]))
        return original(actor, critic, critic_target, value, actor_opt, critic_opt, value_opt, *rest, **kw)

    monkeypatch.setattr(I, "iql_update", iql_update)
    I.main(I.Args(dataset_id=dataset, offline_steps=20, online_steps=30, warmup_steps=0, online_algo="iql",
                  actor_lr=1e-4, critic_lr=1e-3, **TINY))
    assert len(seen) > 20  # 20 offline steps, then online ones
    assert all(lrs == (3e-4, 3e-4, 3e-4) for lrs in seen), set(seen)


def test_presets_give_iql_its_domain_values():
    args = I.Args()
    U.apply_domain_preset(args, "antmaze")
    assert (args.expectile, args.awr_beta) == (0.9, 10.0)
    args = I.Args()
    U.apply_domain_preset(args, "kitchen")
    assert (args.expectile, args.awr_beta) == (0.7, 0.5)
    args = I.Args(awr_beta=1.0)
    U.apply_domain_preset(args, "locomotion")
    assert (args.expectile, args.awr_beta) == (0.7, 1.0)


@pytest.mark.parametrize("name, cut_at, extra", [("iql_update", 130, {}), ("sac_update", 60, {}),
                                                 ("iql_update", 200 + 50, {"online_algo": "iql"})],
                         ids=["offline", "online-sac", "online-iql"])
def test_a_run_interrupted_and_resumed_equals_the_run_uninterrupted(sandbox, monkeypatch, name, cut_at, extra):
    """Cut during IQL pre-training, SAC fine-tuning or the online IQL baseline, then --resume: the
    same weights and evaluations as the run never stopped."""
    write_random_dataset(I, episodes=20)
    flags = dict(TINY, dataset_id="test/hopper/random-v0", offline_steps=200, online_steps=150, warmup_steps=40,
                 resume_interval=50, save_model=True, seed=6, **extra)
    whole = I.main(I.Args(**flags))
    real, calls = getattr(I, name), {"n": 0}

    def update_then_interrupt(*a, **kw):
        calls["n"] += 1
        if calls["n"] == cut_at:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(I, name, update_then_interrupt)
    cut = I.main(I.Args(**flags))
    monkeypatch.setattr(I, name, real)
    offline = cut_at == 130
    assert torch.load(os.path.join(cut["run_dir"], "resume.pt"), weights_only=False)["phase"] == ("offline" if offline else "online")
    assert ("checkpoint" not in cut) if offline else (torch.load(cut["checkpoint"], weights_only=False)["complete"] is False)
    resumed = I.main(I.Args(resume=cut["run_dir"]))
    assert resumed["evals"] == whole["evals"] and resumed["offline_evals"] == whole["offline_evals"]
    a, b = torch.load(whole["checkpoint"], weights_only=False), torch.load(resumed["checkpoint"], weights_only=False)
    for key in ("actor", "critic", "critic_target"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)


def test_so2_from_the_iql_agent_hands_over_to_sac_with_its_noise(dataset, monkeypatch):
    """--online-algo so2 in the IQL script: the SAC hand-over (no value net), then every online
    TD target with SO2's noise; none during the IQL pre-training."""
    seen, original = [], I.td_target

    def td_target(critic_target, actor, alpha_param, batch, args, max_backup, noise=None):
        seen.append(noise)
        return original(critic_target, actor, alpha_param, batch, args, max_backup, noise)

    monkeypatch.setattr(I, "td_target", td_target)
    summary = I.main(I.Args(dataset_id=dataset, offline_steps=20, online_steps=30, warmup_steps=0, online_algo="so2",
                            save_model=True, **TINY))
    assert (math.sqrt(0.3), 0.6) in seen and set(seen) <= {None, (math.sqrt(0.3), 0.6)}
    assert seen.count((math.sqrt(0.3), 0.6)) >= 30 - 8  # one critic update per step once the buffer holds a batch (8)
    assert "value" not in torch.load(summary["checkpoint"], weights_only=False)


def test_the_handover_temperature_leaves_the_policys_spread_at_rest():
    """alpha* = -<g_logpi, g_Q> / |g_logpi|^2 on the std parameters: at alpha*, SAC's actor loss
    alpha log pi - Q has no gradient along g_logpi. A critic that prefers small actions (Q = -5 |a|^2)
    pulls the std down, the entropy term pushes it up: alpha* > 0. A critic flat in the action
    needs no entropy pressure: the lower clamp, 1e-3."""
    torch.manual_seed(0)
    actor = I.Actor(3, 2, 16, 1, state_dependent_std=False)
    with torch.no_grad():
        actor.log_std.fill_(-1.5)  # std 0.22 (the shipped IQL agent's median: 0.13)
    obs = torch.randn(256, 3)
    critic = lambda o, a: (-5.0 * (a ** 2).sum(dim=1)).expand(2, -1)  # two members, (E, B)
    alpha = I.handover_temperature(actor, critic, obs)
    assert 0.01 < alpha < 1.0
    # g_Q is linear in the critic's scale, so alpha* is too: twice the values, twice the temperature
    double = lambda o, a: 2.0 * critic(o, a)
    assert I.handover_temperature(actor, double, obs) == pytest.approx(2 * alpha, rel=1e-5)
    params = [p for n, p in actor.named_parameters() if "log_std" in n]
    with torch.random.fork_rng(devices=[]):  # the very draw handover_temperature made
        torch.manual_seed(0)
        actions, log_pi = actor.sample(obs)
    g_logpi = torch.autograd.grad(log_pi.mean(), params, retain_graph=True)
    g_loss = torch.autograd.grad(alpha * log_pi.mean() - critic(obs, actions).min(dim=0).values.mean(), params)
    along = sum((a * b).sum() for a, b in zip(g_logpi, g_loss)) / sum((a * a).sum() for a in g_logpi).sqrt()
    assert abs(float(along)) < 1e-4
    flat = lambda o, a: (0.0 * a.sum(dim=1)).expand(2, -1)
    assert I.handover_temperature(actor, flat, obs) == pytest.approx(1e-3)
    state_before = torch.get_rng_state()
    I.handover_temperature(actor, critic, obs)
    assert torch.equal(torch.get_rng_state(), state_before)  # the training streams are untouched
