"""benchmark.sh and tools/benchmark_report.py: the report's numbers against hand values from
fake tensorboard logs, and a tiny end-to-end run of the cpu tier (every method, one seed)."""

import os
import subprocess
import sys

import pytest
from torch.utils.tensorboard import SummaryWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import benchmark_report as R  # noqa: E402


def write_run(runs, name, scores, q=None):
    writer = SummaryWriter(str(runs / name))
    for step, v in scores:
        writer.add_scalar("eval/normalized_score", v, step)
    for step, v in q or []:
        writer.add_scalar("analysis/q_heldout", v, step)
    writer.close()


def test_run_names_are_parsed_and_others_ignored():
    assert R.parse_run_name("Hopper-v5__wsrl__2__1795272550") == ("wsrl", 2)
    assert R.parse_run_name("Hopper-v5__wsrl_no_warmup__11__1795272550_3") == ("wsrl_no_warmup", 11)
    assert R.parse_run_name("notes") is None
    assert R.parse_run_name("Hopper-v5__wsrl__x__1") is None


def test_runs_of_several_folders_are_reported_together(tmp_path):
    """Two benchmarks of one tier, a method each (e.g. WSRL earlier, SO2 now): one report."""
    write_run(tmp_path / "a", "Hopper-v5__wsrl__1__100", [(0, 10.0), (1000, 20.0)])
    write_run(tmp_path / "b", "Hopper-v5__so2__1__100", [(0, 10.0), (1000, 5.0)])
    data = R.read_runs([str(tmp_path / "a"), str(tmp_path / "b")], ["eval/normalized_score"])
    assert set(data) == {"wsrl", "so2"} and data["so2"][1]["eval/normalized_score"] == {0: 10.0, 1000: 5.0}
    assert R.read_runs(str(tmp_path / "a"), ["eval/normalized_score"]).keys() == {"wsrl"}


def test_scores_and_curves_from_logs(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "Hopper-v5__wsrl__1__100", [(0, 10.0), (500, 4.0), (1000, 20.0)], q=[(0, 5.0), (250, 3.0)])
    write_run(runs, "Hopper-v5__wsrl__2__100", [(0, 12.0), (500, 8.0), (1000, 30.0)], q=[(0, 7.0), (250, 1.0)])
    write_run(runs, "Hopper-v5__sac_fast__1__100", [(500, 1.0), (1000, 3.0)])
    write_run(runs, "Hopper-v5__pretrain__1__100", [(0, 99.0)])  # not a method: left out
    data = R.read_runs(str(runs), ["eval/normalized_score", "analysis/q_heldout"])
    steps, values = R.seed_matrix(data["wsrl"], "analysis/q_heldout")
    assert list(steps) == [0, 250] and values.tolist() == [[5.0, 3.0], [7.0, 1.0]]
    rows = {r[0]: r for r in R.score_rows(data, R.METHODS, "eval/normalized_score")}
    label, finals, means, starts, lows, last = rows["WSRL (Cal-QL)"]
    assert finals == {1: 20.0, 2: 30.0} and last == 1000
    assert means == pytest.approx({1: 34 / 3, 2: 50 / 3})
    assert starts == {1: 10.0, 2: 12.0} and lows == {1: 4.0, 2: 8.0}  # the dip after the switch
    _, finals, _, starts, lows, _ = rows["SAC (fast), from scratch"]
    assert finals == {1: 3.0} and starts == {} and lows == {}  # from scratch: no step-0 agent
    assert R.fmt({1: 20.0, 2: 30.0}) == "25.0 ± 5.0"
    # held-out Q at the switch, at the logged step nearest to 200, and past the end (the last step)
    (label, name, cells), = R.analysis_rows(data, R.METHODS, [0, 200, 5000])
    assert label == "WSRL (Cal-QL)" and name == "mean Q on held-out offline data"
    assert cells == [(0, 6.0, 1.0), (250, 2.0, 1.0), (250, 2.0, 1.0)]

    out = tmp_path / "report"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "benchmark_report.py"), "--runs", str(runs),
                           "--out", str(out), "--note", "a note"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = (out / "scores.md").read_text()
    assert "| WSRL (Cal-QL) | 2 | 25.0 ± 5.0 | 1: 20.0, 2: 30.0 |" in table and "pretrain" not in table
    assert "a note" in table
    assert "| WSRL (Cal-QL) | mean Q on held-out offline data | 6 ± 1 | 2 ± 1 |" in table  # steps 0 and 1,000 (-> 250)
    assert (out / "curves.png").stat().st_size > 5000 and (out / "analysis.png").stat().st_size > 5000


