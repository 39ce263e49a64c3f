"""Point the walk-through of Algorithm 1 (docs/scripts.md) at the current lines of wsrl_calql_sac.py.

    python tools/readme_ranges.py            # rewrite the ranges in docs/scripts.md
    python tools/readme_ranges.py --check    # only say whether they are current

Each row of the walk-through table is found by a marker comment the script carries (the same
markers tests/test_readme.py looks for), and its range runs from there to the end of that step.
"""

import argparse
import ast
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = "wsrl_calql_sac.py"


def find(lines: list, text: str, start: int = 0) -> int:
    """1-based number of the first line at or after `start` (1-based) that contains `text`."""
    for i in range(max(start - 1, 0), len(lines)):
        if text in lines[i]:
            return i + 1
    raise SystemExit(f"error: {SCRIPT} has no line with {text!r}: update tools/readme_ranges.py")


def ranges(source: str) -> dict:
    """Algorithm 1 line(s) -> (first, last) line of wsrl_calql_sac.py."""
    lines = source.splitlines()
    tree = ast.parse(source)
    sac_update = next(n for n in tree.body if getattr(n, "name", None) == "sac_update")
    main = next(n for n in tree.body if getattr(n, "name", None) == "main")
    phase1 = find(lines, "PHASE 1: OFFLINE PRE-TRAINING", main.lineno)
    discard = find(lines, "# ===== DISCARD THE OFFLINE DATA", main.lineno)
    handover = find(lines, "# ===== HAND-OVER", main.lineno)
    loop = find(lines, "Alg. 1, line 4", main.lineno)
    act_pre = find(lines, "Alg. 1 line 6", loop)
    act = find(lines, "Alg. 1 line 8", loop)
    add = find(lines, "Alg. 1, line 10", loop)
    update = find(lines, "Alg. 1, lines 11-14", loop)
    critic = find(lines, "update_critic(", sac_update.lineno + 1)
    actor = find(lines, "update_actor_and_alpha(", critic)
    return {
        "1": (phase1, find(lines, "=====", phase1 + 1) - 2),
        "2": (discard, find(lines, "del offline_rb", discard)),
        "3": (handover, find(lines, "critic_opt.state.clear()", handover)),
        "4": (loop, loop + 2),
        "5-6": (act_pre, act - 1),
        "7-8": (act, act + 1),
        "10": (add - 1, add),
        "11-12": (update, find(lines, "sample_batch(", update)),
        "13": (sac_update.lineno, critic),
        "14": (actor, actor + 1),
    }


DOC = os.path.join("docs", "scripts.md")
ROW = re.compile(r"^(\| ([\d-]+) \| [^|]+ \| )\[L(\d+)-L(\d+)\]\(\.\./wsrl_calql_sac\.py#L\d+-L\d+\)", re.M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a range is stale")
    opts = parser.parse_args()
    path = os.path.join(ROOT, DOC)
    readme = open(path, encoding="utf-8").read()
    want = ranges(open(os.path.join(ROOT, SCRIPT), encoding="utf-8").read())
    new = ROW.sub(lambda m: f"{m.group(1)}[L{want[m.group(2)][0]}-L{want[m.group(2)][1]}]"
                            f"(../{SCRIPT}#L{want[m.group(2)][0]}-L{want[m.group(2)][1]})", readme)
    if opts.check:
        print("current" if new == readme else "stale: run python tools/readme_ranges.py")
        return int(new != readme)
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"{DOC}: walk-through ranges " + ("updated" if new != readme else "already current"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
