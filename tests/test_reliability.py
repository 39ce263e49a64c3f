"""What goes wrong stops loudly, and nothing half-written looks whole: settings that would train but
mean nothing, NaN data, divergence, wrong environments and files, and runs cut short."""

import os
import sys

import numpy as np
import pytest

import calql_offline as C

import wsrl_utils as U
import jsrl as J
import sac_fast as S
import wsrl_calql_sac as W
import wsrl_iql_sac as I
from conftest import ROOT, write_random_dataset

sys.path.insert(0, os.path.join(ROOT, "tools"))
import export_dataset as E  # noqa: E402

TINY_SAC = dict(online_steps=40, learning_starts=20, num_qs=3, critic_hidden=16, actor_hidden=16, batch_size=16,
                eval_interval=40, eval_episodes=1)

CASES = [
    (S, dict(online_steps=0), "--online-steps is 0; it must be at least 1"),
    (S, dict(online_steps=100, learning_starts=200), "the agent would never learn"),
    (S, dict(num_qs=2, num_min_qs=5), "--num-min-qs is 5; the target is a minimum over that many of the --num-qs 2"),
    (S, dict(batch_size=0), "--batch-size is 0; it must be at least 1"),
    (S, dict(utd=0), "--utd is 0; it must be at least 1"),
    (S, dict(critic_lr=1e3), "--critic-lr is 1000; it must be in (0, 1)"),
    (S, dict(dataset_id="test/hopper/random-v0"), "is sampled only with --offline-ratio > 0"),
    (C, dict(offline_steps=-5), "--offline-steps is -5; it must be at least 1"),
    (C, dict(offline_steps=0), "--offline-steps is 0; it must be at least 1"),
    (C, dict(online_steps=-1, eval_episodes=0), "--online-steps is -1"),
    (W, dict(offline_steps=-5), "--offline-steps is -5"),
    (W, dict(num_qs=2, num_min_qs=3), "--num-min-qs is 3"),
    (W, dict(policy_freeze_steps=-1), "--policy-freeze-steps is -1"),
    (I, dict(offline_steps=-5, actor_lr=0.0), "--actor-lr is 0; it must be in (0, 1)"),
    (I, dict(analysis_interval=0), "--analysis-interval is 0"),
]


