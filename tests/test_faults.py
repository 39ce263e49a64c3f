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
    assert "--resume continues a run with the settings it began with; drop --seed, --utd (" in str(stop.value)  # (in the order of --help)


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


# ---------------------------------------------------------------------------------------------
# What a run was made from: a resume refuses a dataset changed since; a checkpoint warns
# ---------------------------------------------------------------------------------------------
def remake_dataset(dataset_id: str, episodes: int) -> None:
    """The same id, other contents (a dataset made again)."""
    import shutil

    from conftest import write_random_dataset
    from minari.storage import get_dataset_path

    shutil.rmtree(get_dataset_path(dataset_id), ignore_errors=True)
    write_random_dataset(S, dataset_id, episodes=episodes)


def test_a_resume_on_a_dataset_replaced_since_is_refused_and_a_checkpoint_warns(sandbox, capsys):
    import calql_offline as C

    remake_dataset("test/hopper/random-v0", 30)
    tiny = dict(num_qs=2, critic_hidden=16, actor_hidden=16, batch_size=16, eval_episodes=1)
    summary = S.main(S.Args(dataset_id="test/hopper/random-v0", offline_ratio=0.5, online_steps=300, learning_starts=50,
                            eval_interval=300, resume_interval=20, save_model=True, **tiny))
    point = torch.load(os.path.join(summary["run_dir"], "resume.pt"), weights_only=False)
    ckpt = torch.load(summary["checkpoint"], weights_only=False)
    recorded = point["dataset"]
    assert recorded["id"] == "test/hopper/random-v0" and len(recorded["fingerprint"]) == 16
    assert ckpt["dataset"] == recorded  # the checkpoint records the same
    S.main(S.Args(resume=summary["run_dir"]))  # unchanged data: resumes
    remake_dataset("test/hopper/random-v0", 31)  # one episode more: other contents, same id
    with pytest.raises(SystemExit) as stop:
        S.main(S.Args(resume=summary["run_dir"]))
    assert f"dataset 'test/hopper/random-v0' has changed since the run {summary['run_dir']} began" in str(stop.value)
    assert recorded["fingerprint"] in str(stop.value) and len(str(stop.value).splitlines()) == 1
    # a checkpoint fine-tuned on the data made again: a warning (the user may mean it), the run goes on
    pre = C.main(C.Args(dataset_id="test/hopper/random-v0", offline_steps=10, online_steps=0, offline_eval_interval=10,
                        **tiny))["pretrained_checkpoint"]
    capsys.readouterr()
    remake_dataset("test/hopper/random-v0", 32)
    W.main(W.Args(pretrained_checkpoint=pre, online_steps=30, warmup_steps=10, eval_interval=30, **{
        k: v for k, v in tiny.items() if k not in ("num_qs", "critic_hidden", "actor_hidden")}))
    out = capsys.readouterr().out
    assert "WARNING: dataset 'test/hopper/random-v0' has changed since the checkpoint was made" in out


def test_the_fingerprint_follows_the_contents():
    data = {"observations": np.zeros((4, 3), np.float32), "rewards": np.arange(4, dtype=np.float32)}
    same = {k: v.copy() for k, v in data.items()}
    other = {**same, "rewards": np.array([0, 1, 2, 4], np.float32)}
    assert U.data_fingerprint(data) == U.data_fingerprint(same) != U.data_fingerprint(other)
    U.check_same_data({"id": "a", "fingerprint": "x"}, {"id": "b", "fingerprint": "y"}, "it", refuse=True)  # other id
    U.check_same_data(None, {"id": "a", "fingerprint": "y"}, "it", refuse=True)  # an older file: nothing recorded
    with pytest.raises(SystemExit):
        U.check_same_data({"id": "a", "fingerprint": "x"}, {"id": "a", "fingerprint": "y"}, "it", refuse=True)


