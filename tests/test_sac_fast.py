"""Tests of sac_fast.py: the maths against hand-computed values, the data path, and short runs
that reach gradient updates. Learning itself is checked by benchmark.sh, not here."""

import dataclasses
import io
import math
import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sac_fast as S

import wsrl_utils as U

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import export_dataset as E  # noqa: E402  (sac_fast runs written as Minari datasets)

TINY = dict(online_steps=300, learning_starts=200, num_qs=3, critic_hidden=32, actor_hidden=32,
            batch_size=32, eval_interval=300, eval_episodes=1)


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
def test_vectorized_linear_equals_per_member_linear():
    torch.manual_seed(0)
    layer = S.VectorizedLinear(5, 7, 3)
    x = torch.randn(3, 4, 5)
    out = layer(x)
    for e in range(3):
        ref = nn.Linear(5, 7)
        with torch.no_grad():
            ref.weight.copy_(layer.weight[e].T)
            ref.bias.copy_(layer.bias[e, 0])
        torch.testing.assert_close(out[e], ref(x[e]))
    # a subset of members uses exactly those members' weights
    idx = torch.tensor([2, 0])
    torch.testing.assert_close(layer(x[[2, 0]], idx), out[[2, 0]])


def test_vectorized_linear_init_is_orthogonal_per_member_with_zero_bias():
    """Official WSRL initialisation: orthogonal(gain) kernels, zero biases, each member its own."""
    torch.manual_seed(0)
    layer = S.VectorizedLinear(100, 50, 4, gain=0.01)
    for w in layer.weight.detach():  # (in 100, out 50): orthogonal columns of norm `gain`
        torch.testing.assert_close(w.T @ w, 0.01 ** 2 * torch.eye(50), atol=1e-9, rtol=1e-5)
    assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    assert not torch.equal(layer.weight[0], layer.weight[1])  # members are initialised independently
    wide = S.VectorizedLinear(20, 64, 2)  # more outputs than inputs: orthogonal rows, default gain sqrt 2
    torch.testing.assert_close(wide.weight[1] @ wide.weight[1].T, 2.0 * torch.eye(20), atol=1e-5, rtol=1e-5)


def test_last_hidden_layer_gets_the_small_gain_in_actor_and_critic():
    torch.manual_seed(0)
    q, actor = S.QEnsemble(6, 2, 32, 3, 2, last_hidden_scale=0.01), S.Actor(6, 2, 32, 3, last_hidden_scale=0.01)
    gain = lambda w: float(w.detach().norm() / math.sqrt(min(w.shape)))  # orthogonal: ||W||_F^2 = gain^2 min(in, out)
    assert [gain(lin.weight[0]) for lin in q.linears] == pytest.approx([math.sqrt(2), math.sqrt(2), 0.01], rel=1e-4)
    linears = [m for m in actor.trunk if isinstance(m, nn.Linear)]
    assert [gain(m.weight) for m in linears] == pytest.approx([math.sqrt(2), math.sqrt(2), 0.01], rel=1e-4)
    assert gain(actor.mean.weight) == pytest.approx(math.sqrt(2), rel=1e-4)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears + [actor.mean, actor.log_std])


def test_actor_is_dense_layernorm_relu_per_hidden_layer():
    """Paper Sec. 4: LayerNorm in the actor too. The state dict holds a norm per hidden layer, and
    the forward pass equals a hand-built Dense -> LayerNorm -> ReLU chain."""
    torch.manual_seed(0)
    actor = S.Actor(5, 2, 16, 2)
    keys = set(actor.state_dict())
    assert {"trunk.1.weight", "trunk.1.bias", "trunk.4.weight", "trunk.4.bias"} <= keys
    with torch.no_grad():
        for m in actor.trunk:
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    obs = torch.randn(7, 5)
    h = obs
    for i in (0, 3):
        lin, norm = actor.trunk[i], actor.trunk[i + 1]
        z = h @ lin.weight.T + lin.bias
        z = (z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + 1e-6)
        h = torch.relu(z * norm.weight + norm.bias)
    mean, _ = actor(obs)
    torch.testing.assert_close(mean, h @ actor.mean.weight.T + actor.mean.bias)


def test_ensemble_equals_separate_layernorm_critics():
    """The batched ensemble computes exactly what E separate Dense-LayerNorm-ReLU critics with
    their own heads would."""
    torch.manual_seed(0)
    E, obs_dim, act_dim, H = 4, 6, 2, 16
    q = S.QEnsemble(obs_dim, act_dim, H, 2, E)
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for norm in q.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    obs, act = torch.randn(9, obs_dim), torch.randn(9, act_dim)
    out = q(obs, act)
    assert out.shape == (E, 9)
    for e in range(E):
        ref = nn.Sequential(nn.Linear(obs_dim + act_dim, H), nn.LayerNorm(H, eps=1e-6), nn.ReLU(),
                            nn.Linear(H, H), nn.LayerNorm(H, eps=1e-6), nn.ReLU(), nn.Linear(H, 1))
        with torch.no_grad():
            for i, (lin, norm) in enumerate(zip(q.linears, q.norms)):
                ref[3 * i].weight.copy_(lin.weight[e].T)
                ref[3 * i].bias.copy_(lin.bias[e, 0])
                ref[3 * i + 1].weight.copy_(norm.weight[e, 0])
                ref[3 * i + 1].bias.copy_(norm.bias[e, 0])
            ref[6].weight.copy_(q.head.weight[e].T)
            ref[6].bias.copy_(q.head.bias[e, 0])
        torch.testing.assert_close(out[e], ref(torch.cat([obs, act], -1)).squeeze(-1))
    # computing only some members gives the same values as computing all of them
    torch.testing.assert_close(q(obs, act, torch.tensor([3, 1])), out[[3, 1]])