@pytest.mark.parametrize("module, flags, message", CASES, ids=[f"{m.__name__}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_meaningless_settings_stop_before_anything_is_made(sandbox, module, flags, message):
    with pytest.raises(SystemExit) as stop:
        module.main(module.Args(**flags))
    assert str(stop.value).startswith("error: ") and message in str(stop.value)
    assert not os.path.exists(sandbox / "runs")


def test_every_problem_is_listed_at_once(sandbox):
    with pytest.raises(SystemExit) as stop:
        S.main(S.Args(online_steps=-3, batch_size=0, temp_lr=2.0))
    text = str(stop.value)
    assert "--online-steps is -3" in text and "--batch-size is 0" in text and "--temp-lr is 2" in text
    assert len(text.splitlines()) == 3  # one line each


def test_jsrl_checks_its_budget_and_the_checkpoints_ensemble(sandbox):
    ckpt = S.main(S.Args(save_model=True, **TINY_SAC))["checkpoint"]
    with pytest.raises(SystemExit, match="--online-steps is 0"):
        J.main(J.Args(pretrained_checkpoint=ckpt, online_steps=0))
    with pytest.raises(SystemExit, match="--num-min-qs is 4; .* --num-qs 3 critics"):  # 3 critics in the checkpoint
        J.main(J.Args(pretrained_checkpoint=ckpt, num_min_qs=4))


def test_a_dataset_with_nan_is_refused_at_load_time_with_where(sandbox):
    env = U.build_env("Hopper-v5", 0)
    import torch

    rb = S.ReplayBuffer(11, 3, 200, torch.device("cpu"))
    obs, _ = env.reset(seed=0)
    for _ in range(60):
        (o, a, r, next_o, terminated, ended), obs, _ = S.env_step(env, obs, env.action_space.sample())
        rb.add(o, a, r if rb.size != 7 else float("nan"), next_o, terminated, ended)
        if ended:
            obs, _ = env.reset()
    E.save_minari("test/hopper/nan-v0", rb.episodes(), "Hopper-v5", U.D4RL_REF_SCORES["hopper"], "random")
    for module, flags in ((S, dict(offline_ratio=0.5)), (C, {}), (W, {}), (I, {})):
        with pytest.raises(SystemExit, match=r"non-finite rewards in 1 transitions \(the first at transition 7\)"):
            module.main(module.Args(dataset_id="test/hopper/nan-v0", **flags))


def test_a_dataset_of_another_body_is_refused(sandbox):
    write_random_dataset(S, episodes=3)
    for module, flags in ((S, dict(offline_ratio=0.5)), (C, {}), (W, {}), (I, {})):
        with pytest.raises(SystemExit, match="recorded in Hopper-v5, not Walker2d-v5: drop --env-id"):
            module.main(module.Args(dataset_id="test/hopper/random-v0", env_id="Walker2d-v5", **flags))
    # another version of the same body is allowed (the check is on the body, not the version)
    assert S.env_id_for("d/hopper/x-v0", {"env_id": "Hopper-v5"}, "Hopper-v4") == "Hopper-v4"
    assert S.env_id_for("d/hopper/x-v0", {"env_id": "Hopper-v5"}, None) == "Hopper-v5"


def poisoned(original, after: int):
    """An update function that returns a NaN critic loss from its `after`-th call on."""
    calls = {"n": 0}

    def update(*a, **kw):
        info = original(*a, **kw)
        calls["n"] += 1
        if calls["n"] >= after:
            info["qf_loss"] = info["qf_loss"] * float("nan")
        return info

    return update


def test_a_nan_loss_stops_the_run_and_saves_no_result(sandbox, monkeypatch):
    monkeypatch.setattr(S, "sac_update", poisoned(S.sac_update, after=5))
    with pytest.raises(SystemExit, match=r"diverged at online step 100: qf_loss not finite\. Nothing was saved"):
        S.main(S.Args(online_steps=300, learning_starts=50, save_model=True, **{k: v for k, v in TINY_SAC.items()
                                                                                 if k not in ("online_steps", "learning_starts")}))
    assert not list(sandbox.glob("runs/*/*.pt"))  # no checkpoint that could pass for a trained agent
    monkeypatch.setattr(C, "calql_update", poisoned(C.calql_update, after=1))
    write_random_dataset(S, episodes=5)
    with pytest.raises(SystemExit, match=r"diverged at offline step 100: qf_loss not finite"):
        C.main(C.Args(dataset_id="test/hopper/random-v0", offline_steps=200, online_steps=0, num_qs=2, critic_hidden=16,
                      actor_hidden=16, batch_size=16, cql_n_actions=2, heldout_size=20))
    assert not list(sandbox.glob("runs/*/*.pt"))  # not even the "pre-trained" checkpoint


def test_a_simulator_that_returns_nan_stops_the_run(sandbox, monkeypatch):
    import gymnasium

    class Blows(gymnasium.Wrapper):
        def step(self, action):
            obs, r, term, trunc, info = self.env.step(action)
            return obs * float("nan"), r, term, trunc, info

    make = U.build_env
    monkeypatch.setattr(U, "build_env", lambda env_id, seed, spec=None, render=False: Blows(make(env_id, seed, spec, render)))
    with pytest.raises(SystemExit, match="Hopper-v5 returned a non-finite observation or reward"):
        S.main(S.Args(save_model=True, **TINY_SAC))
    assert not list(sandbox.glob("runs/*/*.pt"))


def test_wrong_environments_and_files_get_one_line_each(sandbox, tmp_path):
    with pytest.raises(SystemExit, match="CartPole-v1 has Discrete\\(2\\) actions .* need continuous \\(Box\\) actions"):
        S.main(S.Args(env_id="CartPole-v1", **TINY_SAC))
    with pytest.raises(SystemExit, match="cannot make environment 'Hoppper-v5'"):
        S.main(S.Args(env_id="Hoppper-v5", **TINY_SAC))
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(SystemExit, match="is not a checkpoint these scripts can read \\(torch.load: "):
        W.main(W.Args(pretrained_checkpoint=str(text)))
    # a Hopper agent asked to act in Walker2d: one sentence with both sizes, and no run folder left
    ckpt = S.main(S.Args(save_model=True, **TINY_SAC))["checkpoint"]
    runs = set(os.listdir(sandbox / "runs"))
    with pytest.raises(SystemExit, match=r"trained on Hopper-v5 \(11-dim observations, 3-dim actions\); "
                                         r"Walker2d-v5 has 17 and 6\. Pass --env-id Hopper-v5"):
        J.main(J.Args(pretrained_checkpoint=ckpt, env_id="Walker2d-v5"))
    assert set(os.listdir(sandbox / "runs")) == runs


def test_a_checkpoint_write_cut_short_leaves_nothing_under_the_real_name(sandbox, monkeypatch):
    import torch

    def full_disk(obj, path, *a, **kw):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as stop:  # one line that says which file and why, and where the logs are
        S.main(S.Args(save_model=True, **TINY_SAC))
    assert str(stop.value).startswith("error: cannot write runs/") and "No space left on device" in str(stop.value)
    assert len(str(stop.value).splitlines()) == 1
    assert not list(sandbox.glob("runs/*/*.pt")) and not list(sandbox.glob("runs/*/*.tmp"))  # nothing half-written


def test_a_pretraining_cut_short_is_marked_and_warned_about_and_has_no_fine_tuned_copy(sandbox, monkeypatch, capsys,
                                                                                   short_episodes):
    write_random_dataset(S, episodes=5)
    original, calls = C.calql_update, {"n": 0}

    def interrupt_at_5(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # what Ctrl-C does inside the loop
        return original(*a, **kw)

    monkeypatch.setattr(C, "calql_update", interrupt_at_5)
    summary = C.main(C.Args(dataset_id="test/hopper/random-v0", offline_steps=200, online_steps=50, save_model=True,
                            num_qs=2, critic_hidden=16, actor_hidden=16, batch_size=16, cql_n_actions=2, heldout_size=20))
    import torch

    ckpt = torch.load(summary["pretrained_checkpoint"], weights_only=True)
    assert ckpt["complete"] is False and ckpt["step"] == 5 and ckpt["planned_steps"] == 200
    assert "checkpoint" not in summary and len(list(sandbox.glob("runs/*/*.pt"))) == 1  # no "fine-tuned" copy
    capsys.readouterr()
    U.read_checkpoint(summary["pretrained_checkpoint"], torch.device("cpu"))
    out = capsys.readouterr().out
    assert "WARNING: " in out and "cut short (Ctrl-C) at step 5 of 200; it is used as it is" in out


def test_a_dataset_write_cut_short_leaves_nothing_and_a_cut_short_dataset_warns(sandbox, monkeypatch, capsys):
    import minari

    real = minari.create_dataset_from_buffers

    def full_disk(dataset_id, *a, **kw):
        real(dataset_id, *a, **kw)  # the files are there ...
        raise OSError(28, "No space left on device")  # ... but the write did not finish

    monkeypatch.setattr(minari, "create_dataset_from_buffers", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_random_dataset(S, "test/hopper/cut-v0", episodes=2)
    assert "test/hopper/cut-v0" not in minari.list_local_datasets()
    assert not [p for p in (sandbox / "minari").rglob("*") if "cut" in p.name]  # not even the temporary folder
    monkeypatch.setattr(minari, "create_dataset_from_buffers", real)
    # written whole: under its real id, loadable, marked complete; one marked incomplete warns at load
    write_random_dataset(S, "test/hopper/cut-v0", episodes=2)
    assert minari.load_dataset("test/hopper/cut-v0").spec.dataset_id == "test/hopper/cut-v0"
    env = U.build_env("Hopper-v5", 0)
    import torch

    rb = S.ReplayBuffer(11, 3, 100, torch.device("cpu"))
    obs, _ = env.reset(seed=0)
    for _ in range(30):
        (o, a, r, next_o, terminated, ended), obs, _ = S.env_step(env, obs, env.action_space.sample())
        rb.add(o, a, r, next_o, terminated, ended)
    E.save_minari("test/hopper/short-v0", rb.episodes(), "Hopper-v5", (0.0, 1.0), "unit-test", complete=False)
    capsys.readouterr()
    _, metadata = S.load_offline_data("test/hopper/short-v0", "locomotion")
    assert metadata["complete"] is False
    assert "WARNING: dataset 'test/hopper/short-v0' was saved by a run cut short" in capsys.readouterr().out


def test_a_dataset_folder_that_cannot_be_written_is_found_before_training(sandbox, monkeypatch):
    blocker = sandbox / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(blocker / "datasets"))
    with pytest.raises(SystemExit, match="cannot write the dataset .* Set MINARI_DATASETS_PATH to a folder you can write"):
        E.main(E.Export(save_dataset_id="test/hopper/nowhere-v0", sac=S.Args(**TINY_SAC)))
    assert not os.path.exists(sandbox / "runs")  # refused before any training


def test_ctrl_c_while_the_demo_makes_its_dataset_stops_the_demo_and_leaves_no_dataset(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during demo.sh's step 1: the demo
    stops there, and no partial dataset is left for a later demo to reuse."""
    import signal
    import subprocess
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    before = set(os.listdir(os.path.join(root, "runs"))) if os.path.isdir(os.path.join(root, "runs")) else set()
    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / "minari"), HF_ENDPOINT="http://127.0.0.1:9")
    p = subprocess.Popen(["bash", os.path.join(root, "demo.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(4)  # inside step 1: recording 100k transitions takes longer than this
        os.killpg(p.pid, signal.SIGINT)
        out, _ = p.communicate(timeout=120)
    finally:
        for name in set(os.listdir(os.path.join(root, "runs"))) - before:  # the demo's (empty) output folder
            import shutil

            shutil.rmtree(os.path.join(root, "runs", name), ignore_errors=True)
    assert p.returncode != 0, out
    assert "===== step 1" in out and "===== step 2" not in out, out
    assert not (tmp_path / "minari" / "local" / "halfcheetah" / "medium-v0").exists()
    leftovers = [str(x) for x in (tmp_path / "minari").rglob("*") if x.is_dir() and "partial" in x.name]
    assert not leftovers, leftovers


def test_resume_points_of_an_environment_that_is_not_mujoco_say_they_are_inexact(capsys):
    """MountainCarContinuous (classic control): its state is not saved, so the resumed run starts a
    fresh episode with the saved random streams, and says so, instead of crashing at the first point."""
    env = U.build_env("MountainCarContinuous-v0", 0)
    env.reset(seed=0)
    snap = S.env_snapshot(env)
    assert snap["inexact"] is True and "qpos" not in snap
    obs = S.restore_env(env, snap, obs=np.zeros(2))
    assert obs.shape == (2,) and not np.all(obs == 0)  # the fresh episode's observation, not the stale one
    assert "not saved (not MuJoCo)" in capsys.readouterr().out
    hopper = U.build_env("Hopper-v5", 0)
    first, _ = hopper.reset(seed=0)
    assert "inexact" not in S.env_snapshot(hopper)
