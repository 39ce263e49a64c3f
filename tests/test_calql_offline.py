"""Tests of calql_offline.py: returns-to-go, the CQL term and Cal-QL bound against values worked
out by hand, the Lagrange multiplier, checkpoints, and short runs through both phases. Whether
Cal-QL learns is for benchmark.sh, not for timed tests."""

import dataclasses
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

import calql_offline as C

import wsrl_utils as U
from conftest import write_random_dataset

TINY = dict(offline_steps=40, online_steps=40, num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=32,
            cql_n_actions=4, offline_eval_interval=40, eval_interval=40, eval_episodes=1, analysis_interval=20,
            heldout_size=50)


# ---------------------------------------------------------------------------------------------
# Returns-to-go
# ---------------------------------------------------------------------------------------------
def test_returns_to_go_dense_and_terminal():
    # two trajectories [1, 2, 3 | terminal] [4, 5] (the second ends with the arrays), gamma 0.5:
    # G = 1 + .5 * 2 + .25 * 3 = 2.75, 2 + .5 * 3 = 3.5, 3; then 4 + .5 * 5 = 6.5, 5
    g = C.returns_to_go(np.array([1, 2, 3, 4, 5.0]), np.array([0, 0, 1, 0, 0]), np.zeros(5), 0.5)
    np.testing.assert_allclose(g, [2.75, 3.5, 3.0, 6.5, 5.0])


def test_returns_to_go_stop_at_a_timeout_which_is_not_terminal():
    # a timeout cuts the sum exactly like a terminal does: nothing flows in from the next episode
    g = C.returns_to_go(np.array([1, 1, 10.0]), np.zeros(3), np.array([0, 1, 0]), 0.9)
    np.testing.assert_allclose(g, [1.9, 1.0, 10.0])


def test_returns_to_go_sparse_all_negative_trajectory_gets_the_failure_value():
    r = np.array([-5, -5, -5, -5, 5, -5, -5.0])  # trajectory 1 never succeeds, trajectory 2 does
    ends = np.array([0, 0, 1, 0, 0, 0, 0])
    g = C.returns_to_go(r, ends, np.zeros(7), 0.99, negative_reward=-5.0)
    np.testing.assert_allclose(g[:3], [-500.0] * 3)  # -5 / (1 - 0.99), not the cut sum
    # trajectory 2 is summed normally: G_6 = -5, G_5 = -5 - .99 * 5, G_4 = 5 + .99 * G_5, ...
    g6 = -5.0
    g5 = -5.0 + 0.99 * g6
    g4 = 5.0 + 0.99 * g5
    g3 = -5.0 + 0.99 * g4
    np.testing.assert_allclose(g[3:], [g3, g4, g5, g6], rtol=1e-6)
    # without the sparse rule (dense domains) the failing trajectory keeps its cut sum
    dense = C.returns_to_go(r, ends, np.zeros(7), 0.99)
    np.testing.assert_allclose(dense[2], -5.0)


def test_online_episode_is_labelled_when_it_ends_across_the_buffer_wrap():
    rb = C.ReplayBuffer(2, 1, capacity=4, device=torch.device("cpu"))
    for r in (7.0, 1.0, 2.0):  # an older episode, then 2 steps of the current one
        rb.add(np.zeros(2), np.zeros(1), r, np.zeros(2), False, False)
    rb.add(np.zeros(2), np.zeros(1), 3.0, np.zeros(2), True, True)  # the episode ends, terminal
    rb.add(np.zeros(2), np.zeros(1), 4.0, np.zeros(2), False, False)  # wraps around onto slot 0
    assert torch.isinf(rb.mc_returns[0]) and rb.mc_returns[0] < 0  # unfinished: no bound yet
    rb.add(np.zeros(2), np.zeros(1), 5.0, np.zeros(2), True, True)  # slots 0, 1 form the new episode
    C.label_last_episode(rb, 2, 0.5, None)
    torch.testing.assert_close(rb.mc_returns[[0, 1]], torch.tensor([4.0 + 0.5 * 5.0, 5.0]))