def constant_critic(values):
    """An ensemble whose member e outputs values[e] whatever the input."""
    q = S.QEnsemble(3, 1, 8, 1, len(values))
    with torch.no_grad():
        q.head.weight.zero_()
        q.head.bias.copy_(torch.tensor(values, dtype=torch.float32).view(-1, 1, 1))
    return q


def test_td_target_is_min_over_members_drawn_without_replacement():
    torch.manual_seed(0)
    critic = constant_critic([1.0, 2.0, 3.0])
    actor = S.Actor(3, 1, 8, 1)
    alpha_param = torch.tensor(0.0)
    batch = {"next_obs": torch.zeros(1, 3), "rewards": torch.tensor([0.5]), "terminals": torch.tensor([0.0])}
    args = S.Args(num_qs=3, num_min_qs=2, gamma=0.9)
    targets = [round(float(S.td_target(critic, actor, alpha_param, batch, args, args.max_target_backup)), 5) for _ in range(300)]
    # pairs without replacement: {1,2}->1, {1,3}->1, {2,3}->2. With replacement {3,3}->3 could occur.
    assert set(targets) == {0.5 + 0.9 * 1.0, 0.5 + 0.9 * 2.0}
    assert 0.2 < targets.count(0.5 + 0.9 * 2.0) / 300 < 0.47  # P = 1/3
    # all three members: always the overall min; a terminal transition does not bootstrap
    args3 = dataclasses.replace(args, num_min_qs=3)
    assert float(S.td_target(critic, actor, alpha_param, batch, args3, args3.max_target_backup)) == pytest.approx(0.5 + 0.9 * 1.0)
    batch["terminals"] = torch.tensor([1.0])
    assert float(S.td_target(critic, actor, alpha_param, batch, args3, args3.max_target_backup)) == pytest.approx(0.5)


class FixedActor(nn.Module):
    """pi(s') = a0 for every state (a 1-D action), log pi = 0."""

    def __init__(self, a0: float):
        super().__init__()
        self.a0 = a0

    def sample(self, obs):
        return torch.full((len(obs), 1), self.a0), torch.zeros(len(obs))


def action_valued_critic(next_obs, next_actions, idx=None):
    """Q(s', a') = a' for every member: the target shows which next action was backed up."""
    return next_actions[:, 0].expand(2, -1)


def test_so2_noise_perturbs_the_next_action_clips_the_noise_and_stays_in_the_box():
    """SO2's perturbed value update: a' + clip(N(0, std^2), -c, c), then clip to [-1, 1]; the
    target here is r + gamma * a', so it shows the backed-up action."""
    n = 4000
    batch = {"next_obs": torch.zeros(n, 3), "rewards": torch.full((n,), 0.5), "terminals": torch.zeros(n)}
    args = S.Args(num_qs=2, num_min_qs=2, gamma=0.5)
    alpha_param = torch.tensor(0.0)
    torch.manual_seed(0)

    def backed_up(a0, noise):
        return ((S.td_target(action_valued_critic, FixedActor(a0), alpha_param, batch, args, False, noise) - 0.5) / 0.5)

    torch.testing.assert_close(backed_up(0.5, None), torch.full((n,), 0.5))  # no noise: a' itself
    torch.testing.assert_close(backed_up(0.5, (0.0, 0.6)), torch.full((n,), 0.5))  # std 0: nothing moves
    # a huge std is clipped to exactly +-c: a' = 0.5 +- 0.3, both signs about equally often
    a = backed_up(0.5, (1e6, 0.3))
    assert {round(x, 4) for x in a.tolist()} == {0.2, 0.8} and 0.45 < float((a > 0.5).float().mean()) < 0.55
    # ... and the result is kept in the action box: 0.9 + 0.3 -> 1.0
    assert {round(x, 4) for x in backed_up(0.9, (1e6, 0.3)).tolist()} == {0.6, 1.0}
    # a small std is not clipped: the backed-up actions spread with that std around a'
    a = backed_up(0.0, (0.05, 0.6))
    assert abs(float(a.mean())) < 0.005 and 0.045 < float(a.std()) < 0.055 and float(a.abs().max()) <= 0.6


def test_backup_entropy_subtracts_alpha_log_pi():
    torch.manual_seed(0)
    critic = constant_critic([2.0, 2.0])
    actor = S.Actor(3, 1, 8, 1)
    batch = {"next_obs": torch.zeros(1, 3), "rewards": torch.tensor([0.0]), "terminals": torch.tensor([0.0])}
    args = S.Args(num_qs=2, num_min_qs=2, gamma=1.0, backup_entropy=True)
    alpha_param = torch.tensor(S.inverse_softplus(0.5))
    torch.manual_seed(1)
    target = S.td_target(critic, actor, alpha_param, batch, args, args.max_target_backup)
    torch.manual_seed(1)
    _, log_pi = actor.sample(batch["next_obs"])  # the same draw
    torch.testing.assert_close(target, 2.0 - 0.5 * log_pi)