def test_every_method_keeps_its_row_and_colour_in_every_interval_panel(tmp_path):
    """A method missing from one panel (the dip of a method that starts from scratch) must not
    shift the others' bars onto its neighbours' labels: the bug this replaced drew JSRL's dip on
    the row labelled SAC."""
    est = {"final": {"A": (3.0, 2.0, 4.0), "B": (1.0, 0.0, 2.0), "C": (5.0, 4.0, 6.0)},
           "dip": {"A": (1.0, 0.0, 2.0), "C": (2.0, 1.0, 3.0)}}
    rows = R.plot_intervals(est, str(tmp_path / "i.png"), "t", colors={"A": "C0", "B": "C1", "C": "C2"})
    assert rows["final"] == {"A": (2, "C0"), "B": (1, "C1"), "C": (0, "C2")}  # the first method on top
    assert rows["dip"] == {"A": (2, "C0"), "C": (0, "C2")}
    assert (tmp_path / "i.png").stat().st_size > 3000


def test_iqm_intervals_and_probability_of_improvement_by_hand(tmp_path):
    """rliable's numbers on values worked out by hand: the IQM of 4 seeds is the mean of the middle
    two; P(X > Y) counts the pairs (ties count half); the dip is start minus the lowest after it."""
    runs = tmp_path / "runs"
    for seed, (final, low) in enumerate([(10.0, 9.0), (11.0, 8.0), (12.0, 5.0), (13.0, 0.0)], start=1):
        write_run(runs, f"Hopper-v5__wsrl__{seed}__1", [(0, 10.0), (500, low), (1000, final)])
    for seed, final in enumerate([0.0, 0.0, 0.0, 20.0], start=1):
        write_run(runs, f"Hopper-v5__sac_fast__{seed}__1", [(500, 7.0), (1000, final)])
    data = R.read_runs(str(runs), ["eval/normalized_score"])
    per_seed = R.per_seed_metrics(R.score_rows(data, R.METHODS, "eval/normalized_score"))
    assert per_seed["WSRL (Cal-QL)"]["dip"].tolist() == [1.0, 2.0, 5.0, 10.0]
    assert "dip" not in per_seed["SAC (fast), from scratch"]
    est = R.interval_estimates(per_seed, reps=500)
    iqm, lo, hi = est["final"]["WSRL (Cal-QL)"]
    assert iqm == pytest.approx(11.5) and lo <= iqm <= hi and lo >= 10.0 and hi <= 13.0
    assert est["dip"]["WSRL (Cal-QL)"][0] == pytest.approx(3.5)  # middle two of 1, 2, 5, 10
    assert est["average"]["SAC (fast), from scratch"][0] == pytest.approx(3.5)  # (7 + 0) / 2, (7 + 20) / 2 trimmed
    p, lo, hi = R.improvement_probabilities(per_seed, "WSRL (Cal-QL)", reps=500)["SAC (fast), from scratch"]
    assert p == pytest.approx(12 / 16) and lo <= p <= hi
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "benchmark_report.py"), "--runs", str(runs),
                           "--out", str(tmp_path / "report")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "report" / "scores.md").read_text()
    assert "| WSRL (Cal-QL) | 11.5 [" in table and "| SAC (fast), from scratch | 0.75 |" in table
    assert (tmp_path / "report" / "intervals.png").stat().st_size > 5000


def test_report_fails_clearly_without_runs(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "benchmark_report.py"), "--runs",
                           str(tmp_path / "none"), "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "run benchmark.sh first" in done.stderr