# ---------------------------------------------------------------------------------------------
# The CQL term and the Cal-QL bound (one member, one state, one action of each kind, A = 1)
# ---------------------------------------------------------------------------------------------
def gap_args(calql=True, importance=True):
    return C.Args(calql=calql, cql_importance_sample=importance)


# Q(s, a_data) = 1, Q(s, a_rand) = 2, Q(s, a_pi) = 0, Q(s, a_pi') = 3, log pi = -1, log pi' = 0.5, G = 4
def gap(args, mc=4.0):
    t = lambda v: torch.tensor(v, dtype=torch.float32)
    return C.cql_gap(t([[1.0]]), t([[[2.0]]]), t([[[0.0]]]), t([[[3.0]]]), t([[-1.0]]), t([[0.5]]), t([mc]), 1,
                     args).item()


def lse(*xs):
    return math.log(sum(math.exp(x) for x in xs))


def test_cql_gap_with_importance_sampling():
    # random action: density 0.5 on [-1, 1], so Q - log 0.5; policy actions: Q - log pi
    expected = lse(2.0 - math.log(0.5), 0.0 + 1.0, 3.0 - 0.5) - 1.0
    assert gap(gap_args(calql=False)) == pytest.approx(expected, rel=1e-6)


def test_calql_bound_raises_policy_actions_only():
    # G = 4 floors the policy actions' values: 0 -> 4 and 3 -> 4; the random action keeps 2
    expected = lse(2.0 - math.log(0.5), 4.0 + 1.0, 4.0 - 0.5) - 1.0
    assert gap(gap_args(calql=True)) == pytest.approx(expected, rel=1e-6)
    # a return below every Q changes nothing: Cal-QL = CQL there
    assert gap(gap_args(calql=True), mc=-10.0) == pytest.approx(gap(gap_args(calql=False)), rel=1e-6)
    # a huge G moves the policy terms only; if it touched the random action the value would differ
    big = gap(gap_args(calql=True), mc=50.0)
    assert big == pytest.approx(lse(2.0 - math.log(0.5), 50.0 + 1.0, 50.0 - 0.5) - 1.0, rel=1e-6)


def test_cql_gap_without_importance_sampling_includes_the_data_action():
    # kitchen: plain logsumexp over {rand, data, pi, pi'} minus log(3N + 1) = log 4
    expected = lse(2.0, 1.0, 4.0, 4.0) - math.log(4) - 1.0
    assert gap(gap_args(calql=True, importance=False)) == pytest.approx(expected, rel=1e-6)


class RecordingOptimizer:
    """Stands in for Adam: records the gradients it is asked to apply, changes nothing."""

    def __init__(self, params):
        self.params, self.grads = list(params), None

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        self.grads = [None if p.grad is None else p.grad.clone() for p in self.params]


def critic_grads(cql_alpha: float, seed: int = 0):
    torch.manual_seed(0)
    obs_dim, act_dim, E = 4, 2, 5
    actor, critic = C.Actor(obs_dim, act_dim, 16, 2), C.QEnsemble(obs_dim, act_dim, 16, 2, E)
    target = C.QEnsemble(obs_dim, act_dim, 16, 2, E)
    args = C.Args(num_qs=E, num_min_qs=2, cql_n_actions=3, cql_alpha=cql_alpha, cql_importance_sample=True,
                  cql_lagrange=False)
    batch = {"obs": torch.randn(8, obs_dim), "actions": torch.rand(8, act_dim) * 2 - 1, "rewards": torch.randn(8),
             "next_obs": torch.randn(8, obs_dim), "terminals": torch.zeros(8), "mc_returns": torch.randn(8)}
    opt = RecordingOptimizer(critic.parameters())
    torch.manual_seed(seed)  # same seed: same target members, same CQL members, same sampled actions
    info = C.update_critic_calql(critic, target, actor, torch.zeros(()), torch.zeros((), requires_grad=True), opt,
                                 None, batch, args)
    return opt.grads, info