def test_backup_entropy_with_the_max_backup_is_subtracted_from_each_candidate_before_the_max():
    """Official SAC (max_target_backup): max_k [Q(s', a'_k) - alpha log pi(a'_k|s')]. By hand, alpha 1:
    candidate 0 has Q 9, log pi 5 (9 - 5 = 4); candidate 1 Q 5, log pi -1 (5 + 1 = 6); the other
    eight Q 0, log pi 0. Before the max: 6 (candidate 1). After it (Cal-QL's own code): 9 - 5 = 4."""

    class Candidates:  # the 10 next actions, with their log-probabilities
        def sample(self, obs):
            actions = torch.zeros(len(obs), 1)
            actions[0], actions[1] = 0.9, 0.5
            log_pi = torch.zeros(len(obs))
            log_pi[0], log_pi[1] = 5.0, -1.0
            return actions, log_pi

    def critic(obs, actions, idx=None):  # Q = 10 a in both members
        return (10.0 * actions[:, 0]).expand(2, -1)

    batch = {"next_obs": torch.zeros(1, 3), "rewards": torch.tensor([0.0]), "terminals": torch.tensor([0.0])}
    args = S.Args(num_qs=2, num_min_qs=2, gamma=1.0, backup_entropy=True)
    alpha_param = torch.tensor(S.inverse_softplus(1.0))
    target = S.td_target(critic, Candidates(), alpha_param, batch, args, max_backup=True)
    torch.testing.assert_close(target, torch.tensor([6.0]))
    args.backup_entropy = False  # the paper's setting: the best Q alone
    torch.testing.assert_close(S.td_target(critic, Candidates(), alpha_param, batch, args, max_backup=True),
                               torch.tensor([9.0]))


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    # float64, so that the reference's atanh(tanh(u)) does not lose precision where tanh saturates
    mean, log_std = torch.randn(64, 3, dtype=torch.float64), torch.randn(64, 3, dtype=torch.float64).clamp(-2, 1)
    u = mean + log_std.exp() * torch.randn(64, 3, dtype=torch.float64)
    ours = S.tanh_gaussian_log_prob(u, mean, log_std)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform(cache_size=1)])
    ref = dist.log_prob(torch.tanh(u)).sum(-1)
    torch.testing.assert_close(ours, ref, rtol=1e-8, atol=1e-8)
    # stays finite where tanh saturates (|u| = 20), where the naive log(1 - tanh^2) is -inf
    big = torch.full((1, 3), 20.0)
    assert torch.isfinite(S.tanh_gaussian_log_prob(big, big, torch.zeros(1, 3))).all()


def test_actor_std_clipped_and_deterministic_action_is_tanh_mean():
    actor = S.Actor(4, 2, 8, 1)
    with torch.no_grad():
        actor.log_std.bias.fill_(50.0)
    _, log_std = actor(torch.zeros(1, 4))
    assert torch.allclose(log_std.exp(), torch.tensor(10.0))
    obs = np.ones(4, dtype=np.float32)
    expected = torch.tanh(actor(torch.as_tensor(obs)[None])[0])[0].detach().numpy()
    np.testing.assert_allclose(actor.act(obs, deterministic=True), expected, rtol=1e-6)


def test_inverse_softplus_gives_the_initial_temperature():
    for alpha in (1.0, 0.1, 5.0):
        assert float(F.softplus(torch.tensor(S.inverse_softplus(alpha), dtype=torch.float64))) == pytest.approx(alpha)
    assert S.inverse_softplus(1.0) == pytest.approx(math.log(math.e - 1.0))


class ObsStdActor(S.Actor):
    """log std = obs[:, 0] for every action dim (mean 0): the entropy is set by the state."""

    def forward(self, obs):
        mean = torch.zeros(len(obs), 2)
        return mean, obs[:, :1].expand(-1, 2).clamp(S.LOG_STD_MIN, S.LOG_STD_MAX)


def temperature_batch(obs_log_std: float, next_obs_log_std: float, n: int = 256) -> dict:
    return {"obs": torch.full((n, 3), obs_log_std), "next_obs": torch.full((n, 3), next_obs_log_std)}


@pytest.mark.parametrize("next_log_std, direction", [(1.0, -1), (-6.0, +1)])
def test_temperature_moves_towards_target_entropy_measured_at_next_states(next_log_std, direction):
    """High entropy at s' -> alpha falls; low entropy at s' -> alpha rises, whatever the entropy
    at s (set to the opposite here). alpha = softplus(p); d/dp [softplus(p) (H - target)] =
    sigmoid(p) (H - target), and Adam's first step is exactly lr against its sign."""
    torch.manual_seed(0)
    actor, critic = ObsStdActor(3, 2, 8, 1), S.QEnsemble(3, 2, 8, 1, 2)
    alpha_param = torch.tensor(0.0, requires_grad=True)
    grads = []  # (the optimizer lets a gradient go after its step: read it as it is made)
    alpha_param.register_hook(lambda g: grads.append(g.clone()))
    actor_opt, _, alpha_opt = S.make_optimizers(actor, critic, alpha_param, S.Args(temp_lr=0.01))
    batch = temperature_batch(obs_log_std=-6.0 if next_log_std > 0 else 1.0, next_obs_log_std=next_log_std)
    info = S.update_actor_and_alpha(actor, critic, alpha_param, actor_opt, alpha_opt, batch, S.Args(), -2.0, False)
    h = float(info["entropy"])
    assert np.sign(h + 2.0) == -direction
    assert float(grads[0]) == pytest.approx(0.5 * (h + 2.0), rel=1e-5)  # sigmoid(0) = 0.5
    assert float(alpha_param.detach()) == pytest.approx(direction * 0.01, rel=1e-3)
    assert float(info["alpha_loss"]) == pytest.approx(math.log(2.0) * (h + 2.0), rel=1e-5)  # softplus(0) = log 2


