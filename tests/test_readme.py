"""The walk-through of Algorithm 1 (docs/scripts.md) points at line ranges of wsrl_calql_sac.py:
they must still show what it says they show (an edit above them shifts every number). The README
stays a front page."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "scripts.md")
# Algorithm 1 line(s) -> text that must appear in the walk-through's range for it
EXPECTED = {"1": "PHASE 1: OFFLINE PRE-TRAINING", "2": "Alg. 1, line 2", "3": "Alg. 1, line 3", "4": "Alg. 1, line 4",
            "5-6": "Alg. 1 line 6", "7-8": "Alg. 1 line 8", "10": "Alg. 1, line 10", "11-12": "Alg. 1, lines 11-14",
            "13": "update_critic(", "14": "update_actor_and_alpha("}


def test_walkthrough_line_ranges_point_at_the_right_code():
    readme = open(DOC, encoding="utf-8").read()
    script = open(os.path.join(ROOT, "wsrl_calql_sac.py"), encoding="utf-8").read().splitlines()
    rows = re.findall(r"^\| ([\d-]+) \| [^|]+ \| \[L(\d+)-L(\d+)\]\(\.\./wsrl_calql_sac\.py#L\2-L\3\)", readme, re.M)
    assert {row[0] for row in rows} == set(EXPECTED), rows
    for alg_line, first, last in rows:
        first, last = int(first), int(last)
        assert first <= last and last - first < 40
        text = "\n".join(script[first - 1:last])
        assert EXPECTED[alg_line] in text, (f"docs/scripts.md's range for Alg. 1 line {alg_line} (L{first}-L{last}) lost it: "
                                            "python tools/readme_ranges.py rewrites the ranges")


def test_the_line_table_and_the_diff_counts_are_what_the_commands_print():
    """docs/scripts.md's figures about the scripts come from commands anyone can rerun: the table from
    `python tools/line_breakdown.py --all`, the counts from `diff A B` (lines out: '<', in: '>')."""
    import subprocess
    import sys

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import line_breakdown as LB

    readme = open(DOC, encoding="utf-8").read()
    rows = re.findall(r"^\| `(\w+\.py)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \|$", readme, re.M)
    assert {r[0] for r in rows} == set(LB.SCRIPTS)
    for name, lines, main, algorithm, flags, support, ratio in rows:
        b = LB.breakdown(open(os.path.join(ROOT, name), encoding="utf-8").read())
        c = b["counts"]
        assert (int(lines), int(main), int(algorithm), int(flags), int(support)) == (
            b["lines"], b["main_lines"], c["algorithm"], c["flags"], c["support"]), f"docs/scripts.md's row for {name}"
        assert ratio == f"{c['algorithm'] / c['support']:.1f}"
    counts = re.findall(r"`diff (\w+\.py) (\w+\.py)`:? \(?(\d+) (?:lines )?out[^0-9]*(\d+) in", readme)
    assert len(counts) >= 3, counts
    for a, b, out, into in counts:
        diff = subprocess.run(["diff", a, b], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
        assert (int(out), int(into)) == (sum(x.startswith("<") for x in diff), sum(x.startswith(">") for x in diff)), (a, b)


def test_the_readme_is_a_front_page():
    """What this is, the two commands, the demo's picture, the scripts, links into docs/: at most
    250 lines; migration notes live in CHANGELOG.md, not in the Quickstart."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert len(readme.splitlines()) <= 250
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "bash demo.sh" in quickstart and "python -m pytest -q tests" in quickstart
    assert "](docs/demo.png)" in quickstart and "renamed" not in quickstart.lower()
    for script in ("sac_fast.py", "calql_offline.py", "wsrl_calql_sac.py", "wsrl_iql_sac.py", "jsrl.py", "td3c.py"):
        assert f"| `{script}` |" in readme, script
    for doc in sorted(os.listdir(os.path.join(ROOT, "docs"))):
        if doc.endswith(".md"):
            assert f"](docs/{doc})" in readme, f"docs/{doc} is not linked from the README"
    assert "](CHANGELOG.md)" in readme and "--total-timesteps" in open(os.path.join(ROOT, "CHANGELOG.md")).read()
