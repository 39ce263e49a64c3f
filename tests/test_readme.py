"""The README's walk-through points at line ranges of wsrl_calql_sac.py: they must still show
what the README says they show (an edit above them shifts every number)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Algorithm 1 line(s) -> text that must appear in the README's range for it
EXPECTED = {"1": "PHASE 1: OFFLINE PRE-TRAINING", "2": "Alg. 1, line 2", "3": "Alg. 1, line 3", "4": "Alg. 1, line 4",
            "5-6": "Alg. 1 line 6", "7-8": "Alg. 1 line 8", "10": "Alg. 1, line 10", "11-12": "Alg. 1, lines 11-14",
            "13": "update_critic(", "14": "update_actor_and_alpha("}


def test_walkthrough_line_ranges_point_at_the_right_code():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    script = open(os.path.join(ROOT, "wsrl_calql_sac.py"), encoding="utf-8").read().splitlines()
    rows = re.findall(r"^\| ([\d-]+) \| [^|]+ \| \[L(\d+)-L(\d+)\]\(wsrl_calql_sac\.py#L\2-L\3\)", readme, re.M)
    assert {row[0] for row in rows} == set(EXPECTED), rows
    for alg_line, first, last in rows:
        first, last = int(first), int(last)
        assert first <= last and last - first < 40
        text = "\n".join(script[first - 1:last])
        assert EXPECTED[alg_line] in text, (f"README's range for Alg. 1 line {alg_line} (L{first}-L{last}) lost it: "
                                            "python tools/readme_ranges.py rewrites the ranges")


def test_the_line_table_and_the_diff_counts_are_what_the_commands_print():
    """The README's figures about the scripts come from commands anyone can rerun: the table from
    `python tools/line_breakdown.py --all`, the counts from `diff A B` (lines out: '<', in: '>')."""
    import subprocess
    import sys

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import line_breakdown as LB

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    rows = re.findall(r"^\| `(\w+\.py)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \|$", readme, re.M)
    assert {r[0] for r in rows} == set(LB.SCRIPTS)
    for name, lines, main, algorithm, flags, support, ratio in rows:
        b = LB.breakdown(open(os.path.join(ROOT, name), encoding="utf-8").read())
        c = b["counts"]
        assert (int(lines), int(main), int(algorithm), int(flags), int(support)) == (
            b["lines"], b["main_lines"], c["algorithm"], c["flags"], c["support"]), f"README's row for {name}"
        assert ratio == f"{c['algorithm'] / c['support']:.1f}"
    counts = re.findall(r"`diff (\w+\.py) (\w+\.py)`:? \(?(\d+) (?:lines )?out[^0-9]*(\d+) in", readme)
    assert len(counts) >= 3, counts
    for a, b, out, into in counts:
        diff = subprocess.run(["diff", a, b], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
        assert (int(out), int(into)) == (sum(x.startswith("<") for x in diff), sum(x.startswith(">") for x in diff)), (a, b)