def test_a_truncated_dataset_file_is_one_line(sandbox):
    remake_dataset("test/hopper/random-v0", 30)
    from minari.storage import get_dataset_path

    path = os.path.join(get_dataset_path("test/hopper/random-v0"), "data", "main_data.hdf5")
    with open(path, "r+b") as f:  # cut short (a copy, a full disk)
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(SystemExit) as stop:
        S.main(S.Args(dataset_id="test/hopper/random-v0", offline_ratio=0.5, online_steps=100, learning_starts=50))
    assert str(stop.value).startswith("error: dataset 'test/hopper/random-v0' cannot be read (")
    assert "damaged" in str(stop.value) and len(str(stop.value).splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# Cal-QL online budgets that end before its first update
# ---------------------------------------------------------------------------------------------
def test_a_cal_ql_online_budget_below_its_first_update_is_refused_before_pretraining(sandbox):
    import calql_offline as C

    remake_dataset("test/hopper/random-v0", 30)
    for module, extra in ((C, {}), (W, {"online_algo": "calql", "warmup_steps": 0})):
        with pytest.raises(SystemExit) as stop:  # Hopper: 1,000-step episodes; the first update after step 1,000
            module.main(module.Args(dataset_id="test/hopper/random-v0", online_steps=600, **extra))
        assert "--online-steps 600 ends before Cal-QL's first online update, after step 1,000" in str(stop.value)
        assert not os.path.exists(sandbox / "runs")  # before any pre-training or run folder
    args = C.Args(online_steps=600, calql=False, batch_size=256)  # CQL: the online part of a batch only
    env = U.build_env("Hopper-v5", 0)
    assert C.calql_online_start(args, env) == 256
    assert C.calql_online_start(C.Args(online_steps=0), env) == 1000  # pre-training alone: nothing to refuse
    assert C.calql_online_start(C.Args(online_steps=600, calql=False, batch_size=256, offline_ratio=0.5), env) == 128


# ---------------------------------------------------------------------------------------------
# Datasets written by the tools: the disk checked first; a failed write one line, nothing left
# ---------------------------------------------------------------------------------------------
def fail_like_a_full_disk(monkeypatch):
    """Minari's writer leaves a partial file, then h5py reports a full disk."""
    import minari

    def full_disk(dataset_id, *args, **kwargs):
        from minari.storage import get_dataset_path

        folder = os.path.join(get_dataset_path(dataset_id), "data")
        os.makedirs(folder)
        with open(os.path.join(folder, "main_data.hdf5"), "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(minari, "create_dataset_from_buffers", full_disk)


def tools_module(name):
    import importlib
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    return importlib.import_module(name)


def test_make_datasets_refuses_no_envs_and_a_disk_too_small_before_recording(sandbox, monkeypatch):
    M = tools_module("make_datasets")
    with pytest.raises(SystemExit, match="--num-envs is 0; it must be at least 1"):
        M.make(M.Make(num_envs=0))
    # per transition, float32: the file (17 + 6 + 3) and the flat cache (2 x 17 + 6 + 3) = 69 x 4 = 276 bytes;
    # 1M of them with 20% to spare and 1 MB: 1.2 x 276 MB + 1 MB = 332.2 MB
    assert U.dataset_bytes(1_000_000, 17, 6) == 332_200_000
    monkeypatch.setattr(U.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 50_000_000})())
    with pytest.raises(SystemExit) as stop:
        M.make(M.Make(size=1_000_000))
    assert str(stop.value).startswith("error: 1 dataset of --size 1,000,000: about 332 MB needed in ")
    assert "whose disk has 50 MB free" in str(stop.value)
    assert not os.path.exists(sandbox / "minari" / "local")


def test_a_full_disk_while_a_dataset_is_written_leaves_nothing_and_keeps_the_old_one(sandbox, monkeypatch):
    M = tools_module("make_datasets")
    policies = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "policies")
    M.make(M.Make(envs=["hopper"], size=300, num_envs=2, policy_dir=policies))  # the dataset that is there
    before = U.load_offline_data("local/hopper/medium-v0", "locomotion")[1]["fingerprint"]
    with pytest.MonkeyPatch.context() as patch:
        fail_like_a_full_disk(patch)
        with pytest.raises(SystemExit) as stop:
            M.make(M.Make(envs=["hopper"], size=400, num_envs=2, overwrite=True, policy_dir=policies))
    message = str(stop.value)
    assert message.startswith("error: cannot write dataset local/hopper/medium-v0: No space left on device.")
    assert "is as it was" in message and len(message.splitlines()) == 1
    folders = [f for f in os.listdir(sandbox / "minari" / "local" / "hopper") if not f.endswith(".json")]
    assert folders == ["medium-v0"]  # no partial dataset, no old one left aside
    assert U.load_offline_data("local/hopper/medium-v0", "locomotion")[1]["fingerprint"] == before


def test_an_export_that_cannot_be_written_keeps_the_runs_agent_and_says_where(sandbox, monkeypatch):
    E = tools_module("export_dataset")
    fail_like_a_full_disk(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        E.main(E.Export(save_dataset_id="local/hopper/replay-v0", sac=S.Args(
            online_steps=80, learning_starts=40, num_qs=2, critic_hidden=16, actor_hidden=16, batch_size=16,
            eval_interval=80, eval_episodes=1)))
    message = str(stop.value)
    assert message.startswith("error: cannot write dataset local/hopper/replay-v0: No space left on device.")
    kept = message.split("the run's agent is kept in ")[1].rstrip(".")
    assert os.path.isfile(kept) and torch.load(kept, weights_only=False)["step"] == 80
    assert os.listdir(sandbox / "minari" / "local" / "hopper") == []  # (made by the folder check) no partial dataset
