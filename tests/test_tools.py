"""tools/scalars.py reads tensorboard logs back into tables and figures (used for the README)."""

import os
import subprocess
import sys

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