def test_td_loss_trains_all_members_and_cql_term_only_the_sub_sampled_two():
    td_only, _ = critic_grads(0.0)
    both, info = critic_grads(1.0)
    first_layer = 0  # the weight of the first VectorizedLinear, shape (E, in, out)
    assert all(td_only[first_layer][e].abs().sum() > 0 for e in range(5))  # TD: every member
    cql_part = both[first_layer] - td_only[first_layer]  # the CQL term's own gradient
    touched = [e for e in range(5) if cql_part[e].abs().sum() > 1e-7]
    assert len(touched) == 2, touched
    assert info["cql_gap"].item() != 0.0


@pytest.mark.parametrize("target_gap, direction", [(-100.0, +1), (100.0, -1)])
def test_lagrange_multiplier_moves_the_right_way(target_gap, direction):
    """alpha' grows while the CQL gap is above the target, and shrinks below it."""
    torch.manual_seed(0)
    actor, critic, target = C.Actor(4, 2, 16, 2), C.QEnsemble(4, 2, 16, 2, 3), C.QEnsemble(4, 2, 16, 2, 3)
    args = C.Args(num_qs=3, cql_n_actions=3, cql_alpha=5.0, cql_importance_sample=True, cql_lagrange=True,
                  cql_target_gap=target_gap)
    batch = {"obs": torch.randn(8, 4), "actions": torch.rand(8, 2) * 2 - 1, "rewards": torch.randn(8),
             "next_obs": torch.randn(8, 4), "terminals": torch.zeros(8), "mc_returns": torch.randn(8)}
    alpha_param_prime = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([alpha_param_prime], lr=0.1)
    C.update_critic_calql(critic, target, actor, torch.zeros(()), alpha_param_prime,
                          torch.optim.Adam(critic.parameters()), opt, batch, args)
    assert direction * alpha_param_prime.item() > 0.05


def test_lagrange_form_weighs_the_gap_by_the_softplus_multiplier_alone():
    """Official WSRL: loss = TD + softplus(p) * (gap - target gap); --cql-alpha plays no part, and
    the multiplier starts at 1.0 (p = inverse_softplus(1))."""
    torch.manual_seed(0)
    actor, critic, target = C.Actor(4, 2, 16, 2), C.QEnsemble(4, 2, 16, 2, 3), C.QEnsemble(4, 2, 16, 2, 3)
    batch = {"obs": torch.randn(8, 4), "actions": torch.rand(8, 2) * 2 - 1, "rewards": torch.randn(8),
             "next_obs": torch.randn(8, 4), "terminals": torch.zeros(8), "mc_returns": torch.randn(8)}
    for cql_alpha in (1.0, 5.0):
        args = C.Args(num_qs=3, cql_n_actions=3, cql_alpha=cql_alpha, cql_importance_sample=True, cql_lagrange=True,
                      cql_target_gap=0.8)
        p = torch.tensor(C.inverse_softplus(1.0), requires_grad=True)
        torch.manual_seed(1)
        info = C.update_critic_calql(copy_of(critic), copy_of(target), actor, torch.zeros(()), p,
                                     torch.optim.Adam(critic.parameters(), lr=0.0), torch.optim.Adam([p], lr=0.0),
                                     batch, args)
        expected = float(info["td_loss"]) + 1.0 * (float(info["cql_gap"]) - 0.8)
        assert float(info["qf_loss"]) == pytest.approx(expected, rel=1e-5)
        assert float(info["cql_alpha_prime"]) == pytest.approx(1.0, rel=1e-6)


def copy_of(module):
    import copy

    return copy.deepcopy(module)


