"""How the scripts read: one name, meaning and default per flag across all five; no function,
class or import a script never uses; no helper inside `main` that reads a name `main` assigns
again later (it would see whichever object the name holds when it is CALLED)."""

import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["wsrl_calql_sac.py", "wsrl_iql_sac.py", "calql_offline.py", "sac_fast.py", "jsrl.py", "td3c.py"]
# Flags whose default differs between scripts ON PURPOSE, with the reason. Anything else must agree.
OWN_DEFAULTS = {
    "target-noise": "TD3's target smoothing in td3c.py (0.2, TD3's paper), SO2's in the WSRL scripts (sqrt 0.3, SO2's paper)",
    "target-noise-clip": "TD3's 0.5 in td3c.py, SO2's 0.6 in the WSRL scripts",
    "exp-name": "each script names its runs after itself",
    "warmup-steps": "the paper's warmup: WSRL's recipe (5,000) in the WSRL scripts, off (0) in Cal-QL's own recipe",
    "num-min-qs": "sac_fast.py and jsrl.py take RLPD's per-domain setting (1 on antmaze) unless told",
    "actor-lr": "td3c.py's TD3 and TD3+BC learn the actor at 3e-4 (their papers); SAC here at 1e-4 (WSRL's)",
    "online-algo": "each script's phase 3 learners differ: sac for the WSRL scripts, td3c for td3c.py",
}
# names that must not come back: one name per idea
RETIRED = {"--total-timesteps": "--online-steps", "--checkpoint-interval": "--resume-interval",
           "--so2-noise-std": "--target-noise", "--so2-noise-clip": "--target-noise-clip"}


def parse_help(script: str) -> dict:
    """{flag: (default, help text)} from the script's own --help, as a user sees it."""
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "400"}, timeout=120)
    assert out.returncode == 0, out.stderr
    flags, current = {}, None
    for line in out.stdout.splitlines():
        if line.startswith(("╭", "╰")):  # a box's top or bottom edge
            current = None
            continue
        starts_flag = line.startswith("│ --")  # (a wrapped help line is indented further)
        line = line.strip("│ ").rstrip()
        if starts_flag:  # "--flag TYPE   help text" (the text may start on the next line)
            parts = re.split(r"\s{2,}", line, maxsplit=1)
            current = re.match(r"--([\w-]+)", parts[0]).group(1)
            flags[current] = parts[1] if len(parts) > 1 else ""
        elif current is not None and line:
            flags[current] += " " + line.strip()
    result = {}
    for flag, text in flags.items():
        d = re.search(r"\(default: ([^()]*)\)$", text)
        assert d, f"{script}: --{flag} has no default in --help: {text!r}"
        result[flag] = (d.group(1), text[:d.start()].strip())
    return result


@pytest.fixture(scope="module")
def helps():
    return {s: parse_help(s) for s in SCRIPTS}


def test_every_flag_of_args_is_in_the_help_with_its_default(helps):
    for script in SCRIPTS:
        tree = ast.parse(open(os.path.join(ROOT, script), encoding="utf-8").read())
        args = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args")
        fields = {n.target.id.replace("_", "-") for n in args.body if isinstance(n, ast.AnnAssign)}
        assert [b.id for b in args.bases] == ["RunArgs"], script  # the flags every script shares
        utils = ast.parse(open(os.path.join(ROOT, "wsrl_utils.py"), encoding="utf-8").read())
        shared = next(n for n in utils.body if isinstance(n, ast.ClassDef) and n.name == "RunArgs")
        fields |= {n.target.id.replace("_", "-") for n in shared.body if isinstance(n, ast.AnnAssign)}
        assert fields == set(helps[script]) - {"help"}, script
        for flag, (_, text) in helps[script].items():
            assert text, f"{script}: --{flag} has no help text"


def test_a_flag_has_one_default_in_every_script(helps):
    seen = {}
    for script, flags in helps.items():
        for flag, (default, _) in flags.items():
            seen.setdefault(flag, {})[script] = default
    differ = {flag: d for flag, d in seen.items() if len(set(d.values())) > 1 and flag not in OWN_DEFAULTS}
    assert not differ, f"flags with a different default in different scripts: {differ}"


def test_one_name_per_idea(helps):
    for script, flags in helps.items():
        for old, new in RETIRED.items():
            assert old[2:] not in flags, f"{script}: {old} is now {new}"
        if "warmup-steps" in flags:  # the paper's warmup and nothing else: the frozen pre-trained policy acts
            assert "pre-trained policy" in flags["warmup-steps"][1], script
        if "learning-starts" in flags:  # CleanRL's name: random actions before the first update
            assert "random" in flags["learning-starts"][1], script