# the tiny tiers: Hopper, a 400-step replay-buffer dataset, pre-training per seed
TINY_TIER = dict(ENV_ID="Hopper-v5", DATASET="local/hopper/tiny-v0", CHECKPOINT="", IQL_CHECKPOINT="",
                 EVAL="--eval-interval 30 --eval-episodes 1",
                 NET="--critic-hidden 32 --actor-hidden 32 --num-qs 3 --batch-size 32")


def test_tiny_cpu_tier_runs_every_method_from_one_checkpoint(sandbox):
    """The whole pipeline at toy budgets: dataset, pre-training, the nine methods, the report.
    1,010 online steps: Cal-QL's first online update comes after one Hopper episode length (1,000)."""
    env = dict(os.environ, OUT=str(sandbox / "bench"), DATASET_STEPS="400",
               OFFLINE_STEPS="20", ONLINE_STEPS="1010", WARMUP="20", SEEDS="1", JOBS="1",
               **{**TINY_TIER, "EVAL": "--eval-interval 505 --eval-episodes 1"})
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = (sandbox / "bench" / "scores.md").read_text()
    for _, label in R.BENCHMARK_METHODS:
        assert f"| {label} | 1 |" in table, label
    # the command in the table is the one that was run, with the settings given in the environment
    assert "ONLINE_STEPS=1010 WARMUP=20 " in table and 'NET="--critic-hidden 32' in table
    assert (sandbox / "bench" / "curves.png").exists() and (sandbox / "bench" / "analysis.png").exists()
    runs = os.listdir(sandbox / "bench" / "runs")
    # one pre-training for the seed, and the Cal-QL, WSRL and JSRL runs all name its checkpoint
    pretrain = [r for r in runs if "__pretrain__" in r]
    assert len(pretrain) == 1
    ckpt = os.path.join("runs", pretrain[0], "pretrain_pretrained.pt")
    for name in ("calql_no_retention", "calql_retention", "wsrl", "wsrl_no_warmup", "jsrl", "so2"):
        log = (sandbox / "bench" / "logs" / f"{name}_1.log").read_text()
        assert ckpt in log, name
    # a second run into the same folder is refused rather than mixed with the first
    again = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode != 0 and "already holds runs" in again.stderr and "RESUME=1" in again.stderr
    # RESUME=1 after an interruption during sac_fast (its run folder is there, its .done marker not):
    # only sac_fast runs again, its partial folder is replaced, everything else is kept
    os.remove(sandbox / "bench" / "logs" / "sac_fast_1.log.done")
    (old_sac,) = [r for r in runs if "__sac_fast__" in r]
    resumed = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=dict(env, RESUME="1"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "seed 1: pretrain already finished, kept" in resumed.stdout
    assert "seed 1: jsrl already finished, kept" in resumed.stdout and "seed 1: sac_fast\n" in resumed.stdout
    after = os.listdir(sandbox / "bench" / "runs")
    assert set(after) - set(runs) == {r for r in after if "__sac_fast__" in r} and old_sac not in after
    assert len(after) == len(runs)
    bad = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "nonsense"], capture_output=True, text=True)
    assert bad.returncode != 0 and "benchmark.sh cpu" in bad.stdout


