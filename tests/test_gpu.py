"""On a GPU, for real: every script runs there (networks, buffer and batches on the device), a
checkpoint written there loads on a CPU, --cuda-graphs records and replays the real updates
(SAC, Cal-QL, IQL) to the numbers of plain calls, --precision bf16 stays near fp32 there, and a
--compile'd SAC update gives the numbers of plain calls.
Skipped where torch sees no GPU (CI never has one); `tools/gpu_session.sh` runs them on a lent one.
WSRL_GPU_TESTS_ON_CPU=1 rehearses them on the CPU (graphs emulated), to catch a broken test before
it costs GPU time."""

import copy
import os

import pytest
import torch

import calql_offline as C
import sac_fast as S
import wsrl_calql_sac as W
import wsrl_iql_sac as I
import wsrl_utils as U
from conftest import write_random_dataset

REHEARSAL = os.environ.get("WSRL_GPU_TESTS_ON_CPU") == "1"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available() and not REHEARSAL,
                                reason="no GPU: torch.cuda.is_available() is False")
CUDA = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # (the CPU in a rehearsal)
OBS, ACT, BATCH = 17, 6, 64


def make_batch(step: int, n: int) -> dict:
    g = torch.Generator().manual_seed(step)
    b = {"obs": torch.randn(n, OBS, generator=g), "actions": torch.rand(n, ACT, generator=g) * 2 - 1,
         "next_obs": torch.randn(n, OBS, generator=g), "rewards": torch.randn(n, generator=g),
         "terminals": (torch.rand(n, generator=g) < 0.1).float(), "mc_returns": torch.randn(n, generator=g)}
    return {k: v.to(CUDA) for k, v in b.items()}


def learner(module, graphs: bool, **kw):
    args = module.Args(**{**dict(num_qs=10, num_min_qs=2, critic_hidden=64, critic_layers=2, actor_hidden=64,
                                 actor_layers=2, last_hidden_init_scale=0.01, utd=4, batch_size=BATCH,
                                 max_target_backup=False, cuda_graphs=graphs), **kw})
    U.apply_domain_preset(args, "locomotion")  # (what main sets from the dataset: CQL weight, IQL's expectile, ...)
    torch.manual_seed(0)
    actor = module.Actor(OBS, ACT, 64, 2, 0.01).to(CUDA)
    critic = module.QEnsemble(OBS, ACT, 64, 2, 10, 0.01).to(CUDA)
    target = copy.deepcopy(critic)
    alpha_param = torch.tensor(0.5, requires_grad=True, device=CUDA)
    return args, actor, critic, target, alpha_param, module.make_optimizers(actor, critic, alpha_param, args)


def through(graphs: bool, update_of, steps: int = 8, n: int = 4 * BATCH) -> tuple[list, dict]:
    """`steps` updates, plainly or through a real CUDA graph (3 warm-up calls, the record, replays)."""
    recorder = U.CudaGraphs(enabled=graphs and CUDA.type == "cuda", emulate=graphs and CUDA.type != "cuda")
    update, weights = update_of(graphs)
    torch.manual_seed(1)
    infos = [{k: float(v) for k, v in recorder.run("u", update, make_batch(step, n)).items()} for step in range(steps)]
    if graphs:
        assert len(recorder.graphs) == 1  # it was recorded, and replayed from then on
    return infos, {k: v.detach().cpu() for k, v in weights().items()}


def same(plain, graphed, rtol=1e-4, atol=1e-5):
    for a, b in zip(plain[0], graphed[0]):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=rtol, abs=atol), key
    for key in plain[1]:
        torch.testing.assert_close(graphed[1][key], plain[1][key], rtol=rtol, atol=atol)


def test_sac_update_recorded_as_a_cuda_graph_replays_to_the_plain_numbers():
    def sac(graphs):
        args, actor, critic, target, alpha_param, opts = learner(W, graphs)
        return (lambda b: W.sac_update(actor, critic, target, alpha_param, *opts, b, args, -float(ACT)),
                lambda: {**actor.state_dict(), **{f"q.{k}": v for k, v in critic.state_dict().items()}})

    same(through(False, sac), through(True, sac))


def test_calql_and_iql_updates_recorded_as_cuda_graphs_replay_to_the_plain_numbers():
    def calql(graphs):
        args, actor, critic, target, alpha_param, opts = learner(W, graphs, cql_n_actions=10)
        lagrange = torch.zeros((), requires_grad=True, device=CUDA)
        lagrange_opt = torch.optim.Adam([lagrange], **U.adam_options(CUDA, args))
        return (lambda b: W.calql_update(actor, critic, target, alpha_param, lagrange, *opts, lagrange_opt, b, args,
                                         -float(ACT)), lambda: critic.state_dict())

    def iql(graphs):
        args, actor, critic, target, alpha_param, opts = learner(I, graphs)
        value = I.ValueNet(OBS, 64, 2).to(CUDA)
        value_opt = torch.optim.Adam(value.parameters(), lr=3e-4, **U.adam_options(CUDA, args))
        return (lambda b: I.iql_update(actor, critic, target, value, opts[0], opts[1], value_opt, b, args),
                lambda: {**critic.state_dict(), **{f"v.{k}": v for k, v in value.state_dict().items()}})

    same(through(False, calql, n=BATCH), through(True, calql, n=BATCH))
    same(through(False, iql, n=BATCH), through(True, iql, n=BATCH))


