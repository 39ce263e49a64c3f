"""Faults and lookalikes (the cases of the reliability issue that the support module now handles):
a signal or a full disk while a file is written, a resume point of the right size, values no
discount or Polyak rate can take, run names that would leave runs/, budgets with no update, a
batch larger than the buffer, a checkpoint of another environment with the same sizes, flags
given with --resume, a damaged resume point, another script's run folder."""

import os
import pickle
import signal

import numpy as np
import pytest
import torch

import sac_fast as S
import td3c as T
import wsrl_calql_sac as W
import wsrl_utils as U


# ---------------------------------------------------------------------------------------------
# Writes: whole or not at all
# ---------------------------------------------------------------------------------------------
class SignalWhilePickled:
    """An object that sends a signal to this process while torch.save pickles it."""

    def __init__(self, signum):
        self.signum = signum

    def __reduce__(self):
        os.kill(os.getpid(), self.signum)
        return (dict, ())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_write_waits_until_the_file_is_whole(tmp_path, signum):
    path = str(tmp_path / "resume.pt")
    U.atomic_save({"step": 1}, path)  # the previous point
    previous = U.interrupt_on_sigterm()  # as during a run: SIGTERM raises KeyboardInterrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            U.atomic_save({"step": 2, "weights": torch.ones(1000), "x": SignalWhilePickled(signum)}, path)
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    # the interrupt came after the new point was whole and in place, and no temporary file is left
    assert torch.load(path, weights_only=False)["step"] == 2
    assert os.listdir(tmp_path) == ["resume.pt"]


def test_a_full_disk_leaves_the_previous_file_and_says_so_in_one_line(tmp_path, monkeypatch):
    path = str(tmp_path / "resume.pt")
    U.atomic_save({"step": 1}, path)

    def full_disk(obj, f):
        with open(f, "wb") as out:
            out.write(b"half")  # what a write cut short leaves
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed\nNo space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as err:
        U.atomic_save({"step": 2}, path)
    assert str(err.value) == f"cannot write {path}: No space left on device"
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["step"] == 1 and os.listdir(tmp_path) == ["resume.pt"]


def test_a_checkpoint_that_cannot_be_written_is_a_one_line_error(tmp_path, monkeypatch):
    def full_disk(obj, f):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as stop:
        U.save_or_exit({"x": 1}, str(tmp_path / "agent.pt"))
    assert str(stop.value).startswith(f"error: cannot write {tmp_path / 'agent.pt'}: No space left on device")
    assert os.listdir(tmp_path) == []