def test_max_target_backup_takes_the_best_of_the_sampled_next_actions():
    class FixedActor(nn.Module):  # next actions 0, 1, ..., 9 (as a 1-d action), log pi = -action
        def sample(self, obs):
            a = torch.arange(len(obs), dtype=torch.float32).remainder(C.BACKUP_ACTIONS).unsqueeze(1)
            return a, -a.squeeze(1)

    class Critic(nn.Module):  # member e: Q = e - (a - 6)^2, best action 6; min over members = the lowest e
        def forward(self, obs, action, idx=None):
            members = torch.arange(3.0) if idx is None else idx.float()
            return members.unsqueeze(1) - (action.squeeze(1) - 6.0).pow(2).unsqueeze(0)

    batch = {"next_obs": torch.zeros(2, 1), "rewards": torch.tensor([1.0, 1.0]), "terminals": torch.tensor([0.0, 1.0])}
    args = C.Args(num_qs=3, num_min_qs=3, gamma=0.5, backup_entropy=True)
    alpha_param = torch.tensor(C.inverse_softplus(0.1))
    # best action 6: min over members of Q = 0 - 0 = 0; entropy bonus of THAT action: -0.1 * (-6)
    expected = torch.tensor([1.0 + 0.5 * (0.0 + 0.6), 1.0])
    torch.testing.assert_close(C.td_target(Critic(), FixedActor(), alpha_param, batch, args, max_backup=True), expected)


def test_domain_presets_fill_only_what_was_not_given():
    args = C.Args(critic_hidden=64)
    chosen = U.apply_domain_preset(args, "kitchen")
    assert args.critic_hidden == 64 and "critic_hidden" not in chosen  # the flag wins
    assert (args.critic_layers, args.actor_hidden, args.actor_layers) == (3, 512, 3)
    assert args.cql_importance_sample is False and args.cql_alpha == 5.0
    ant = C.Args()
    U.apply_domain_preset(ant, "antmaze")
    assert ant.cql_lagrange and ant.cql_target_gap == 0.8 and ant.critic_layers == 4
    assert ant.state_dependent_std is False and args.state_dependent_std is True  # antmaze: one std per dim
    adroit = C.Args()
    U.apply_domain_preset(adroit, "adroit")
    assert adroit.cql_alpha == 1.0 and adroit.critic_hidden == 512
    assert C.SPARSE_NEGATIVE_REWARD == {"antmaze": -5.0, "pointmaze": -5.0, "adroit": -5.0}


def test_heldout_split_is_disjoint_and_capped():
    data = {"rewards": np.arange(100.0), "observations": np.arange(200.0).reshape(100, 2)}
    train, held = C.heldout_split(data, 30, seed=0)
    assert len(held["rewards"]) == 10 and len(train["rewards"]) == 90  # capped at a tenth
    assert not set(held["rewards"]) & set(train["rewards"])
    np.testing.assert_array_equal(held["observations"][:, 0], held["rewards"] * 2)  # rows stay aligned


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def make_agent(seed):
    torch.manual_seed(seed)
    args = C.Args(num_qs=3, critic_hidden=16, critic_layers=2, actor_hidden=16, actor_layers=2, cql_n_actions=2,
                  cql_alpha=5.0, cql_importance_sample=True, cql_lagrange=False, batch_size=8)
    actor, critic, target = C.Actor(4, 2, 16, 2), C.QEnsemble(4, 2, 16, 2, 3), C.QEnsemble(4, 2, 16, 2, 3)
    target.load_state_dict(critic.state_dict())
    alpha_param = torch.zeros((), requires_grad=True)
    return args, [actor, critic, target, alpha_param, *C.make_optimizers(actor, critic, alpha_param, args)]