@pytest.mark.parametrize("max_target_backup, per_state", [(False, 1), (True, 10)])
def test_temperature_entropy_comes_from_fresh_samples_at_next_states(max_target_backup, per_state):
    """The entropy estimate is -mean log pi(a'|s') over `per_state` fresh draws at each s', drawn
    first: the same random draws, re-made by hand, give the same number."""
    actor, critic = ObsStdActor(3, 2, 8, 1), S.QEnsemble(3, 2, 8, 1, 2)
    next_obs = torch.linspace(-2.0, 0.5, 6).unsqueeze(1).expand(-1, 3).contiguous()  # a different std per state
    batch = {"obs": torch.zeros(6, 3), "next_obs": next_obs}
    args = S.Args(max_target_backup=max_target_backup)
    alpha_param = torch.tensor(0.0, requires_grad=True)
    actor_opt, _, alpha_opt = S.make_optimizers(actor, critic, alpha_param, args)
    torch.manual_seed(3)
    info = S.update_actor_and_alpha(actor, critic, alpha_param, actor_opt, alpha_opt, batch, args, -2.0, args.max_target_backup)
    torch.manual_seed(3)
    mean, log_std = actor(next_obs.repeat_interleave(per_state, dim=0))
    u = mean + log_std.exp() * torch.randn_like(mean)
    expected = -S.tanh_gaussian_log_prob(u, mean, log_std).mean()
    assert float(info["entropy"]) == pytest.approx(float(expected), rel=1e-6)


def test_actor_update_leaves_critic_untouched():
    torch.manual_seed(0)
    actor, critic = S.Actor(3, 2, 8, 1), S.QEnsemble(3, 2, 8, 1, 4)
    before = {k: v.clone() for k, v in critic.state_dict().items()}
    alpha_param = torch.tensor(0.0, requires_grad=True)
    actor_opt, _, alpha_opt = S.make_optimizers(actor, critic, alpha_param, S.Args())
    actor_before = actor.mean.weight.clone()
    batch = {"obs": torch.randn(16, 3), "next_obs": torch.randn(16, 3)}
    S.update_actor_and_alpha(actor, critic, alpha_param, actor_opt, alpha_opt, batch, S.Args(), -2.0, False)
    assert all(p.grad is None for p in critic.parameters())  # no critic weight gradients computed
    assert all(torch.equal(before[k], v) for k, v in critic.state_dict().items())
    assert not torch.equal(actor_before, actor.mean.weight)


def test_sac_update_does_utd_critic_steps_and_one_actor_step():
    torch.manual_seed(0)
    args = S.Args(num_qs=3, critic_hidden=8, actor_hidden=8, batch_size=4, utd=3)
    actor, critic = S.Actor(3, 2, 8, 2), S.QEnsemble(3, 2, 8, 2, 3)
    target = S.QEnsemble(3, 2, 8, 2, 3)
    target.load_state_dict(critic.state_dict())
    alpha_param = torch.tensor(0.0, requires_grad=True)
    opts = S.make_optimizers(actor, critic, alpha_param, args)
    batch = {"obs": torch.randn(12, 3), "actions": torch.rand(12, 2), "rewards": torch.randn(12),
             "next_obs": torch.randn(12, 3), "terminals": torch.zeros(12)}
    t0 = {k: v.clone() for k, v in target.state_dict().items()}
    c0 = {k: v.clone() for k, v in critic.state_dict().items()}
    S.sac_update(actor, critic, target, alpha_param, *opts, batch, args, -2.0)
    step_of = lambda opt: int(next(iter(opt.state.values()))["step"])
    assert (step_of(opts[0]), step_of(opts[1]), step_of(opts[2])) == (1, 3, 1)
    # the target moved by Polyak averaging, tau = 0.005 per critic step: far less than the critic
    key = "linears.0.weight"
    moved_t = (target.state_dict()[key] - t0[key]).abs().max()
    moved_c = (critic.state_dict()[key] - c0[key]).abs().max()
    assert 0 < moved_t < 0.05 * moved_c


