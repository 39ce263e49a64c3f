"""tools/scalars.py reads tensorboard logs back into tables and figures (used for docs/results.md and docs/benchmarks.md)."""

import os
import subprocess
import sys

import pytest

from torch.utils.tensorboard import SummaryWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(path, values):
    writer = SummaryWriter(str(path))
    for step, v in values:
        writer.add_scalar("eval/return", v, step)
    writer.add_scalar("analysis/q_heldout", 1.5, 0)
    writer.close()


def scalars(*argv):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "scalars.py"), *argv], capture_output=True,
                          text=True, timeout=120)


def test_scalars_table_plot_and_errors(tmp_path):
    write_run(tmp_path / "a", [(0, 10.0), (100, 20.0)])
    write_run(tmp_path / "b", [(0, 11.0), (50, 30.0)])
    out = scalars(str(tmp_path / "a"), "eval/return", "analysis/q_heldout").stdout
    assert "| 0 | 10 | 1.5 |" in out and "| 100 | 20 |  |" in out
    png = tmp_path / "fig.png"
    out = scalars(str(tmp_path / "a"), str(tmp_path / "b"), "--tag", "eval/return", "--labels", "A", "B",
                  "--plot", str(png)).stdout
    assert "| step | A | B |" in out and "| 50 |  | 30 |" in out and png.stat().st_size > 1000
    bad = scalars(str(tmp_path / "a"), "no/such_tag")
    assert bad.returncode != 0 and "no tag no/such_tag" in bad.stderr


def test_speed_table_times_every_scripts_updates():
    """`benchmark.sh speed` prints one row per update of each script; the marked copies are the
    same code, so the same update must count the same FLOPs in every script that has it."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "speed.py"), "--table", "--device", "cpu",
                           "--hidden", "32", "--num-qs", "3", "--batch-size", "16", "--utd", "2", "--repeats", "1",
                           "--peak-seconds", "0.2", "--profile"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table, profile = done.stdout.split("Where the time goes")
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and ".py" in line]
    # --profile: a row per update; the matmuls' own rate can only be above the whole update's
    share = {f"{r[0][2:]}, {r[1]}, {r[2]}": int(r[7].rstrip("% |")) for r in rows}  # profile rows' label -> share
    ceilings = {c[0][2:]: int(c[-1].rstrip("% |")) for c in (line.split(" | ") for line in profile.splitlines())
                if c[0].startswith("| ") and ".py" in c[0]}
    assert set(ceilings) == set(share) and all(ceilings[k] >= share[k] for k in share)
    # each row also went to stderr as soon as it was measured (a run cut by a time limit keeps them)
    measured = [line.split(" | ") for line in done.stderr.splitlines() if line.startswith("measured: ")]
    assert sorted(f"{m[0][len('measured: '):]}, {m[1]}, {m[2]}" for m in measured) == sorted(share)
    assert all(float(m[3].split()[0]) == pytest.approx(float(r[5]), abs=0.051) for m, r in zip(measured, rows))
    # one row per precision (fp32, bf16), the same matmuls in both
    by_precision = {(r[0][2:], r[1], r[2]): float(r[4]) for r in rows}  # (script, update, precision) -> GFLOP per step
    assert {k[2] for k in by_precision} == {"fp32", "bf16"}
    got = {(script, what): v for (script, what, precision), v in by_precision.items() if precision == "fp32"}
    assert all(by_precision[(script, what, "bf16")] == v for (script, what), v in got.items())
    sac = "SAC, UTD 2: 2 critic + 1 actor update per env step"
    assert set(got) == {("sac_fast.py", sac), ("jsrl.py", sac), ("wsrl_calql_sac.py", sac),
                        ("wsrl_iql_sac.py", sac), ("calql_offline.py", "Cal-QL step (offline; online at UTD 1)"),
                        ("wsrl_calql_sac.py", "Cal-QL step (offline; online at UTD 1)"),
                        ("wsrl_iql_sac.py", "IQL step (offline)")}
    assert len({v for (_, what), v in got.items() if what == sac}) == 1 and got[("sac_fast.py", sac)] > 0
    cal = "Cal-QL step (offline; online at UTD 1)"
    assert got[("calql_offline.py", cal)] == got[("wsrl_calql_sac.py", cal)] > got[("sac_fast.py", sac)] / 2


def test_speed_times_the_loop_in_both_precisions():
    """`python tools/speed.py` (the whole loop of sac_fast.py) with each --precision, tiny."""
    for precision in ("fp32", "bf16"):
        done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "speed.py"), "--steps", "5", "--num-qs", "2",
                               "--hidden", "16", "--utd", "1", "--batch-size", "16", "--precision", precision],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        row = next(line for line in done.stdout.splitlines() if line.startswith("| sac_fast.py"))
        assert f", {precision}, " in row and float(row.split(" | ")[2]) > 0  # env-steps/s


def test_speed_times_the_compiled_loop_without_its_compile():
    """`python tools/speed.py --compile`: the loop with --compile, its compile time printed apart
    and left out of the rate."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "speed.py"), "--steps", "6", "--num-qs", "2",
                           "--hidden", "16", "--utd", "1", "--batch-size", "16", "--compile"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| sac_fast.py"))
    assert ", fp32, compiled, " in row and float(row.split(" | ")[2]) > 0
    reported = float(done.stdout.split("--compile took ")[1].split(" s")[0])
    printed = float(done.stdout.split("compiled in ")[1].split(" s")[0])  # the script's own line
    assert reported == pytest.approx(printed, abs=1) and reported >= 1
    # 6 tiny steps take far less than the compile: the rate rests on a small remainder, and says so
    assert "WARNING: the compile took" in done.stdout and "time more steps (--steps)" in done.stdout


