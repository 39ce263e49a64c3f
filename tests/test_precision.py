"""--precision bf16: the same update as fp32 on the same batch, within a bounded difference, with
the matmuls really in bfloat16 and everything the algorithm reads (Q-values, log-probabilities,
losses, targets, weights) in float32."""

import copy

import pytest
import torch

import wsrl_calql_sac as W

import wsrl_utils as U
import wsrl_iql_sac as I

OBS, ACT, BATCH = 17, 6, 256
TOLERANCE = 0.01  # relative difference of a loss, bf16 vs fp32 (measured: under 1e-3, IQL's actor 6e-3)


def make_batch(seed: int, n: int = BATCH) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, OBS, generator=g), "actions": torch.rand(n, ACT, generator=g) * 2 - 1,
            "next_obs": torch.randn(n, OBS, generator=g), "rewards": 4.0 + torch.randn(n, generator=g),
            "terminals": (torch.rand(n, generator=g) < 0.05).float(), "mc_returns": 300.0 + 10 * torch.randn(n, generator=g)}


def networks(module, args):
    torch.manual_seed(0)
    actor = module.Actor(OBS, ACT, args.actor_hidden, args.actor_layers, args.last_hidden_init_scale)
    critic = module.QEnsemble(OBS, ACT, args.critic_hidden, args.critic_layers, args.num_qs, args.last_hidden_init_scale)
    # critics of a trained agent's scale (Q ~ 300, as the HalfCheetah agents): bf16 must not round it away
    with torch.no_grad():
        critic.head.bias.fill_(300.0)
    target = copy.deepcopy(critic)
    alpha_param = torch.tensor(module.inverse_softplus(0.2), requires_grad=True)
    return actor, critic, target, alpha_param


def run_both(step, module, args):
    """step(args, nets) -> info, once in fp32 and once in bf16 from the same weights and seed."""
    nets = networks(module, args)
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)
        args.precision = precision
        out[precision] = step(args, copy.deepcopy(nets))
    return out


def relative(a, b) -> float:
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-8)


def sac_args(**kw):
    return W.Args(**{**dict(num_qs=10, num_min_qs=2, critic_hidden=256, critic_layers=2, actor_hidden=256, actor_layers=2,
                            last_hidden_init_scale=0.01, utd=2, batch_size=BATCH, max_target_backup=False), **kw})


def test_bf16_runs_the_trunk_matmuls_in_bfloat16_and_gives_float32_outputs():
    args = sac_args()
    actor, critic, _, _ = networks(W, args)
    seen = []
    critic.linears[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    actor.trunk[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    obs, act = torch.randn(8, OBS), torch.rand(8, ACT)
    for precision, trunk_dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        args.precision = precision
        seen.clear()
        with W.autocast(args, obs.device):
            q, (mean, log_std) = critic(obs, act), actor(obs)
        assert seen == [trunk_dtype, trunk_dtype]
        assert q.dtype == mean.dtype == log_std.dtype == torch.float32


def test_bf16_sac_update_matches_fp32_on_the_same_batch():
    def step(args, nets):
        actor, critic, target, alpha_param = nets
        actor_opt, critic_opt, alpha_opt = W.make_optimizers(actor, critic, alpha_param, args)
        info = W.sac_update(actor, critic, target, alpha_param, actor_opt, critic_opt, alpha_opt, make_batch(0, 2 * BATCH),
                            args, target_entropy=-ACT)
        assert all(p.dtype == torch.float32 for p in [*actor.parameters(), *critic.parameters()])
        return info

    out = run_both(step, W, sac_args())
    # qf_mean is the second critic step's: it sees the weights the first step left (were autocast
    # to cache its bf16 weights over the whole update, it would see the old ones: 2-4% off here)
    for key in ("qf_loss", "qf_mean", "actor_loss", "entropy"):
        assert relative(out["bf16"][key], out["fp32"][key]) < TOLERANCE, key


def test_bf16_calql_update_matches_fp32_on_the_same_batch():
    def step(args, nets):
        actor, critic, target, alpha_param = nets
        actor_opt, critic_opt, alpha_opt = W.make_optimizers(actor, critic, alpha_param, args)
        lagrange = torch.tensor(W.inverse_softplus(1.0), requires_grad=True)
        return W.calql_update(actor, critic, target, alpha_param, lagrange, actor_opt, critic_opt, alpha_opt,
                              torch.optim.Adam([lagrange], lr=3e-4), make_batch(1, 2 * BATCH), args, target_entropy=-ACT)

    args = sac_args(max_target_backup=True, cql_n_actions=10)
    U.apply_domain_preset(args, "locomotion")  # CQL weight 5, importance sampling
    out = run_both(step, W, args)
    for key in ("qf_loss", "td_loss", "cql_gap", "actor_loss"):
        assert relative(out["bf16"][key], out["fp32"][key]) < TOLERANCE, key


def test_bf16_iql_update_matches_fp32_on_the_same_batch():
    def step(args, nets):
        actor, critic, target, _ = nets
        torch.manual_seed(2)
        value = I.ValueNet(OBS, args.critic_hidden, args.critic_layers)
        with torch.no_grad():
            value.net[-1].bias.fill_(300.0)
        opts = [torch.optim.Adam(m.parameters(), lr=3e-4) for m in (actor, critic, value)]
        torch.manual_seed(1)
        return I.iql_update(actor, critic, target, value, opts[0], opts[1], opts[2], make_batch(2), args)

    args = I.Args(num_qs=10, num_min_qs=2, critic_hidden=256, critic_layers=2, actor_hidden=256, actor_layers=2,
                  last_hidden_init_scale=0.01, batch_size=BATCH, expectile=0.7, awr_beta=3.0)
    out = run_both(step, I, args)
    for key in ("qf_loss", "value_loss", "actor_loss"):
        assert relative(out["bf16"][key], out["fp32"][key]) < TOLERANCE, key


@pytest.mark.parametrize("module", [W, I])
def test_precision_is_a_flag_with_fp32_by_default(module):
    assert module.Args().precision == "fp32"


def test_a_bf16_run_starts_where_fp32_does(sandbox):
    """The whole loop with --precision bf16: the same first losses as fp32 (same seed, same
    data), to bf16's tolerance, and not bit-identical (bf16 really ran)."""
    import sac_fast as S

    tiny = dict(seed=3, online_steps=300, learning_starts=200, num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=32,
                eval_interval=300, eval_episodes=1)
    fp32 = S.main(S.Args(**tiny))["first_losses"]
    bf16 = S.main(S.Args(precision="bf16", **tiny))["first_losses"]
    assert fp32["qf_loss"] != bf16["qf_loss"]
    for key in ("qf_loss", "actor_loss"):
        assert relative(bf16[key], fp32[key]) < TOLERANCE, key