def test_cpu_tier_on_the_medium_dataset_from_shipped_checkpoints(sandbox):
    """The path of the D4RL-grade datasets: the medium dataset made by tools/make_datasets.py (here
    2,000 transitions) and every pre-trained method started from given Cal-QL and IQL checkpoints
    (here tiny ones made on that dataset), with no pre-training job."""
    import calql_offline
    import wsrl_iql_sac

    tiny = dict(num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=32, offline_eval_interval=20, eval_episodes=1)
    env = dict(os.environ, OUT=str(sandbox / "bench"), ENV_ID="HalfCheetah-v5", DATASET="local/halfcheetah/medium-v0",
               DATASET_STEPS="0", DATASET_SIZE="2000", ONLINE_STEPS="1010", WARMUP="20",  # (Cal-QL: > 1 episode)
               SEEDS="1 2", JOBS="2", EVAL="--eval-interval 505 --eval-episodes 1",
               NET="--critic-hidden 32 --actor-hidden 32 --num-qs 3 --batch-size 32")
    made = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_datasets.py"), "make", "--envs",
                           "halfcheetah", "--size", "2000"], env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    cal = calql_offline.main(calql_offline.Args(dataset_id="local/halfcheetah/medium-v0", offline_steps=20, online_steps=0,
                                                cql_n_actions=4, **tiny))["pretrained_checkpoint"]
    iql = wsrl_iql_sac.main(wsrl_iql_sac.Args(dataset_id="local/halfcheetah/medium-v0", offline_steps=20, online_steps=0,
                                              **tiny))["pretrained_checkpoint"]
    env.update(CHECKPOINT=os.path.abspath(cal), IQL_CHECKPOINT=os.path.abspath(iql))
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "already on this machine, reused" in done.stdout
    table = (sandbox / "bench" / "scores.md").read_text()
    for _, label in R.BENCHMARK_METHODS:
        assert f"| {label} | 2 |" in table, label
    assert "Interquartile mean" in table and (sandbox / "bench" / "intervals.png").exists()
    assert not [r for r in os.listdir(sandbox / "bench" / "runs") if "__pretrain__" in r]
    for name in ("calql_no_retention", "calql_retention", "wsrl", "wsrl_no_warmup", "jsrl", "so2"):
        assert os.path.abspath(cal) in (sandbox / "bench" / "logs" / f"{name}_2.log").read_text(), name
    assert os.path.abspath(iql) in (sandbox / "bench" / "logs" / "wsrl_iql_1.log").read_text()
    missing = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], capture_output=True, text=True,
                             env=dict(env, OUT=str(sandbox / "other"), CHECKPOINT="/no/such.pt"), timeout=60)
    assert missing.returncode != 0 and "no pre-trained checkpoint /no/such.pt" in missing.stderr


def test_dry_run_prints_the_full_tier_at_the_papers_budgets(tmp_path):
    """`DRY_RUN=1 bash benchmark.sh full`: what a GPU run would do, without running anything."""
    env = dict(os.environ, OUT=str(tmp_path / "full"), DRY_RUN="1")
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "full"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if "python " in line]
    assert len(commands) == 3 * 13  # three seeds; pre-training, the nine methods and Fig. 7's three baselines each
    pretrain = [c for c in commands if "--exp-name pretrain " in c]
    assert len(pretrain) == 3 and all("--offline-steps 250000" in c and "mujoco/hopper/medium-v0" in c for c in pretrain)
    wsrl = [c for c in commands if "--exp-name wsrl " in c]
    assert all("--utd 4" in c and "--warmup-steps 5000" in c and "--online-steps 300000" in c for c in wsrl)
    assert all("--eval-episodes 20" in c for c in commands if "pretrain" not in c)
    fig7 = [c for c in commands if "_2q " in c]  # as their papers: 2 critics, no LayerNorm, their own pre-training
    assert len(fig7) == 9 and all("--num-qs 2 --layer-norm False" in c and "--offline-steps 250000" in c for c in fig7)
    assert all(("--offline-ratio 0 " in c) != ("--online-algo iql" in c) for c in fig7)  # no data online
    assert not (tmp_path / "full").exists()  # nothing made


def test_the_fig7_baselines_run_as_their_papers_in_a_tiny_tier(sandbox):
    """METHODS="calql_2q cql_2q iql_2q": each pre-trains its own 2-critic networks without LayerNorm
    and fine-tunes them without the data; the report has a row for each."""
    import torch

    env = dict(os.environ, OUT=str(sandbox / "bench"), DATASET_STEPS="400", OFFLINE_STEPS="20", ONLINE_STEPS="1010",
               WARMUP="20", SEEDS="1", JOBS="2", METHODS="calql_2q cql_2q iql_2q",
               **{**TINY_TIER, "EVAL": "--eval-interval 505 --eval-episodes 1"})
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = (sandbox / "bench" / "scores.md").read_text()
    for method, label in R.METHODS:
        assert (f"| {label} | 1 |" in table) == method.endswith("_2q"), label
    for name in ("calql_2q", "cql_2q", "iql_2q"):
        (run,) = [r for r in os.listdir(sandbox / "bench" / "runs") if f"__{name}__" in r]
        ckpt = torch.load(sandbox / "bench" / "runs" / run / f"{name}_pretrained.pt", weights_only=True)
        assert ckpt["critic"]["head.weight"].shape[0] == 2 and not any(k.startswith("norms.") for k in ckpt["critic"])
        assert ckpt["args"]["calql"] is (name == "calql_2q") if name != "iql_2q" else ckpt["args"]["online_algo"] == "iql"