def test_checkpoint_round_trip_restores_weights_and_optimizer_states_exactly(tmp_path):
    args, agent = make_agent(0)
    batch = {"obs": torch.randn(8, 4), "actions": torch.rand(8, 2) * 2 - 1, "rewards": torch.randn(8),
             "next_obs": torch.randn(8, 4), "terminals": torch.zeros(8), "mc_returns": torch.randn(8)}
    actor, critic, target, alpha_param, actor_opt, critic_opt, alpha_opt = agent
    for _ in range(3):  # non-trivial Adam moments and step counts
        C.calql_update(actor, critic, target, alpha_param, torch.zeros((), requires_grad=True), actor_opt, critic_opt,
                       alpha_opt, None, batch, args, -2.0)
    path = str(tmp_path / "ckpt.pt")
    C.save_checkpoint(path, *agent, args, 3, cql_lagrange_param=torch.tensor(0.25))
    _, fresh = make_agent(1)  # different initial weights
    ckpt = U.read_checkpoint(path, torch.device("cpu"))
    C.restore(ckpt, *fresh)
    for old, new in zip(agent[:3], fresh[:3]):
        for (k, a), (_, b) in zip(old.state_dict().items(), new.state_dict().items()):
            assert torch.equal(a, b), k
    assert torch.equal(agent[3], fresh[3])
    for old, new in zip(agent[4:], fresh[4:]):
        so, sn = old.state_dict(), new.state_dict()
        assert so["param_groups"] == sn["param_groups"]
        for i in so["state"]:
            for k in so["state"][i]:
                assert torch.equal(so["state"][i][k], sn["state"][i][k]), (i, k)
    assert ckpt["step"] == 3 and ckpt["cql_lagrange_param"] == 0.25 and ckpt["args"]["num_qs"] == 3
    # the learning rates stay this run's: a checkpoint must not override --actor-lr and friends
    _, other = make_agent(2)
    for group in other[4].param_groups:
        group["lr"] = 0.123
    C.restore(ckpt, *other)
    assert other[4].param_groups[0]["lr"] == 0.123 and torch.equal(
        other[4].state_dict()["state"][0]["exp_avg"], agent[4].state_dict()["state"][0]["exp_avg"])


def test_bad_checkpoints_fail_with_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint at .*calql_offline.py"):
        U.read_checkpoint(str(tmp_path / "missing.pt"), torch.device("cpu"))
    torch.save({"actor": {}}, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match="not a checkpoint of these scripts"):
        U.read_checkpoint(str(tmp_path / "other.pt"), torch.device("cpu"))


# ---------------------------------------------------------------------------------------------
# Runs through both phases on a dataset the test makes
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def dataset(sandbox):
    return write_random_dataset(C)


def run(dataset, **overrides):
    return C.main(C.Args(dataset_id=dataset, **{**TINY, **overrides}))


def record_sampling(monkeypatch):
    """Which buffer each training sample is drawn from, in order: 'offline' or 'online'."""
    calls = []
    original_from_arrays, original_sample = C.ReplayBuffer.from_arrays.__func__, C.ReplayBuffer.sample

    def from_arrays(cls, data, device):  # how main() builds the buffer of the offline data
        rb = original_from_arrays(cls, data, device)
        rb.holds_offline_data = True  # a mark on the object (an id() could be reused once it is deleted)
        return rb

    def sample(self, shape, generator, skip_newest=0):
        calls.append("offline" if getattr(self, "holds_offline_data", False) else "online")
        return original_sample(self, shape, generator, skip_newest)

    monkeypatch.setattr(C.ReplayBuffer, "from_arrays", classmethod(from_arrays))
    monkeypatch.setattr(C.ReplayBuffer, "sample", sample)
    return calls


