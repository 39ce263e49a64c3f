"""--cuda-graphs: the bookkeeping around a recorded update (warm-up calls, fixed input buffers,
replays of the recorded function, outputs copied out), checked on the CPU in emulation against
plain calls: the same updates, bit for bit. (The recording itself needs a GPU.)"""

import copy

import pytest
import torch

import calql_offline as C

import wsrl_utils as U
import sac_fast as S
import wsrl_calql_sac as W
import wsrl_iql_sac as I

OBS, ACT, BATCH = 5, 2, 16


def make_batch(step: int, n: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"obs": torch.randn(n, OBS, generator=g), "actions": torch.rand(n, ACT, generator=g) * 2 - 1,
            "next_obs": torch.randn(n, OBS, generator=g), "rewards": torch.randn(n, generator=g),
            "terminals": (torch.rand(n, generator=g) < 0.1).float(), "mc_returns": torch.randn(n, generator=g)}


def learner(module=W, **kw):
    args = module.Args(**{**dict(num_qs=4, num_min_qs=2, critic_hidden=16, critic_layers=2, actor_hidden=16, actor_layers=2,
                                 last_hidden_init_scale=0.01, utd=2, batch_size=BATCH, max_target_backup=False), **kw})
    torch.manual_seed(0)
    actor = module.Actor(OBS, ACT, 16, 2, 0.01)
    critic = module.QEnsemble(OBS, ACT, 16, 2, 4, 0.01)
    target = copy.deepcopy(critic)
    alpha_param = torch.tensor(0.5, requires_grad=True)
    return args, actor, critic, target, alpha_param, module.make_optimizers(actor, critic, alpha_param, args)


def sac_run(graphs, steps: int = 7) -> tuple[list, dict]:
    args, actor, critic, target, alpha_param, opts = learner()
    torch.manual_seed(1)
    infos = []
    for step in range(steps):
        infos.append(graphs.run("sac", lambda b: W.sac_update(actor, critic, target, alpha_param, *opts, b, args, -2.0),
                                make_batch(step, 2 * BATCH)))
    return infos, {**actor.state_dict(), **{f"q.{k}": v for k, v in critic.state_dict().items()}}


def test_disabled_is_a_plain_call():
    graphs = U.CudaGraphs(enabled=False)
    assert graphs.run("k", lambda b: {"x": b["x"] * 2}, {"x": torch.ones(2)})["x"].tolist() == [2.0, 2.0]
    assert graphs.graphs == {}


def test_replayed_updates_equal_plain_updates_bit_for_bit():
    plain_infos, plain_weights = sac_run(U.CudaGraphs(enabled=False))
    graph_infos, graph_weights = sac_run(U.CudaGraphs(enabled=False, emulate=True))
    for a, b in zip(plain_infos, graph_infos):
        assert {k: float(v) for k, v in a.items()} == {k: float(v) for k, v in b.items()}
    for k in plain_weights:
        torch.testing.assert_close(graph_weights[k], plain_weights[k], rtol=0, atol=0)


def test_after_the_warmup_the_recorded_function_replays_on_the_new_batch():
    graphs = U.CudaGraphs(enabled=False, emulate=True)
    seen = []
    recorded = lambda b: seen.append(b["x"].clone()) or {"y": b["x"] + 1}  # noqa: E731
    for i in range(U.CudaGraphs.WARMUP + 1):  # warm-up calls, then the recording
        graphs.run("k", recorded, {"x": torch.tensor([float(i)])})
    # a graph replays what it recorded: a new function for the same key is never called
    out = graphs.run("k", lambda b: pytest.fail("a recorded key must replay, not call"), {"x": torch.tensor([9.0])})
    assert out["y"].item() == 10.0 and seen[-1].item() == 9.0
    later = graphs.run("k", recorded, {"x": torch.tensor([20.0])})
    assert out["y"].item() == 10.0 and later["y"].item() == 21.0  # outputs are copies, not the buffers