def test_a_resume_point_that_cannot_be_written_keeps_the_previous_one_and_training_goes_on(sandbox, monkeypatch,
                                                                                           capsys):
    real, calls = U.atomic_save, []

    def second_fails(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(f"cannot write {path}: No space left on device")
        real(obj, path)

    monkeypatch.setattr(U, "atomic_save", second_fails)
    summary = S.main(S.Args(online_steps=300, learning_starts=50, num_qs=2, critic_hidden=16, actor_hidden=16,
                            batch_size=16, eval_interval=300, eval_episodes=1, resume_interval=20))
    assert len(calls) >= 3 and summary["evals"][-1][0] == 300  # the run went on to its end
    out = capsys.readouterr().out
    assert "WARNING: cannot write" in out and "no resume point at step" in out and "is kept" in out


def test_a_resume_point_holds_the_buffers_contents_not_its_capacity():
    rb = U.ReplayBuffer(11, 3, 100_000, torch.device("cpu"))
    for _ in range(10):
        rb.add(np.zeros(11), np.zeros(3), 0.0, np.zeros(11), False, False)
    size = len(pickle.dumps(rb.state_dict()))
    assert size < 20_000, size  # 10 transitions, not the 100,000 rows of storage behind them (~10 MB)


# ---------------------------------------------------------------------------------------------
# Settings refused before anything is made
# ---------------------------------------------------------------------------------------------
CASES = [
    (S, dict(gamma=1.5), "--gamma is 1.5; it must be in (0, 1]"),
    (S, dict(tau=2.0), "--tau is 2; it must be in (0, 1]"),
    (S, dict(tau=-1.0), "--tau is -1; it must be in (0, 1]"),
    (S, dict(exp_name="my/run"), "--exp-name is 'my/run'"),
    (S, dict(exp_name=".."), "--exp-name is '..'"),
    (W, dict(warmup_steps=5000, online_steps=200), "--online-steps 200 is below --warmup-steps 5,000"),
    (W, dict(heldout_size=0), "--heldout-size is 0; it must be at least 1"),
    (W, dict(resume_interval=-1), "--resume-interval is -1; it must be at least 0"),
    (T, dict(gamma=0.0), "--gamma is 0; it must be in (0, 1]"),
    (S, dict(batch_size=20_000_000), "--batch-size 20,000,000 x --utd 1 is more transitions per step than the replay"),
]


@pytest.mark.parametrize("module, flags, message", CASES, ids=[f"{m.__name__}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_values_no_run_can_take_are_refused(sandbox, module, flags, message):
    with pytest.raises(SystemExit) as stop:
        module.main(module.Args(**flags))
    assert str(stop.value).startswith("error: ") and message in str(stop.value)
    assert not os.path.exists(sandbox / "runs")


def test_pretraining_alone_is_still_allowed_with_the_default_warmup():
    U.check_args(W.Args(online_steps=0), {})  # --online-steps 0: pre-train only, whatever the warmup
    U.check_args(W.Args(warmup_steps=200, online_steps=200), {})  # the warmup alone, no update: on purpose
    U.check_args(W.Args(warmup_policy="dataset", warmup_steps=5000, online_steps=200), {})  # no warmup steps then


def test_a_checkpoint_of_another_environment_with_the_same_sizes_is_refused():
    ckpt = {"env_id": "HalfCheetah-v5", "args": {},
            "actor": {"trunk.0.weight": torch.zeros(8, 17), "mean.weight": torch.zeros(6, 8)}}
    with pytest.raises(SystemExit, match="trained on HalfCheetah-v5; this run's environment is Walker2d-v5"):
        U.check_checkpoint_fits(ckpt, 17, 6, "Walker2d-v5")  # the sizes fit, the body does not
    U.check_checkpoint_fits(ckpt, 17, 6, "HalfCheetah-v5")
    td3 = {**ckpt, "actor": {"trunk.0.weight": torch.zeros(8, 17), "head.weight": torch.zeros(6, 8)}}
    with pytest.raises(SystemExit, match="this run's environment is Walker2d-v5"):  # td3c.py's agents too
        U.check_checkpoint_fits(td3, 17, 6, "Walker2d-v5", action_head="head")
    U.check_same_environment({"args": {}}, "Walker2d-v5")  # an old checkpoint that names none: nothing to check


def test_flags_given_with_resume_are_refused_not_dropped(sandbox):
    with pytest.raises(SystemExit) as stop:
        S.main(S.Args(resume="runs/whatever", seed=3, utd=4))
    assert "--resume continues a run with the settings it began with; drop --utd, --seed (" in str(stop.value)  # (in the order of --help)


def test_a_damaged_resume_point_or_another_scripts_run_is_one_line(sandbox):
    import calql_offline as C

    summary = S.main(S.Args(online_steps=300, learning_starts=50, num_qs=2, critic_hidden=16, actor_hidden=16,
                            batch_size=16, eval_interval=300, eval_episodes=1, resume_interval=20))
    run_dir = summary["run_dir"]
    with pytest.raises(SystemExit, match="is a run of another script, or of another version of calql_offline.py"):
        C.main(C.Args(resume=run_dir))  # a sac_fast.py run resumed by calql_offline.py
    path = os.path.join(run_dir, "resume.pt")
    with open(path, "r+b") as f:  # cut short by something else than the script (a copy, a broken disk)
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(SystemExit) as stop:
        S.main(S.Args(resume=run_dir))
    assert str(stop.value).startswith(f"error: {path} cannot be read (") and "damaged" in str(stop.value)
    assert len(str(stop.value).splitlines()) == 1