def definitions_and_roots(tree: ast.Module):
    def names(node):
        found = set()
        for x in ast.walk(node):
            if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Load):
                found.add(x.id)
            elif isinstance(x, ast.Attribute):
                found.add(x.attr)
        return found

    defs, imports, roots = {}, {}, set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defs[node.name] = names(node)
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            for t in node.targets:
                defs[t.id] = names(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                imports[(alias.asname or alias.name).split(".")[0]] = node.lineno
        else:
            roots |= names(node)
    return defs, imports, roots


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_script_holds_what_it_never_uses(script):
    """Every top-level function, class and constant is reachable from what runs (`main`, the
    `__main__` guard, module-level statements), and every import is used."""
    tree = ast.parse(open(os.path.join(ROOT, script), encoding="utf-8").read())
    defs, imports, roots = definitions_and_roots(tree)
    reached, todo = set(), [n for n in roots if n in defs]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += [n for n in defs[name] if n in defs]
    assert not set(defs) - reached, f"{script} defines what it never uses: {sorted(set(defs) - reached)}"
    used = roots.union(*defs.values())
    assert not set(imports) - used, f"{script} imports what it never uses: {sorted(set(imports) - used)}"


def test_the_dead_code_check_can_fail():
    tree = ast.parse("import os\ndef used():\n    return 1\ndef dead():\n    return used()\nused()\n")
    defs, imports, roots = definitions_and_roots(tree)
    assert roots == {"used"} and defs["dead"] == {"used"} and "os" in imports


def late_captures(main: ast.FunctionDef) -> list:
    """(helper, name) for every helper defined in `main` that reads a name `main` binds more
    than once, or binds after the helper's definition."""
    bound = {}
    for node in ast.walk(main):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.setdefault(node.id, []).append(node.lineno)
        elif isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
            pass  # (already a Store name)
    problems = []
    for node in ast.walk(main):
        if isinstance(node, ast.FunctionDef) and node is not main:
            own = {a.arg for a in node.args.args + node.args.kwonlyargs}
            own |= {x.id for x in ast.walk(node) if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Store)}
            for x in ast.walk(node):
                if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Load) and x.id in bound and x.id not in own:
                    lines = bound[x.id]
                    if len(lines) > 1 or lines[0] > node.lineno:
                        problems.append((node.name, x.id))
    return sorted(set(problems))


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_helper_in_main_reads_a_name_bound_again_later(script):
    tree = ast.parse(open(os.path.join(ROOT, script), encoding="utf-8").read())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert not late_captures(main), f"{script}: helpers in main that read names bound again: {late_captures(main)}"


def test_the_late_capture_check_can_fail():
    main = ast.parse("def main():\n    a = 1\n    def f():\n        return a + b\n    b = 2\n    a = 3\n").body[0]
    assert late_captures(main) == [("f", "a"), ("f", "b")]


# ---------------------------------------------------------------------------------------------
# The tutorial's proportions: each script is its algorithm; the machinery lives in wsrl_utils.py
# ---------------------------------------------------------------------------------------------
def test_line_breakdown_counts_support_and_algorithm_by_hand():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import line_breakdown as LB

    toy = ('"""doc"""\n'                       # docs
           "import torch\n"                     # support (an import)
           "from wsrl_utils import Run, build_env\n"  # support
           "class Args:\n    seed: int = 1\n"   # flags (2 lines)
           "def loss(q):\n"                     # algorithm
           "    # the TD error\n"               # algorithm (a comment takes the next line's kind)
           "    return (q - 1) ** 2\n"          # algorithm
           "def main(args):\n"                  # algorithm
           "    run = Run(args, 'x.py')\n"      # support
           "    env = build_env('Hopper-v5', 0)\n"  # support
           "    with run.stoppable():\n"        # support (the header names run)
           "        q = loss(2.0)\n"            # algorithm (the body is judged line by line)
           "    return q\n")                    # algorithm
    b = LB.breakdown(toy)
    assert b["counts"] == {"docs": 1, "support": 5, "flags": 2, "algorithm": 6}
    assert b["main_lines"] == 6 and b["first_wsrl_in_main"] is None


def test_each_script_is_mostly_its_algorithm():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import line_breakdown as LB

    for script in SCRIPTS:
        b = LB.breakdown(open(os.path.join(ROOT, script), encoding="utf-8").read())
        # (wsrl_iql_sac.py holds IQL, its hand-over to SAC and its calibrated temperature besides WSRL)
        limit = {"wsrl_calql_sac.py": 1000, "wsrl_iql_sac.py": 925}.get(script, 900)
        assert b["lines"] <= limit, (script, b["lines"])
        assert b["main_lines"] <= 200, (script, b["main_lines"])
        assert b["counts"]["algorithm"] >= 2 * b["counts"]["support"], (script, b["counts"])
        if script.startswith("wsrl_"):  # Algorithm 1's new empty buffer on main's first screen or so
            assert b["first_wsrl_in_main"] <= 60, (script, b["first_wsrl_in_main"])
