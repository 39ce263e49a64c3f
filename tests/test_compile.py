"""--compile: every update function of every script traces as ONE graph (forward, backward, Adam,
target updates: no graph break), a compiled update gives the numbers of the eager one, and
wsrl_utils.Adam called eagerly is torch's Adam, bit for bit."""

import copy

import pytest
import torch
import torch._dynamo

import wsrl_calql_sac as W
import wsrl_iql_sac as I
import wsrl_utils as U
import td3c as T

from test_cuda_graphs import ACT, BATCH, OBS, make_batch  # the same small batches


def learner(module=W, members: int = 4, **kw):
    args = module.Args(**{**dict(num_qs=members, num_min_qs=2, critic_hidden=16, critic_layers=2, actor_hidden=16, actor_layers=2,
                                 last_hidden_init_scale=0.01, utd=2, batch_size=BATCH, max_target_backup=False), **kw})
    U.apply_domain_preset(args, "locomotion")
    torch.manual_seed(0)
    actor = module.Actor(OBS, ACT, 16, 2, 0.01)
    critic = module.QEnsemble(OBS, ACT, 16, 2, members, 0.01)
    target = copy.deepcopy(critic)
    alpha_param = torch.tensor(0.5, requires_grad=True)
    return args, actor, critic, target, alpha_param, module.make_optimizers(actor, critic, alpha_param, args)


def updates() -> dict:
    """name -> (update(batch), batch): SAC, Cal-QL, IQL and TD3 / TD3-C, each from its script."""
    args, actor, critic, target, alpha_param, opts = learner()
    out = {"sac": (lambda b: W.sac_update(actor, critic, target, alpha_param, *opts, b, args, -float(ACT)),
                   make_batch(0, 2 * BATCH))}
    c_args, c_actor, c_critic, c_target, c_alpha, c_opts = learner(cql_n_actions=3)
    lagrange = torch.zeros((), requires_grad=True)
    lagrange_opt = U.Adam([lagrange], lr=3e-4)
    out["calql"] = (lambda b: W.calql_update(c_actor, c_critic, c_target, c_alpha, lagrange, *c_opts, lagrange_opt, b,
                                             c_args, -float(ACT)), make_batch(1, BATCH))
    i_args, i_actor, i_critic, i_target, _, i_opts = learner(I)
    value = I.ValueNet(OBS, 16, 2)
    value_opt = U.Adam(value.parameters(), lr=3e-4)
    out["iql"] = (lambda b: I.iql_update(i_actor, i_critic, i_target, value, i_opts[0], i_opts[1], value_opt, b, i_args),
                  make_batch(2, BATCH))
    t_args = T.Args(critic_hidden=16, actor_hidden=16, critic_layers=2, actor_layers=2, last_hidden_init_scale=0.01,
                    batch_size=BATCH, utd=2)
    t_actor = T.DeterministicActor(OBS, ACT, 16, 2, 0.01, t_args.exploration_noise)
    t_critic = T.QEnsemble(OBS, ACT, 16, 2, T.TWIN_CRITICS, 0.01)
    t_actor_target, t_critic_target = copy.deepcopy(t_actor), copy.deepcopy(t_critic)
    mu = torch.zeros((), requires_grad=True)
    t_opts = U.Adam(t_actor.parameters(), lr=3e-4), U.Adam(t_critic.parameters(), lr=3e-4), U.Adam([mu], lr=1e-2)
    for algo in ("td3c", "td3bc"):
        out[algo] = (lambda b, algo=algo: T.td3_update(t_actor, t_actor_target, t_critic, t_critic_target, mu, *t_opts, b,
                                                      t_args, algo, 1.0, (False, True)), make_batch(3, 2 * BATCH))
    return out


@pytest.mark.parametrize("name", ["sac", "calql", "iql", "td3c", "td3bc"])
def test_every_update_traces_as_one_graph(name):
    torch._dynamo.reset()
    torch._dynamo.config.trace_autograd_ops = True  # (what --compile sets)
    update, batch = updates()[name]
    update(batch)  # eager first, as --compile does: Adam makes its state
    explained = torch._dynamo.explain(update)(batch)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), [str(r.reason)[:300] for r in explained.break_reasons]


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("bf16", 1e-2)])
def test_a_compiled_update_gives_the_numbers_of_the_eager_one(precision, tolerance):
    """The SAC update (2 critic steps, the actor and temperature step) compiled whole, against
    eager calls from the same weights, on the same batches and random draws (Inductor's
    fallback_random: the same random numbers as eager). bf16: both in bf16, within its rounding."""
    import torch._inductor.config

    # (config.patch, not pytest's monkeypatch: under torch 2.11 monkeypatch's undo deleted the option)
    with torch._inductor.config.patch(fallback_random=True):
        results = [compiled_or_eager_sac(compile_it, precision) for compile_it in (False, True)]
    (eager_infos, eager_weights), (compiled_infos, compiled_weights) = results
    for a, b in zip(eager_infos, compiled_infos):
        assert b == pytest.approx(a, rel=tolerance, abs=tolerance / 10)
    for key in eager_weights:
        torch.testing.assert_close(compiled_weights[key], eager_weights[key], rtol=tolerance, atol=tolerance / 10)