def test_dry_run_of_the_cpu_tier_uses_the_medium_dataset_and_the_shipped_agents(tmp_path):
    """`DRY_RUN=1 bash benchmark.sh cpu`: HalfCheetah medium, 5 seeds, every pre-trained method from
    the shipped Cal-QL or IQL agent, and no pre-training job."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHECKPOINT", "IQL_CHECKPOINT", "SEEDS", "DATASET", "METHODS")}
    env.update(OUT=str(tmp_path / "cpu"), DRY_RUN="1")
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if "python " in line]
    assert len(commands) == 5 * 9 and not [c for c in commands if "--exp-name pretrain " in c]
    assert {c.split("--seed ")[1].split()[0] for c in commands} == {"1", "2", "3", "4", "5"}
    calql = os.path.join(ROOT, "pretrained", "halfcheetah-medium-calql.pt")
    iql = os.path.join(ROOT, "pretrained", "halfcheetah-medium-iql.pt")
    for name in ("calql_no_retention", "calql_retention", "wsrl", "wsrl_no_warmup", "jsrl", "so2"):
        assert all(f"--pretrained-checkpoint {calql}" in c for c in commands if f"--exp-name {name} " in c), name
    assert all(f"--pretrained-checkpoint {iql}" in c for c in commands if "--exp-name wsrl_iql " in c)
    assert all("local/halfcheetah/medium-v0" in c for c in commands if "--exp-name rlpd " in c)
    assert all("--env-id HalfCheetah-v5" in c for c in commands if "--exp-name sac_fast " in c)
    assert not (tmp_path / "cpu").exists()


def test_methods_runs_a_subset_and_refuses_an_unknown_name(tmp_path):
    """`METHODS="wsrl wsrl_no_warmup" UTD=4`: the warmup ablation alone, at the paper's UTD; a typo
    in a method's name must stop the benchmark before anything runs, listing the known names."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHECKPOINT", "IQL_CHECKPOINT", "SEEDS", "DATASET")}
    env.update(OUT=str(tmp_path / "cpu"), DRY_RUN="1", METHODS="wsrl wsrl_no_warmup", UTD="4", SEEDS="1 2 3")
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if "python " in line]
    names = sorted(c.split("--exp-name ")[1].split()[0] for c in commands)
    assert names == ["wsrl"] * 3 + ["wsrl_no_warmup"] * 3
    assert all("--utd 4" in c for c in commands)
    env.update(METHODS="wsrl wsrl_nowarmup")
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "unknown method wsrl_nowarmup" in done.stderr and "wsrl_no_warmup" in done.stderr
    assert "python " not in done.stdout and not (tmp_path / "cpu").exists()