@pytest.mark.parametrize("which", ["calql", "iql"])
def test_calql_and_iql_updates_replay_bit_for_bit(which):
    def run(graphs):
        if which == "calql":
            args, actor, critic, target, alpha_param, opts = learner(max_target_backup=True, cql_n_actions=3)
            U.apply_domain_preset(args, "locomotion")
            lagrange = torch.tensor(0.5, requires_grad=True)
            lagrange_opt = torch.optim.Adam([lagrange], lr=3e-4)
            fn = lambda b: W.calql_update(actor, critic, target, alpha_param, lagrange, *opts, lagrange_opt, b, args, -2.0)  # noqa: E731
        else:
            args, actor, critic, target, alpha_param, opts = learner(I, expectile=0.7, awr_beta=3.0)
            value = I.ValueNet(OBS, 16, 2)
            value_opt = torch.optim.Adam(value.parameters(), lr=3e-4)
            fn = lambda b: I.iql_update(actor, critic, target, value, opts[0], opts[1], value_opt, b, args)  # noqa: E731
        torch.manual_seed(1)
        return [{k: float(v) for k, v in graphs.run(which, fn, make_batch(step, BATCH)).items()} for step in range(6)]

    assert run(U.CudaGraphs(enabled=False)) == run(U.CudaGraphs(enabled=False, emulate=True))


def test_a_whole_run_through_the_graph_path_equals_the_plain_run(sandbox, monkeypatch):
    tiny = dict(seed=3, online_steps=300, learning_starts=200, num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=32,
                eval_interval=150, eval_episodes=1)
    plain = S.main(S.Args(**tiny))
    made, real = [], U.CudaGraphs

    def emulated(enabled, **kw):  # what Run builds, in emulation, kept to look at afterwards
        made.append(real(enabled, emulate=True, **kw))
        return made[-1]

    monkeypatch.setattr(U, "CudaGraphs", emulated)
    graphed = S.main(S.Args(**tiny))
    assert graphed["first_losses"] == plain["first_losses"] and graphed["evals"] == plain["evals"]
    assert len(made) == 1 and len(made[0].graphs) == 1  # the wrapped update was recorded and replayed


def test_wrap_once_records_one_graph_per_wrapped_function_and_flag_set():
    graphs = U.CudaGraphs(enabled=False, emulate=True)
    calls = []

    def update(batch, scale=1.0):
        calls.append(scale)
        return {"y": batch["x"] * scale}

    first, second = graphs.wrap(update), graphs.wrap(update)
    for _ in range(U.CudaGraphs.WARMUP + 2):
        assert first({"x": torch.ones(2)})["y"].tolist() == [1.0, 1.0]
        assert first({"x": torch.ones(2)}, scale=3.0)["y"].tolist() == [3.0, 3.0]
        assert second({"x": torch.ones(3)})["y"].tolist() == [1.0, 1.0, 1.0]  # its own graph: another shape is fine
    assert len(graphs.graphs) == 3 and calls.count(3.0) == U.CudaGraphs.WARMUP + 2


def test_cuda_graphs_on_a_cpu_is_said_and_ignored(capsys):
    assert U.use_cuda_graphs(C.Args(cuda_graphs=True), torch.device("cpu")) is False
    assert "needs a GPU" in capsys.readouterr().out


@pytest.mark.parametrize("fused", [False, True])
def test_loading_an_optimizer_keeps_this_runs_adam_settings(fused):
    """A state saved by a --cuda-graphs run (capturable Adam) loads into a CPU run and steps there:
    the run's own settings stay (a plain load_state_dict puts back capturable=True, which the
    CPU's Adam refuses), and Adam's moments and step count come from the file."""
    saved_param = torch.nn.Parameter(torch.ones(3))
    saved = torch.optim.Adam([saved_param], lr=1e-3, capturable=True)
    saved.state[saved_param] = {"step": torch.tensor(5.0), "exp_avg": torch.full((3,), 0.1),
                                "exp_avg_sq": torch.full((3,), 0.01)}
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([param], lr=1e-3, fused=fused)
    U.load_optimizer_state(opt, saved.state_dict())
    assert opt.param_groups[0]["capturable"] is False and bool(opt.param_groups[0]["fused"]) is fused
    param.grad = torch.ones(3)
    opt.step()
    assert opt.state[param]["step"].item() == 6.0
    torch.testing.assert_close(opt.state[param]["exp_avg"], torch.full((3,), 0.9 * 0.1 + 0.1))


def test_a_batch_of_another_shape_is_refused_not_broadcast():
    graphs = U.CudaGraphs(enabled=False, emulate=True)
    for i in range(U.CudaGraphs.WARMUP + 1):
        graphs.run("k", lambda b: {"y": b["x"] * 2}, {"x": torch.ones(4)})
    with pytest.raises(ValueError, match="other keys or shapes"):
        graphs.run("k", lambda b: {"y": b["x"] * 2}, {"x": torch.ones(1)})  # copy_ would broadcast it