@pytest.mark.parametrize("calql, offline_ratio, learning_starts", [
    (True, 0.0, 32),  # max(batch 32, episode length 20)
    (True, 0.5, 20),  # max(online half of the batch 16, episode length 20)
    (False, 0.0, 32),  # CQL: the batch alone (official: only Cal-QL waits for an episode)
])
def test_online_start_waits_and_calql_samples_finished_episodes_only(dataset, monkeypatch, short_episodes,
                                                                     calql, offline_ratio, learning_starts):
    """Official online start: no update before max(batch * (1 - offline ratio), [Cal-QL] one
    episode length) steps; Cal-QL's batches hold finished episodes only (a known return-to-go)."""
    batches, original = [], C.calql_update

    def calql_update(*a, **kw):
        batches.append(kw["batch"] if "batch" in kw else a[9])  # the batch
        return original(*a, **kw)

    monkeypatch.setattr(C, "calql_update", calql_update)
    run(dataset, calql=calql, offline_ratio=offline_ratio, online_steps=60)
    online = batches[40:]  # the first 40 are phase 1's
    assert len(online) == 60 - learning_starts
    if calql:
        assert all(torch.isfinite(b["mc_returns"]).all() for b in online)
    else:  # CQL samples the episode in progress too (and ignores returns-to-go)
        assert any(not torch.isfinite(b["mc_returns"]).all() for b in online)


def test_buffer_skips_the_newest_transitions_across_the_wrap():
    rb = C.ReplayBuffer(1, 1, capacity=5, device=torch.device("cpu"))
    for r in range(7):  # slots hold rewards [5, 6, 2, 3, 4]; newest 6 at slot 1, pos = 2
        rb.add(np.zeros(1), np.zeros(1), float(r), np.zeros(1), False, False)
    drawn = rb.sample((2000,), torch.Generator().manual_seed(0), skip_newest=2)["rewards"]
    assert set(drawn.tolist()) == {2.0, 3.0, 4.0}  # 5 and 6, the newest two, are never drawn


def test_no_retention_never_samples_the_dataset_online(dataset, monkeypatch, short_episodes):
    calls = record_sampling(monkeypatch)
    summary = run(dataset, offline_ratio=0.0)
    first_online = calls.index("online")
    assert calls[:first_online] == ["offline"] * 40  # phase 1: one offline batch per gradient step
    assert "offline" not in calls[first_online:]  # phase 2: the dataset is never drawn from
    assert len(summary["evals"]) == 2 and summary["evals"][0][0] == 0  # step 0 = the pre-trained agent


def test_retention_samples_the_dataset_in_every_online_update(dataset, monkeypatch, short_episodes):
    calls = record_sampling(monkeypatch)
    run(dataset, offline_ratio=0.5)
    online_part = calls[calls.index("online"):]
    # each update draws online then offline, from step 21 on (one 20-step episode first); the
    # analysis draws online only every 20 steps
    assert online_part.count("offline") == 20


def test_both_phases_log_the_analysis_and_save_a_loadable_checkpoint(dataset, short_episodes):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run(dataset, save_model=True)
    assert summary["first_losses"]["cql_gap"] != 0.0
    assert [s for s, _, _ in summary["offline_evals"]] == [40]
    assert os.path.exists(os.path.join(summary["run_dir"], "eval_curve.png"))
    assert os.path.exists(os.path.join(summary["run_dir"], "offline_eval_curve.png"))
    events = EventAccumulator(summary["run_dir"]).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"offline/eval/return", "offline/analysis/q_heldout", "offline/losses/cql_gap", "eval/return",
            "analysis/q_heldout", "analysis/td_error_heldout", "analysis/q_online", "analysis/td_error_online",
            "losses/td_loss"} <= tags
    assert [e.step for e in events.Scalars("analysis/q_heldout")] == [0, 20, 40]  # from the switch on
    # the pre-trained checkpoint starts a second run that skips phase 1 and keeps its weights
    pre = U.read_checkpoint(summary["pretrained_checkpoint"], torch.device("cpu"))
    again = run(None, pretrained_checkpoint=summary["pretrained_checkpoint"], online_steps=0, save_model=True,
                critic_hidden=64)  # the checkpoint's sizes win over this flag
    assert again["offline_evals"] == [] and "pretrained_checkpoint" not in again
    end = U.read_checkpoint(again["checkpoint"], torch.device("cpu"))
    for key in ("actor", "critic", "critic_target"):
        for name, tensor in pre[key].items():
            assert torch.equal(tensor, end[key][name]), (key, name)
    assert end["args"]["dataset_id"] == dataset  # taken from the checkpoint