def test_bf16_on_the_gpu_stays_near_fp32():
    def sac(precision):
        args, actor, critic, target, alpha_param, opts = learner(W, False, precision=precision)
        torch.manual_seed(1)
        return W.sac_update(actor, critic, target, alpha_param, *opts, make_batch(0, 4 * BATCH), args, -float(ACT))

    fp32, bf16 = sac("fp32"), sac("bf16")
    for key in ("qf_loss", "qf_mean", "actor_loss", "entropy"):
        assert abs(float(bf16[key]) - float(fp32[key])) <= 0.02 * max(abs(float(fp32[key])), 1e-3), key


@pytest.mark.parametrize("graphs", [False, True])
def test_every_script_runs_on_the_gpu_and_its_checkpoint_loads_on_a_cpu(sandbox, graphs):
    """Short runs of every script with --cuda (and --cuda-graphs): the agent lives on the GPU,
    the run ends with finite losses, and what it saved loads on a CPU."""
    import jsrl as J
    import td3c as T

    write_random_dataset(None, episodes=20)
    tiny = dict(num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=32, eval_episodes=1, cuda_graphs=graphs,
                precision="bf16" if graphs else "fp32")
    data = dict(dataset_id="test/hopper/random-v0", heldout_size=50, offline_eval_interval=20)
    s = S.main(S.Args(online_steps=300, learning_starts=100, eval_interval=300, save_model=True, **tiny))
    c = C.main(C.Args(offline_steps=40, online_steps=0, cql_n_actions=4, **data, **tiny))
    w = W.main(W.Args(offline_steps=40, online_steps=200, warmup_steps=50, eval_interval=200, cql_n_actions=4,
                      analysis_actions=4, analysis_interval=100, save_model=True, **data, **tiny))
    i = I.main(I.Args(offline_steps=40, online_steps=200, warmup_steps=50, eval_interval=200, analysis_interval=100,
                      analysis_actions=4, **data, **tiny))
    j = J.main(J.Args(pretrained_checkpoint=c["pretrained_checkpoint"], online_steps=200, eval_interval=200,
                      **{k: v for k, v in tiny.items() if k not in ("num_qs", "critic_hidden", "actor_hidden")}))
    t = T.main(T.Args(offline_steps=40, online_steps=1100, eval_interval=1100, **data,
                      **{k: v for k, v in tiny.items() if k != "num_qs"}))
    for summary in (s, c, w, i, j, t):
        assert summary["evals"] or summary.get("offline_evals"), summary["run_dir"]
    assert next(s["policy"].parameters()).device.type == CUDA.type
    for path in (s["checkpoint"], c["pretrained_checkpoint"], w["checkpoint"]):
        ckpt = U.read_checkpoint(path, torch.device("cpu"))
        assert all(v.device.type == "cpu" for v in ckpt["actor"].values())


def test_a_compiled_sac_update_on_the_gpu_gives_the_plain_numbers():
    """--compile there (Inductor's Triton kernels on a GPU, its C++ ones in a rehearsal): the whole
    SAC update compiled, against plain calls from the same weights, on the same batches and random
    draws (Inductor's fallback_random). Last in this file: the GPU session cuts the tests at a time
    limit, and a first compile is the slowest thing here."""
    import torch._dynamo
    import torch._inductor.config

    def sac(compile_it):
        torch._dynamo.reset()
        args, actor, critic, target, alpha_param, opts = learner(W, False)
        weights = lambda: {k: v.detach().cpu().clone() for k, v in {**actor.state_dict(), **critic.state_dict()}.items()}
        start = weights()
        step = U.CudaGraphs(enabled=False, compile=compile_it).wrap(
            lambda b: W.sac_update(actor, critic, target, alpha_param, *opts, b, args, -float(ACT)))
        torch.manual_seed(1)
        infos = [{k: float(v) for k, v in step(make_batch(i, 4 * BATCH)).items()} for i in range(5)]
        return infos, {k: v - start[k] for k, v in weights().items()}  # what 5 updates moved each weight by

    with torch._inductor.config.patch(fallback_random=True):
        (plain_infos, plain_moves), (compiled_infos, compiled_moves) = sac(False), sac(True)
    # Fused kernels sum in another order: in the CPU rehearsal a qf_mean was 1.6e-4 apart after 5
    # updates, and single weights further (Adam moves a weight by about its learning rate whatever
    # its gradient's size, so where a gradient is near zero, rounding decides the sign). So the
    # weights are compared by how far 5 updates moved them, as a whole: a wrong graph moves them
    # elsewhere (a difference near 100% of the move), not 1e-4 apart.
    same((plain_infos, {}), (compiled_infos, {}), rtol=1e-3, atol=1e-4)
    for key, move in plain_moves.items():
        apart = float((compiled_moves[key] - move).norm() / move.norm().clamp_min(1e-12))
        assert apart <= 0.05, (key, apart)
