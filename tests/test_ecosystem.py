"""Tests of what users bring from CleanRL: --track (Weights & Biases, offline here) and
--capture-video (evaluation episodes filmed off-screen)."""

import glob
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import wsrl_utils as U
from conftest import ROOT, write_random_dataset

TINY = ["--num-qs", "3", "--critic-hidden", "32", "--actor-hidden", "32", "--batch-size", "8", "--cql-n-actions", "4",
        "--heldout-size", "50", "--analysis-actions", "4", "--eval-episodes", "2"]


def wandb_records(path: str):
    """The records of a W&B run file (run-*.wandb), read back without W&B's own reader: a 7-byte
    header (":W&B", a magic number, a version), then 32 KiB blocks of LevelDB-log chunks (crc32,
    length, type: 1 whole, 2 first, 3 middle, 4 last), each record a protobuf `Record`."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", data[:7]
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a record is whole
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def history(path: str) -> list:
    """Every history row of the W&B run: {key: value}, nested keys joined with '/'."""
    return [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            for r in wandb_records(path) if r.WhichOneof("record_type") == "history"]


def tensorboard_scalars(run_dir: str) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def frames(path: str) -> int:
    import imageio

    with imageio.get_reader(path) as reader:
        return reader.count_frames()


def test_track_and_capture_video_offline_leave_a_wandb_run_with_the_scalars_and_the_videos(sandbox):
    """The issue's command, offline: W&B gets every tensorboard scalar (same steps, same values),
    the flags as config, and each evaluation's video; the videos lie in the run folder too."""
    pytest.importorskip("wandb")
    write_random_dataset(None, episodes=20)
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "wsrl_calql_sac.py"), "--dataset-id", "test/hopper/random-v0",
                          "--offline-steps", "40", "--offline-eval-interval", "20", "--online-steps", "40",
                          "--warmup-steps", "20", "--eval-interval", "20", "--analysis-interval", "20", *TINY,
                          "--track", "--capture-video", "--wandb-project-name", "test-project"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    (run_dir,) = glob.glob("runs/*")
    (wandb_file,) = glob.glob("wandb/offline-run-*/run-*.wandb")

    # every scalar tensorboard got, at the same steps with the same values (float32 both ways)
    rows = history(wandb_file)
    scalars = tensorboard_scalars(run_dir)
    assert {"offline/eval/return", "eval/return", "losses/qf_loss", "offline/losses/qf_loss"} <= set(scalars)
    for tag, points in scalars.items():
        logged = sorted((r["global_step"], r[tag]) for r in rows if tag in r)
        assert [s for s, _ in logged] == [s for s, _ in sorted(points)], tag
        assert [v for _, v in logged] == pytest.approx([v for _, v in sorted(points)], rel=1e-6), tag

    # the flags as the run's config, and its name is the run folder's
    (run,) = [r.run for r in wandb_records(wandb_file) if r.WhichOneof("record_type") == "run"]
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["offline_steps"] == 40 and config["capture_video"] is True and config["track"] is True
    assert run.display_name == os.path.basename(run_dir) and run.project == "test-project"

    # a video per evaluation (offline: steps 20, 40; online: 0, 20, 40), each a playable mp4
    videos = sorted(os.listdir(os.path.join(run_dir, "videos")))
    assert videos == sorted(["offline_eval_step_20.mp4", "offline_eval_step_40.mp4", "eval_step_0.mp4",
                             "eval_step_20.mp4", "eval_step_40.mp4"])
    assert all(frames(os.path.join(run_dir, "videos", v)) >= 2 for v in videos)
    sent = [r for r in rows if "videos/eval/path" in r or "videos/offline/eval/path" in r]
    assert sorted(r["global_step"] for r in sent) == [0, 20, 20, 40, 40]
    media = glob.glob("wandb/offline-run-*/files/media/videos/**/*.mp4", recursive=True)
    assert len(media) == 5


def test_a_filmed_evaluation_holds_its_first_episode_frame_by_frame(sandbox):
    """record_evaluations films the first episode after each evaluation's start: the reset's
    frame and one per step; the second episode of the same evaluation is not filmed."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    env = U.build_env("Hopper-v5", 3, render=True)
    env.reset(seed=3)
    video = U.record_evaluations(env, str(sandbox / "videos"))
    for evaluation in range(2):
        lengths = []
        for _ in range(2):  # two episodes per evaluation, as --eval-episodes 2
            env.reset()
            done, n = False, 0
            while not done:
                _, _, terminated, truncated, _ = env.step(np.full(3, 0.5 if evaluation else -0.3))
                done, n = terminated or truncated, n + 1
            lengths.append(n)
        path = video.save(f"eval_step_{evaluation}.mp4")
        assert frames(path) == lengths[0] + 1, (evaluation, lengths)
    assert sorted(os.listdir(sandbox / "videos")) == ["eval_step_0.mp4", "eval_step_1.mp4"]
    env.close()


def test_capture_video_leaves_every_evaluation_as_it_was(sandbox):
    """Filming draws frames only: the same episodes, seeds and returns as without it."""
    import sac_fast as S

    tiny = dict(online_steps=60, learning_starts=20, eval_interval=30, eval_episodes=2, num_qs=2, batch_size=8,
                critic_hidden=16, actor_hidden=16)
    plain = S.main(S.Args(**tiny))
    filmed = S.main(S.Args(**tiny, capture_video=True))
    assert filmed["evals"] == plain["evals"] and len(plain["evals"]) == 2
    assert sorted(os.listdir(os.path.join(filmed["run_dir"], "videos"))) == ["eval_step_30.mp4", "eval_step_60.mp4"]


def test_wandb_is_imported_only_with_track_and_its_absence_is_one_line(sandbox, monkeypatch):
    import sac_fast as S

    code = ("import sys, sac_fast as S; S.main(S.Args(online_steps=30, learning_starts=20, eval_interval=30, "
            "eval_episodes=1, num_qs=2, batch_size=8)); print('wandb' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=sandbox,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("False"), out.stderr[-2000:]
    before = os.listdir("runs")
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(SystemExit, match="pip install wandb"):
        S.main(S.Args(online_steps=30, learning_starts=20, track=True))
    assert os.listdir("runs") == before  # refused before anything is made