def test_interrupted_pretraining_still_saves_the_checkpoint(dataset, monkeypatch, short_episodes):
    original = C.calql_update
    count = {"n": 0}

    def interrupt_on_tenth(*a, **k):
        count["n"] += 1
        if count["n"] == 10:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(C, "calql_update", interrupt_on_tenth)
    summary = run(dataset)
    ckpt = U.read_checkpoint(summary["pretrained_checkpoint"], torch.device("cpu"))
    assert ckpt["step"] == 10 and summary["evals"] == []  # no online phase after Ctrl-C


def test_missing_dataset_fails_fast(sandbox):
    with pytest.raises(SystemExit, match="(?s)not on this machine.*tools/export_dataset.py"):
        C.main(C.Args(dataset_id="local/nothing/here-v0", **{k: v for k, v in TINY.items()}))


def test_help_lists_the_flags():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "calql_offline.py", "--help"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(C.__file__)), timeout=60).stdout
    for flag in ("--offline-steps", "--online-steps", "--offline-ratio", "--no-calql", "--cql-alpha",
                 "--cql-lagrange", "--pretrained-checkpoint", "--domain", "--heldout-size"):
        assert flag in out, flag


def test_checkpoint_of_the_old_layout_is_refused_with_a_message(tmp_path):
    """Format 1 (no actor LayerNorm, `log_alpha`): a clear error, never a partial load."""
    path = str(tmp_path / "old.pt")
    old_actor = {"trunk.0.weight": torch.zeros(8, 4), "trunk.2.weight": torch.zeros(8, 8)}
    torch.save({"actor": old_actor, "critic": {}, "critic_target": {}, "log_alpha": torch.tensor(0.0),
                "actor_opt": {}, "critic_opt": {}, "alpha_opt": {}, "args": {}, "step": 1}, path)
    with pytest.raises(SystemExit, match="older version of these scripts"):
        U.read_checkpoint(path, torch.device("cpu"))
    torch.save({"format": 3}, path)
    with pytest.raises(SystemExit, match="lacks actor"):
        U.read_checkpoint(path, torch.device("cpu"))


@pytest.mark.parametrize("cut_at", [130, 200 + 55], ids=["offline", "online"])
def test_a_run_interrupted_and_resumed_equals_the_run_uninterrupted(sandbox, short_episodes, monkeypatch, cut_at):
    """Cut during pre-training (Cal-QL update 130) or fine-tuning (the 55th online update), then
    --resume: the same weights and evaluations as the run never stopped."""
    write_random_dataset(C, episodes=20)
    flags = dict(TINY, dataset_id="test/hopper/random-v0", offline_steps=200, online_steps=120, resume_interval=50,
                 eval_interval=30, save_model=True, seed=4)
    whole = C.main(C.Args(**flags))
    real, calls = C.calql_update, {"n": 0}

    def update_then_interrupt(*a, **kw):
        calls["n"] += 1
        if calls["n"] == cut_at:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(C, "calql_update", update_then_interrupt)
    cut = C.main(C.Args(**flags))
    monkeypatch.setattr(C, "calql_update", real)
    cut_ckpt = cut.get("checkpoint") and torch.load(cut["checkpoint"], weights_only=False)
    assert (not cut_ckpt) if cut_at < 200 else (cut_ckpt["complete"] is False)  # it was cut
    resumed = C.main(C.Args(resume=cut["run_dir"]))
    assert resumed["evals"] == whole["evals"] and resumed["offline_evals"] == whole["offline_evals"]
    a, b = torch.load(whole["checkpoint"], weights_only=False), torch.load(resumed["checkpoint"], weights_only=False)
    for key in ("actor", "critic", "critic_target"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