def test_speed_warns_when_the_peak_moved_and_sets_inductor_options():
    """--table's drift warning (hand values: 201 -> 180 is 11% of their mean 190.5; 200 -> 190 is
    5%), and --inductor KEY=VALUE setting torch._inductor.config, an unknown key refused."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import speed
    import torch._inductor.config as inductor_config

    assert "fp32 201 -> 180 GFLOP/s" in speed.drift_warning({"fp32": 201.0}, {"fp32": 180.0})
    assert speed.drift_warning({"fp32": 200.0, "bf16": 1400.0}, {"fp32": 190.0, "bf16": 1450.0}) == ""
    assert speed.drift_warning({"fp32": 200.0, "bf16": 1400.0}, {"fp32": 200.0, "bf16": 1000.0}) != ""

    class Refused(Exception):
        pass

    class Parser:
        def error(self, message):
            raise Refused(message)

    before = inductor_config.cpp.threads  # (an option every torch here has: 2.11 lacks use_two_step_variance_threshold)
    try:
        speed.set_inductor_option(Parser(), "cpp.threads=7")
        assert inductor_config.cpp.threads == 7
    finally:
        inductor_config.cpp.threads = before
    with pytest.raises(Refused, match="no option cpp.no_such_option"):
        speed.set_inductor_option(Parser(), "cpp.no_such_option=1")
    with pytest.raises(Refused, match="give KEY=VALUE"):
        speed.set_inductor_option(Parser(), "cpp.threads")


def test_speed_counts_the_flops_of_the_run_it_times():
    """The loop's FLOPs are counted before main() fills the domain's values in: they must be the
    ones main() uses (the min over 2 target members, not all 10)."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import sac_fast as S
    import speed

    a = speed.argparse.Namespace(env_id="Hopper-v5", num_qs=10, utd=4, batch_size=256, hidden=256, steps=1, precision="fp32",
                                 compile=False)
    args = speed.loop_args(S, a)
    assert (args.num_min_qs, args.max_target_backup, args.critic_layers, args.actor_layers) == (2, False, 2, 2)



def test_compare_sac_times_our_variants_without_checkouts_and_reports_a_failing_one(tmp_path):
    """`tools/compare_sac.py --only sac_fast`: interleaved budgets, one table row; a variant whose
    process fails (a LeanRL checkout whose script cannot run) is reported as failed, not fatal."""
    lean = tmp_path / "LeanRL" / "leanrl"
    lean.mkdir(parents=True)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import compare_sac

    (lean / "sac_continuous_action_torchcompile.py").write_text("# " + compare_sac.LEANRL_FIX[0] + "\nraise RuntimeError('broken')\n")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "compare_sac.py"), "--only", "sac_fast,leanrl",
                           "--leanrl", str(tmp_path / "LeanRL"), "--steps", "300", "--learning-starts", "30",
                           "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "variant" not in line]
    assert rows[0].startswith("| sac_fast | ") and float(rows[0].split(" | ")[1].split()[0]) > 0
    assert rows[1].startswith("| leanrl | failed") and "RuntimeError: broken" in done.stdout
    # (300 steps: 20 gave a longer budget that sometimes took no longer than the shorter on a noisy VM)