def compiled_or_eager_sac(compile_it: bool, precision: str):
    """5 SAC updates from fixed weights, batches and seed: (their logged values, the weights after)."""
    torch._dynamo.reset()
    args, actor, critic, target, alpha_param, opts = learner(precision=precision)
    step = U.CudaGraphs(enabled=False, compile=compile_it).wrap(
        lambda b: W.sac_update(actor, critic, target, alpha_param, *opts, b, args, -float(ACT)))
    torch.manual_seed(1)
    infos = [{k: float(v) for k, v in step(make_batch(i, 2 * BATCH)).items()} for i in range(5)]
    return infos, {**actor.state_dict(), **critic.state_dict(), "alpha": alpha_param.detach().clone()}


def test_the_two_critic_networks_of_fig7_compile_too():
    """--num-qs 2 (the original IQL / CQL / Cal-QL networks): the target's min takes every member,
    a draw that torch 2.13's Inductor cannot compile as x[randperm(len(x))]; compiled, all of them
    are taken in order (the same min)."""
    torch._dynamo.reset()
    args, actor, critic, target, alpha_param, opts = learner(members=2)
    step = U.CudaGraphs(enabled=False, compile=True).wrap(
        lambda b: W.sac_update(actor, critic, target, alpha_param, *opts, b, args, -float(ACT)))
    infos = [step(make_batch(i, 2 * BATCH)) for i in range(3)]  # eager, then compiled
    assert all(torch.isfinite(v).all() for info in infos for v in info.values())


def test_our_adam_is_torchs_when_called_eagerly():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), None
    b = copy.deepcopy(a)
    ours, theirs = U.Adam(a.parameters(), lr=1e-2, fused=True), torch.optim.Adam(b.parameters(), lr=1e-2, fused=True)
    for i in range(5):
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(i))
        for net, opt in ((a, ours), (b, theirs)):
            opt.zero_grad(set_to_none=True)
            net(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert ours.state_dict()["state"][0]["step"] == theirs.state_dict()["state"][0]["step"]


def test_compile_and_cuda_graphs_together_are_refused():
    with pytest.raises(SystemExit, match="use one"):
        U.use_cuda_graphs(W.Args(compile=True, cuda_graphs=True), torch.device("cpu"))


def test_a_half_written_inductor_cache_file_is_named_with_its_fix(monkeypatch, tmp_path):
    """A compile stopped part-way leaves a truncated .so in Inductor's cache and the next compile
    fails with "file too short" (pytorch#102539): --compile says which folder to delete. Any other
    error passes through unchanged."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    for message, expected in [(f"{tmp_path}/cache/ab/x.main.so: file too short", RuntimeError),
                              ("something else", ImportError)]:
        def broken(call, **kw):
            def run(batch):
                raise ImportError(message)
            return run
        monkeypatch.setattr(torch, "compile", broken)
        update = U.compiled(lambda batch: {"loss": batch["x"].sum()})
        assert update({"x": torch.ones(2)})["loss"] == 2  # the first call runs eagerly
        with pytest.raises(expected) as raised:
            update({"x": torch.ones(2)})
        if expected is RuntimeError:
            assert f"({tmp_path / 'cache'})" in str(raised.value) and "Delete that folder" in str(raised.value)
        else:
            assert str(raised.value) == message


def test_compiled_fp32_ensemble_layers_leave_their_bias_to_the_next_kernel():
    """On the CPU in fp32 a compiled update calls plain batched matmuls (bmm) and adds the ensemble
    layers' biases in the fused kernel after each, where eager calls baddbmm (inductor_with_bias_unfused)."""
    from torch.profiler import profile

    def ops(compile_it: bool) -> set:
        torch._dynamo.reset()
        args, actor, critic, target, alpha_param, opts = learner()
        step = U.CudaGraphs(enabled=False, compile=compile_it).wrap(
            lambda b: W.sac_update(actor, critic, target, alpha_param, *opts, b, args, -float(ACT)))
        step(make_batch(0, 2 * BATCH))
        step(make_batch(1, 2 * BATCH))  # (compiled: the compile)
        with profile() as prof:
            step(make_batch(2, 2 * BATCH))
        return {event.key for event in prof.key_averages()}

    eager, compiled_ops = ops(False), ops(True)
    assert "aten::baddbmm" in eager
    assert "aten::baddbmm" not in compiled_ops and "aten::bmm" in compiled_ops
