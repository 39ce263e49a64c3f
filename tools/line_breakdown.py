"""What a script's lines are spent on: non-blank lines (and comment lines) per kind of code.

    python tools/line_breakdown.py wsrl_calql_sac.py            # the working copy
    python tools/line_breakdown.py wsrl_calql_sac.py --rev HEAD~3   # an older commit's

Kinds: the flags (Args), the algorithm (update maths, Cal-QL's bound, JSRL's roll-ins, `main`),
the networks, data (datasets, domains, environments, replay buffer), logging (evaluation,
diagnostics, progress, curves) and infrastructure (threads, memory, CUDA graphs, checkpoints,
resume, argument checks, imports). Marked copies are classified by name; other top-level code by
the name it defines. Also prints where `main` starts, as a share of the file.
"""

import argparse
import ast
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIND_OF_BLOCK = {
    "omp-wait": "infrastructure", "cpu-speed": "infrastructure", "cuda-graphs": "infrastructure",
    "checkpoint-load": "infrastructure", "arg-checks": "infrastructure", "resume": "infrastructure",
    "minari-data": "data", "offline-data": "data", "minari-export": "data", "domains": "data", "env": "data",
    "replay-buffer": "data", "domain-presets": "flags",
    "networks": "networks", "sac-actor": "networks", "train-utils": "algorithm",
    "sac-core": "algorithm", "sac-update": "algorithm", "calql-update": "algorithm", "iql-update": "algorithm",
    "returns-to-go": "algorithm",
    "q-diagnostics": "logging", "kl-diagnostics": "logging", "evaluate": "logging", "progress": "logging",
    "checkpoint-save": "infrastructure",
}
KIND_OF_NAME = {"Args": "flags", "main": "algorithm", "rollin_probability": "algorithm",
                "draw_rollin_length": "algorithm", "save_actor": "infrastructure"}
KINDS = ("flags", "algorithm", "networks", "data", "logging", "infrastructure")


def breakdown(text: str) -> tuple[dict, float]:
    lines = text.splitlines()
    kind = ["infrastructure"] * len(lines)  # imports, docstring, __main__ guard
    for node in ast.parse(text).body:  # unmarked top-level definitions
        name = getattr(node, "name", None)
        if name in KIND_OF_NAME:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            for i in range(start - 1, node.end_lineno):
                kind[i] = KIND_OF_NAME[name]
    block = None
    for i, line in enumerate(lines):  # marked copies override
        m = re.match(r"# \[copy: ([\w.-]+)\]", line)
        if m:
            block = m.group(1)
        if block is not None:
            kind[i] = KIND_OF_BLOCK.get(block, "infrastructure")
        if line.startswith("# [end copy]"):
            block = None
    counts = {k: [0, 0] for k in KINDS}
    for line, k in zip(lines, kind):
        if line.strip():
            counts[k][0] += 1
            counts[k][1] += line.strip().startswith("#")
    main_line = next(i for i, line in enumerate(lines) if line.startswith("def main("))
    return counts, main_line / len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script")
    parser.add_argument("--rev", default=None, help="a git revision (default: the working copy)")
    opts = parser.parse_args()
    name = os.path.basename(opts.script)
    if opts.rev:
        text = subprocess.run(["git", "show", f"{opts.rev}:{name}"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    else:
        text = open(os.path.join(ROOT, name), encoding="utf-8").read()
    counts, where = breakdown(text)
    total = sum(c[0] for c in counts.values())
    print(f"{name}{' at ' + opts.rev if opts.rev else ''}: {len(text.splitlines())} lines, {total} non-blank; "
          f"main starts {where:.0%} of the way down")
    print("| kind | non-blank lines | share | of which comments |\n|---|---|---|---|")
    for k in KINDS:
        print(f"| {k} | {counts[k][0]} | {counts[k][0] / total:.0%} | {counts[k][1]} |")


if __name__ == "__main__":
    main()