def test_compile_1_compiles_every_run_and_is_off_otherwise(tmp_path):
    """`COMPILE=1`: every run of the tier with --compile (td3c.py too); without it, none."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHECKPOINT", "IQL_CHECKPOINT", "SEEDS", "DATASET", "METHODS",
                                                          "COMPILE")}
    env.update(OUT=str(tmp_path / "cpu"), DRY_RUN="1", SEEDS="1")
    for compile_value, expected in ((None, False), ("1", True), ("0", False)):
        run_env = env if compile_value is None else dict(env, COMPILE=compile_value)
        done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=run_env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        commands = [line for line in done.stdout.splitlines() if "python " in line]
        assert len(commands) == 9 and all(("--compile" in c.split()) is expected for c in commands), compile_value


def test_a_failed_run_stops_the_queue_with_a_clear_message(sandbox):
    """A pre-training that cannot start (no such dataset, no hub) must stop the benchmark at once,
    not go on to hours of runs that cannot be compared, and say how to finish once fixed."""
    env = dict(os.environ, OUT=str(sandbox / "bench"), **dict(TINY_TIER, DATASET="local/hopper/missing-v0"),
               DATASET_STEPS="0", SEEDS="1", JOBS="1")
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "FAILED: pretrain, seed 1" in done.stdout and "is not on this machine" in done.stdout
    assert "RESUME=1 bash benchmark.sh cpu" in done.stderr
    assert sorted(os.listdir(sandbox / "bench" / "logs")) == ["pretrain_1.log", "pretrain_1.log.failed"]


def test_a_pretraining_cut_short_stops_the_jobs_waiting_for_its_checkpoint(tmp_path):
    """A SIGINT to the pre-training alone (not Ctrl-C in the terminal): the script saves and exits
    0 with "interrupted at". Its job must fail, and a job of the same seed that waits for the
    checkpoint (JOBS larger than the number of seeds) must stop instead of waiting forever."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("#!/bin/sh\necho 'interrupted at step 7; saving what there is'\n")
    (fake / "python").chmod(0o755)
    out = tmp_path / "bench"
    (out / "logs").mkdir(parents=True)
    env = dict(os.environ, OUT=str(out), PATH=f"{fake}:{os.environ['PATH']}", ENV_ID="Hopper-v5", DATASET="d/e/f-v0", CHECKPOINT="", IQL_CHECKPOINT="",
               OFFLINE_STEPS="10", ONLINE_STEPS="10", WARMUP="5", UTD="1", NET="", EVAL="", THREADS="1")  # what the tier exports
    job = lambda method: subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "_job", method, "1"], env=env,
                                        capture_output=True, text=True, timeout=30)
    pre = job("pretrain")
    assert pre.returncode == 255 and "pretrain was interrupted; RESUME=1 runs it again" in pre.stdout
    assert sorted(os.listdir(out / "logs")) == ["pretrain_1.log", "pretrain_1.log.failed"]
    waiting = job("wsrl")  # would loop on `sleep 5` until the 30 s timeout without the .failed marker
    assert waiting.returncode == 255 and "the pre-training of seed 1 failed" in waiting.stderr


def test_ctrl_c_then_resume_marks_nothing_finished_that_was_cut_short(sandbox):
    """Ctrl-C reaches every process; the scripts save what they have and exit normally. The
    benchmark must not take a cut-short dataset or run for a finished one when RESUME=1 follows."""
    import signal
    import time

    import minari

    bench = sandbox / "bench"
    env = dict(os.environ, OUT=str(bench), SEEDS="1", JOBS="1", **TINY_TIER)

    def interrupted(extra: dict, log: str, marker: str):
        """start the cpu tier, press Ctrl-C once `marker` is in logs/`log`, return the result"""
        # A shell started in the background (as some CI runners start the tests) ignores SIGINT,
        # and so would everything it starts: give the benchmark the default, as a terminal does.
        p = subprocess.Popen(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], env=dict(env, **extra),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while not ((bench / "logs" / log).exists() and marker in (bench / "logs" / log).read_text()):
            assert p.poll() is None and time.time() < deadline, p.communicate()
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole process group
        out, err = p.communicate(timeout=120)
        return p.returncode, out, err + "\n--- logs/" + log + ":\n" + (bench / "logs" / log).read_text()[-3000:]

    # 1. while the dataset is being made (a long run: the interruption comes first)
    # The marker is the progress line ("steps/s"), printed from inside the training loop: the
    # run has data to save by then. (The header line is printed before the loop.)
    rc, out, err = interrupted({"DATASET_STEPS": "300000"}, "dataset.log", "steps/s")
    assert rc != 0 and "RESUME=1 bash benchmark.sh cpu" in err, out + err
    assert "interrupted at step" in err, err  # sac_fast caught the Ctrl-C...
    assert "local/hopper/tiny-v0" in minari.list_local_datasets(), err  # ...and saved what it had...
    assert not (bench / "logs" / "dataset.log.done").exists()  # ...and it is not taken as finished
    # 2. resumed: the cut-short dataset is made again; then Ctrl-C during a long pre-training
    rc, out, err = interrupted({"RESUME": "1", "DATASET_STEPS": "400", "OFFLINE_STEPS": "100000"}, "pretrain_1.log",
                               "steps/s")
    assert "left unfinished by an interrupted benchmark; deleted, made again" in out
    assert rc != 0 and "pretrain interrupted" in out
    assert "interrupted at" in (bench / "logs" / "pretrain_1.log").read_text()
    assert not (bench / "logs" / "pretrain_1.log.done").exists()
    # 3. resumed at small budgets: the dataset is kept, the pre-training runs again, all finish
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmark.sh"), "cpu"], capture_output=True, text=True,
                          env=dict(env, RESUME="1", DATASET_STEPS="400", OFFLINE_STEPS="20", ONLINE_STEPS="1010",
                                   WARMUP="20", EVAL="--eval-interval 505 --eval-episodes 1"), timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "already on this machine, reused" in done.stdout
    assert len([r for r in os.listdir(bench / "runs") if "__pretrain__" in r]) == 1
    assert minari.load_dataset("local/hopper/tiny-v0").total_steps == 400