# ---------------------------------------------------------------------------------------------
# Environment and replay buffer
# ---------------------------------------------------------------------------------------------
class CountingEnv(gym.Env):
    """Observation = (episode number, time step). Odd episodes terminate at t = 3, even ones
    run into the time limit."""
    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.episode, self.t = -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return np.array([self.episode, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.episode % 2 == 1 and self.t == 3
        return np.array([self.episode, self.t], np.float32), 1.0, terminated, False, {}


def test_env_step_never_mixes_episodes_and_only_termination_is_terminal():
    env = gym.wrappers.RecordEpisodeStatistics(gym.wrappers.TimeLimit(CountingEnv(), max_episode_steps=5))
    rb = S.ReplayBuffer(2, 1, 100, torch.device("cpu"))
    obs, _ = env.reset(seed=0)
    returns = []
    for _ in range(40):
        (o, a, r, next_o, terminated, ended), obs, episode = S.env_step(env, obs, np.zeros(1, np.float32))
        rb.add(o, a, r, next_o, terminated, ended)
        if episode is not None:
            returns.append(float(episode["r"]))
    o, n = rb.obs[:40].numpy(), rb.next_obs[:40].numpy()
    assert (n[:, 0] == o[:, 0]).all(), "a transition spans two episodes"
    assert (n[:, 1] == o[:, 1] + 1).all()
    terminal = rb.terminals[:40].numpy().astype(bool)
    np.testing.assert_array_equal(terminal, (o[:, 0] % 2 == 1) & (n[:, 1] == 3))
    truncated = rb.ends[:40].numpy() & ~terminal
    np.testing.assert_array_equal(truncated, (o[:, 0] % 2 == 0) & (n[:, 1] == 5))
    assert returns[:4] == [5.0, 3.0, 5.0, 3.0]
    # the buffer cut back into episodes gives each episode whole: N+1 observations, one end
    episodes = rb.episodes()
    assert [len(e[1]) for e in episodes[:4]] == [5, 3, 5, 3]
    np.testing.assert_array_equal(episodes[1][0][:, 1], [0, 1, 2, 3])
    assert episodes[1][3].tolist() == [False, False, True] and not episodes[1][4].any()
    assert episodes[0][4].tolist() == [False] * 4 + [True] and not episodes[0][3].any()


def test_replay_buffer_wraps_and_episodes_stay_in_order():
    rb = S.ReplayBuffer(1, 1, 5, torch.device("cpu"))
    for t in range(8):  # one long episode of 8 steps; the buffer keeps the last 5
        rb.add([t], [0.0], float(t), [t + 1], False, t == 7)
    assert rb.size == 5
    (obs, actions, rewards, term, trunc), = rb.episodes()
    np.testing.assert_array_equal(obs[:, 0], [3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(rewards, [3, 4, 5, 6, 7])


def test_sample_batch_keeps_the_offline_share_in_every_minibatch():
    online, offline = S.ReplayBuffer(1, 1, 50, torch.device("cpu")), S.ReplayBuffer(1, 1, 50, torch.device("cpu"))
    for i in range(50):
        online.add([0.0], [0.0], 1.0, [0.0], False, False)
        offline.add([0.0], [0.0], -1.0, [0.0], False, False)
    gen = torch.Generator().manual_seed(0)
    batch = S.sample_batch(online, offline, utd=4, batch_size=10, offline_ratio=0.3, generator=gen)
    rewards = batch["rewards"].view(4, 10)
    assert ((rewards == -1).sum(1) == 3).all()
    batch = S.sample_batch(online, None, utd=4, batch_size=10, offline_ratio=0.0, generator=gen)
    assert (batch["rewards"] == 1).all() and batch["obs"].shape == (40, 1)


# ---------------------------------------------------------------------------------------------
# Minari datasets
# ---------------------------------------------------------------------------------------------
def hopper_like_episodes(n_episodes=3, seed=0):
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n_episodes):
        n = 4 + i
        term = np.zeros(n, bool)
        term[-1] = i % 2 == 0
        episodes.append((rng.normal(size=(n + 1, 11)).astype(np.float32), rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                         rng.normal(size=n), term, ~term & (np.arange(n) == n - 1)))
    return episodes


def test_dataset_export_then_load_gives_back_the_same_arrays(sandbox):
    episodes = hopper_like_episodes()
    path = E.save_minari("test/hopper/roundtrip-v0", episodes, "Hopper-v5", (-20.0, 3000.0), "unit-test")
    assert os.path.isdir(path)
    data, metadata = S.load_offline_data("test/hopper/roundtrip-v0", "locomotion")
    np.testing.assert_allclose(data["observations"], np.concatenate([e[0][:-1] for e in episodes]))
    np.testing.assert_allclose(data["next_observations"], np.concatenate([e[0][1:] for e in episodes]))
    np.testing.assert_allclose(data["actions"], np.clip(np.concatenate([e[1] for e in episodes]), -0.99999, 0.99999))
    np.testing.assert_allclose(data["rewards"], np.concatenate([e[2] for e in episodes]), rtol=1e-6)
    np.testing.assert_array_equal(data["terminals"], np.concatenate([e[3] for e in episodes]))
    # timeouts: the last step of the episodes that did NOT terminate (here episodes 1 of 0, 1, 2)
    np.testing.assert_array_equal(data["timeouts"], np.concatenate([e[4] for e in episodes]))
    assert data["timeouts"].sum() == 1 and data["terminals"].sum() == 2
    assert (metadata["ref_min_score"], metadata["ref_max_score"], metadata["env_id"]) == (-20.0, 3000.0, "Hopper-v5")
    assert S.reference_scores("Hopper-v5", metadata) == (-20.0, 3000.0)
    # the flattened arrays are cached, and the cache gives the same arrays (transform applied once)
    assert os.path.exists(os.path.join(path, "flat_cache.npz"))
    again, _ = S.load_offline_data("test/hopper/roundtrip-v0", "antmaze")
    np.testing.assert_allclose(again["rewards"], data["rewards"] * 10 - 5, rtol=1e-5)


def test_the_dataset_cache_is_whole_or_absent_and_a_cut_one_is_made_again(sandbox, monkeypatch):
    """Two seeds' runs load one dataset at the same moment (benchmark.sh, Slurm arrays): one must
    never read the cache another is still writing (it did: EOFError in a Slurm pre-training)."""
    path = E.save_minari("test/hopper/cache-v0", hopper_like_episodes(), "Hopper-v5", (-20.0, 3000.0), "unit-test")
    cache = os.path.join(path, "flat_cache.npz")
    real_savez = np.savez

    def stopped_halfway(file, **arrays):  # Ctrl-C in the middle of the write
        whole = io.BytesIO()
        real_savez(whole, **arrays)
        half = whole.getvalue()[: len(whole.getvalue()) // 2]
        if isinstance(file, str):
            with open(file if file.endswith(".npz") else file + ".npz", "wb") as f:
                f.write(half)
        else:
            file.write(half)
            file.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", stopped_halfway)
    with pytest.raises(KeyboardInterrupt):
        S.load_offline_data("test/hopper/cache-v0", "locomotion")
    assert not os.path.exists(cache), "a half-written cache is where other runs read it"
    assert [f for f in os.listdir(path) if "cache" in f] == [], os.listdir(path)  # nor a temporary file left
    monkeypatch.setattr(np, "savez", real_savez)
    data, _ = S.load_offline_data("test/hopper/cache-v0", "locomotion")
    whole = open(cache, "rb").read()
    # a cache cut short (by an older version, a full disk) is made again, not an error
    for cut in (b"", whole[: len(whole) // 2]):
        with open(cache, "wb") as f:
            f.write(cut)
        again, _ = S.load_offline_data("test/hopper/cache-v0", "locomotion")
        for k in data:
            np.testing.assert_array_equal(again[k], data[k])
        assert open(cache, "rb").read() == whole


def test_reward_transforms_and_domains():
    r = np.array([0.0, 1.0])
    assert S.domain_of("D4RL/antmaze/umaze-v1") == "antmaze" and S.domain_of("Hopper-v5") == "locomotion"
    assert S.domain_of("D4RL/door/expert-v2") == "adroit" and S.domain_of("D4RL/kitchen/mixed-v2") == "kitchen"
    np.testing.assert_array_equal(S.REWARD_TRANSFORMS["antmaze"](r), [-5.0, 5.0])
    np.testing.assert_array_equal(S.REWARD_TRANSFORMS["adroit"](np.array([-1.0, 0.0])), [-5.0, 5.0])
    np.testing.assert_array_equal(S.REWARD_TRANSFORMS["kitchen"](np.array([0.0, 4.0])), [-4.0, 0.0])
    assert S.reference_scores("Hopper-v5") == (-20.272305, 3234.3)
    assert S.reference_scores("AntMaze_UMaze-v5") is None


def test_networks_take_the_domain_preset_unless_a_flag_is_given():
    """RLPD and SAC run with the networks of WSRL in each domain (the official antmaze config:
    critics 4 x 256, one learned std per action dimension)."""
    ant = S.Args()
    S.apply_domain_preset(ant, "antmaze")
    assert (ant.critic_hidden, ant.critic_layers, ant.actor_layers, ant.state_dependent_std) == (256, 4, 2, False)
    loco = S.Args(critic_hidden=64)
    S.apply_domain_preset(loco, "locomotion")
    assert (loco.critic_hidden, loco.critic_layers, loco.last_hidden_init_scale, loco.state_dependent_std) == (64, 2, 0.01, True)


@pytest.mark.parametrize("bad", ["hopper", "local/hopper", "local/hop per-v0", "local//x-v0", "../x-v0", "x-vv1"])
def test_bad_dataset_ids_are_refused_and_leave_nothing_behind(sandbox, bad):
    with pytest.raises(SystemExit, match="bad dataset id"):
        E.main(E.Export(save_dataset_id=bad, sac=S.Args(**TINY)))
    assert not (sandbox / "runs").exists()
    assert not (sandbox / "minari").exists() or not any(p for p in (sandbox / "minari").rglob("*") if p.is_dir())


def test_export_refuses_other_domains_before_training(sandbox):
    """Outside locomotion the buffer holds the domain's flat observations and transformed rewards,
    not the environment's own: such a dataset would load wrong, so none is made."""
    with pytest.raises(SystemExit, match="locomotion runs only"):
        E.main(E.Export(save_dataset_id="test/antmaze/x-v0", sac=S.Args(env_id="AntMaze_UMaze-v5", **TINY)))
    assert not (sandbox / "runs").exists()


def test_export_help_has_its_own_flags_and_every_flag_of_sac_fast():
    out = subprocess.run([sys.executable, os.path.join("tools", "export_dataset.py"), "--help"],
                         cwd=os.path.dirname(S.__file__), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in ("--save-dataset-id", "--save-rollouts", "--online-steps", "--learning-starts", "--offline-ratio"):
        assert flag in out.stdout


def test_export_of_a_run_that_never_learns_is_random_actions_and_survives_ctrl_c(sandbox, monkeypatch):
    E.main(E.Export(save_dataset_id="test/hopper/random-v0", sac=S.Args(online_steps=50, learning_starts=50)))
    data, metadata = S.load_offline_data("test/hopper/random-v0", "locomotion")
    assert data["observations"].shape == (50, 11) and metadata["complete"] is True
    real_step, calls = S.env_step, []

    def step_then_interrupt(*a):
        calls.append(1)
        if len(calls) == 30:
            raise KeyboardInterrupt
        return real_step(*a)

    monkeypatch.setattr(U, "env_step", step_then_interrupt)
    E.main(E.Export(save_dataset_id="test/hopper/random-cut-v0", sac=S.Args(online_steps=50, learning_starts=50)))
    data, metadata = S.load_offline_data("test/hopper/random-cut-v0", "locomotion")
    assert data["observations"].shape == (29, 11) and metadata["complete"] is False
    with pytest.raises(SystemExit, match="at least 1 step"):
        E.main(E.Export(save_dataset_id="test/hopper/none-v0", sac=S.Args(online_steps=0, learning_starts=0)))


def test_existing_dataset_id_is_refused_before_training(sandbox):
    E.save_minari("test/hopper/taken-v0", hopper_like_episodes(), "Hopper-v5", (0.0, 1.0), "unit-test")
    with pytest.raises(SystemExit, match="already exists"):
        E.main(E.Export(save_dataset_id="test/hopper/taken-v0", sac=S.Args(**TINY)))
    assert not (sandbox / "runs").exists()


def test_missing_dataset_fails_fast_with_local_list_and_command(sandbox):
    E.save_minari("test/hopper/present-v0", hopper_like_episodes(), "Hopper-v5", (0.0, 1.0), "unit-test")
    start = time.time()
    with pytest.raises(SystemExit) as err:
        S.main(S.Args(dataset_id="mujoco/hopper/medium-v0", offline_ratio=0.5, **TINY))
    assert time.time() - start < 2.0
    message = str(err.value)
    assert "mujoco/hopper/medium-v0" in message and "cannot be reached" in message
    assert "test/hopper/present-v0" in message and "--save-dataset-id" in message
    assert not (sandbox / "runs").exists()


def test_other_minari_remote_is_not_probed_as_the_hub(sandbox, monkeypatch):
    monkeypatch.setenv("MINARI_REMOTE", "gcs://some-bucket")
    assert U.hub_reachable() is True  # Minari itself will try that remote


def test_hub_offline_variable_also_fails_fast(sandbox, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_ENDPOINT")
    start = time.time()
    assert U.hub_reachable() is False
    assert time.time() - start < 0.1


# ---------------------------------------------------------------------------------------------
# Whole runs (tiny networks, a few hundred steps): they must reach gradient updates
# ---------------------------------------------------------------------------------------------
def test_smoke_run_updates_saves_checkpoint_and_dataset(sandbox):
    args = S.Args(save_model=True, **TINY)
    summary = E.main(E.Export(save_dataset_id="test/hopper/smoke-v0", sac=args))  # sac_fast, then the export
    assert summary["first_losses"] is not None and np.isfinite(summary["first_losses"]["qf_loss"])
    assert len(summary["evals"]) == 1 and summary["evals"][0][0] == 300
    assert os.path.exists(os.path.join(summary["run_dir"], "eval_curve.png"))
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(summary["run_dir"]))
    ckpt = torch.load(summary["checkpoint"], weights_only=False)
    assert set(ckpt) == {"actor", "critic", "critic_target", "alpha_param", "actor_opt", "critic_opt", "alpha_opt", "args", "step", "format", "env_id", "complete", "planned_steps", "dataset"}
    n_updates = TINY["online_steps"] - TINY["learning_starts"]
    assert int(ckpt["critic_opt"]["state"][0]["step"]) == n_updates * args.utd
    assert int(ckpt["actor_opt"]["state"][0]["step"]) == n_updates
    assert ckpt["args"]["num_qs"] == 3 and ckpt["step"] == 300
    actor = S.Actor(11, 3, 32, 2)
    actor.load_state_dict(ckpt["actor"])
    # the replay buffer became a Minari dataset with all 300 transitions
    data, metadata = S.load_offline_data("test/hopper/smoke-v0", "locomotion")
    assert data["observations"].shape == (300, 11)
    assert (metadata["ref_min_score"], metadata["ref_max_score"]) == U.D4RL_REF_SCORES["hopper"]


def test_rollout_dataset_then_rlpd_run(sandbox):
    E.main(E.Export(save_dataset_id="test/hopper/rollouts-v0", save_rollouts=2, sac=S.Args(**TINY)))
    data, _ = S.load_offline_data("test/hopper/rollouts-v0", "locomotion")
    assert (data["terminals"] | data["timeouts"]).sum() == 2  # two whole episodes
    summary = S.main(S.Args(dataset_id="test/hopper/rollouts-v0", offline_ratio=0.5, **TINY))
    assert summary["first_losses"] is not None


def test_stop_at_return_keeps_the_actor_of_that_evaluation(sandbox, monkeypatch):
    """--stop-at-return stops at the FIRST evaluation that reaches the level and the actor saved
    there is the one evaluated (learning is not monotone: a later actor may be worse)."""
    returns = iter([10.0, 50.0, 20.0, 99.0])
    evaluated = []

    def evaluate(actor, env, episodes, ref_scores):
        evaluated.append({k: v.clone() for k, v in actor.state_dict().items()})
        return next(returns), None, None

    monkeypatch.setattr(S, "evaluate", evaluate)
    args = dict(TINY, online_steps=400, learning_starts=100, eval_interval=100)
    summary = S.main(S.Args(stop_at_return=40.0, save_actors=True, **args))
    assert summary["stopped_at"] == 200 and [e[0] for e in summary["evals"]] == [100, 200]
    saved = sorted(os.listdir(os.path.join(summary["run_dir"], "actors")))
    assert saved == ["step_0000100.pt", "step_0000200.pt"]
    kept = torch.load(summary["actor"], weights_only=False)
    assert kept["step"] == 200 and kept["eval_return"] == 50.0 and kept["env_id"] == "Hopper-v5"
    actor = S.Actor(11, 3, kept["actor_hidden"], kept["actor_layers"])
    actor.load_state_dict(kept["actor"])
    assert all(torch.equal(actor.state_dict()[k], v) for k, v in evaluated[1].items())
    assert not all(torch.equal(evaluated[0][k], v) for k, v in evaluated[1].items())  # it did learn in between
    # never reached: the run goes to the end
    returns = iter([10.0] * 4)
    assert "stopped_at" not in S.main(S.Args(stop_at_return=40.0, **args))


def test_same_seed_same_first_losses(sandbox):
    a = S.main(S.Args(seed=3, **TINY))["first_losses"]
    b = S.main(S.Args(seed=3, **TINY))["first_losses"]
    c = S.main(S.Args(seed=4, **TINY))["first_losses"]
    assert a == b
    assert a["qf_loss"] != c["qf_loss"]


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "sac_fast.py", "--help"], cwd=os.path.dirname(S.__file__),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--utd", "--num-qs", "--num-min-qs", "--offline-ratio", "--learning-starts"):
        assert flag in out.stdout


def test_interrupted_run_still_saves_checkpoint_and_dataset(sandbox, monkeypatch):
    """Ctrl-C during training: the checkpoint, the dataset and the plot are still written."""
    real_step, calls = S.env_step, []

    def step_then_interrupt(*a):
        calls.append(1)
        if len(calls) == 250:
            raise KeyboardInterrupt
        return real_step(*a)

    monkeypatch.setattr(S, "env_step", step_then_interrupt)
    summary = E.main(E.Export(save_dataset_id="test/hopper/interrupted-v0", sac=S.Args(save_model=True, **TINY)))
    ckpt = torch.load(summary["checkpoint"], weights_only=False)
    assert ckpt["step"] == 250 and int(ckpt["critic_opt"]["state"][0]["step"]) == 49  # updates at steps 201..249
    assert ckpt["complete"] is False and ckpt["planned_steps"] == 300
    data, metadata = S.load_offline_data("test/hopper/interrupted-v0", "locomotion")
    assert data["observations"].shape == (249, 11)
    assert metadata["complete"] is False  # marked, and loading it warns (tests/test_reliability.py)


def test_runs_started_in_the_same_second_get_their_own_folders(sandbox, monkeypatch):
    monkeypatch.setattr(S.time, "time", lambda: 1_800_000_000.0)  # both runs "start" at the same instant
    first, second = U.make_run_dir("Hopper-v5", "x", 1), U.make_run_dir("Hopper-v5", "x", 1)
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
    assert second == first + "_2"


def test_a_run_interrupted_and_resumed_equals_the_run_uninterrupted(sandbox, monkeypatch):
    """--resume continues from the last resume point (written at the first episode end after every
    --resume-interval steps) to exactly the same weights, evaluations and losses as a run that
    was never stopped: every random stream, buffer, optimizer moment and simulator state is kept."""
    flags = dict(TINY, online_steps=500, learning_starts=100, eval_interval=100, resume_interval=150, seed=3)
    whole = S.main(S.Args(save_model=True, **flags))
    real_step, calls = S.env_step, []

    def step_then_interrupt(*a):
        calls.append(1)
        if len(calls) == 420:
            raise KeyboardInterrupt
        return real_step(*a)

    monkeypatch.setattr(S, "env_step", step_then_interrupt)
    cut = S.main(S.Args(save_model=True, **flags))
    monkeypatch.setattr(S, "env_step", real_step)
    assert torch.load(cut["checkpoint"], weights_only=False)["complete"] is False  # it was cut
    point = torch.load(os.path.join(cut["run_dir"], "resume.pt"), weights_only=False)
    assert 300 <= point["step"] < 420  # the last resume point before the interruption
    resumed = S.main(S.Args(resume=cut["run_dir"]))
    assert resumed["run_dir"] == cut["run_dir"] and resumed["evals"] == whole["evals"]
    a, b = torch.load(whole["checkpoint"], weights_only=False), torch.load(resumed["checkpoint"], weights_only=False)
    for key in ("actor", "critic", "critic_target"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert torch.equal(a["alpha_param"], b["alpha_param"]) and b["complete"] is True
    with pytest.raises(SystemExit, match="no resume point in"):
        S.main(S.Args(resume=str(sandbox)))