# ---------------------------------------------------------------------------------------------
# demo.sh
# ---------------------------------------------------------------------------------------------
def test_demo_help_prints_its_usage_and_runs_nothing(tmp_path):
    before = set(os.listdir(os.path.join(ROOT, "runs"))) if os.path.isdir(os.path.join(ROOT, "runs")) else set()
    for flag in ("--help", "-h"):
        done = subprocess.run(["bash", os.path.join(ROOT, "demo.sh"), flag], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "SEEDS=" in done.stdout and "runs nothing" in done.stdout
        assert "=====" not in done.stdout  # no step began
    bad = subprocess.run(["bash", os.path.join(ROOT, "demo.sh"), "--seeds"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "takes no argument but --help" in bad.stderr
    after = set(os.listdir(os.path.join(ROOT, "runs"))) if os.path.isdir(os.path.join(ROOT, "runs")) else set()
    assert after == before  # no demo folder made


def test_the_demo_figure_has_a_legend_in_every_panel_and_its_caption_reads_the_runs(tmp_path):
    """Two seeds of the three runs, by hand: the caption's numbers are their means and ranges."""
    runs = tmp_path / "runs"
    curves = {"wsrl_iql": ([40, 40, 10, 30], [38, 38, 20, 34]),  # start, warmup, dip, end
              "wsrl_iql_no_warmup": ([40, 5, 8, 12], [38, 15, 9, 20]),
              "iql_no_retention": ([40, 35, 36, 37], [38, 33, 34, 35])}
    for method, seeds in curves.items():
        for seed, values in enumerate(seeds, start=1):
            writer = SummaryWriter(str(runs / f"HalfCheetah-v5__{method}__{seed}__100"))
            for step, v in zip((0, 1000, 2000, 3000), values):
                writer.add_scalar("eval/normalized_score", v, step)
                writer.add_scalar("analysis/policy_kl_heldout", step / 1000, step)
                writer.add_scalar("analysis/td_error_heldout", 1 + step / 1000, step)
            writer.close()
    data = R.read_runs(str(runs), [t for t, _, _ in R.DEMO_PANELS])
    legends = R.plot_demo(data, str(tmp_path / "demo.png"), "title", 1000)
    assert len(legends) == 3 and (tmp_path / "demo.png").stat().st_size > 20000
    for legend in legends:  # the warmup, the switch and the three runs, in every panel
        assert len(legend) == 5 and any("warmup" in t for t in legend) and any("switch" in t for t in legend)
        assert all(any(label in t for t in legend) for _, label in R.DEMO_METHODS)
    caption = R.demo_caption(data, 1000)
    assert "score 39.0 at step 0" in caption and "(2 seeds)" in caption
    # WSRL: lowest 10 and 20 -> 15.0; final 30 and 34 -> 32.0; no warmup: lowest 5 and 9 -> 7.0
    assert "lowest 15.0 (seeds 10.0 to 20.0), final 32.0 (seeds 30.0 to 34.0)" in caption.replace("\n", " ")
    assert "lowest 7.0 (seeds 5.0 to 9.0)" in caption.replace("\n", " ")
    assert "No method ends above the pre-trained agent's 39.0 within 3,000 steps" in caption.replace("\n", " ")
    assert "cost 24.0 points (WSRL) and 32.0 points (SAC from the first batch)" in caption.replace("\n", " ")
    assert "intervals over these seeds are in bench/scores.md" in caption.replace("\n", " ")  # 2 seeds here


def test_the_demo_runs_end_to_end_at_a_tiny_budget(sandbox):
    """demo.sh as a user runs it, with a tiny agent and dataset in place of the shipped ones: the
    three runs, the figure and its caption."""
    import wsrl_iql_sac

    env = dict(os.environ, DATASET_SIZE="2000")
    made = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_datasets.py"), "make", "--envs",
                           "halfcheetah", "--size", "2000"], env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    iql = wsrl_iql_sac.main(wsrl_iql_sac.Args(dataset_id="local/halfcheetah/medium-v0", offline_steps=20, online_steps=0,
                                              num_qs=3, critic_hidden=32, actor_hidden=32, batch_size=32,
                                              offline_eval_interval=20, eval_episodes=1))["pretrained_checkpoint"]
    # a copy of the repository whose runs/ is this test's own (demo.sh writes under its folder)
    import shutil

    repo = sandbox / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "results", "__pycache__"))
    env.update(PRETRAINED=os.path.abspath(iql), ONLINE_STEPS="600", WARMUP="300", SEEDS="1")
    done = subprocess.run(["bash", str(repo / "demo.sh")], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    (out,) = [d for d in os.listdir(repo / "runs") if d.startswith("demo-")]
    assert (repo / "runs" / out / "demo.png").stat().st_size > 20000
    caption = (repo / "runs" / out / "caption.txt").read_text()
    assert caption.strip() in done.stdout
    caption = " ".join(caption.split())
    assert "for 600 steps" in caption and "(1 seed)" in caption
    for _, label in R.DEMO_METHODS:
        assert label in caption


def test_the_gpu_session_rehearsed_on_the_cpu_packs_its_files_and_reports(tmp_path):
    """tools/gpu_session.sh with REHEARSAL=1: every step a lent GPU machine runs (wheels skipped:
    this environment has them), at toy budgets, one comparison run stopped at its cap; then
    tools/gpu_report.py makes the report from what it packed, as it will from a real session."""
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, REHEARSAL="1", PYTHON=sys.executable, WHEELS=str(tmp_path / "no-wheels"), WORK=str(work),
               CAP="25", SEEDS="1", JOBS="1", METHODS="rlpd", ONLINE_STEPS="100000", WARMUP="100",
               BUDGET="60")  # (less than the steps before the comparison take: CAP is lowered, to its floor)
    done = subprocess.run(["bash", os.path.join(ROOT, "tools", "gpu_session.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    files = sorted(os.listdir(out))
    assert files == ["dataset.log", "runs.tar.gz", "session.log", "speed.md", "summary.md", "tests.log"]
    assert len(files) <= 8  # what a device call brings back
    summary = (out / "summary.md").read_text()
    assert "torch " in summary and "tests/test_gpu.py: exit 0" in summary, summary
    assert "bash benchmark.sh gpu (WALL_CAP=25): exit 0" in summary, summary
    left = int(summary.split("the steps before the comparison left ")[1].split(" s of BUDGET=60 s")[0])
    assert left < 25 and "CAP lowered from 25 s to 25 s" in summary  # 60 - elapsed - 40 < 25; the floor: CAP itself
    assert "| sac_fast.py | SAC, UTD 4" in (out / "speed.md").read_text()
    assert "stopped at the 25s cap" in (out / "session.log").read_text()
    dest = tmp_path / "report"
    report = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu_report.py"), str(out), str(dest),
                             "--warmup", "100"], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    (row,) = [line for line in (dest / "reached.md").read_text().splitlines() if "__rlpd__1__" in line]
    last = int(row.split("|")[2].strip().removeprefix("cap at step ").replace(",", ""))
    assert 100 < last < 100000  # it got past its warmup, and the cap stopped it long before its budget
    assert (dest / "scores.md").exists() and (dest / "speed.md").exists()
