"""What a script's lines are spent on: its algorithm, its flags, and the support code it still
carries (calls into wsrl_utils.py, imports).

    python tools/line_breakdown.py wsrl_calql_sac.py              # the working copy
    python tools/line_breakdown.py wsrl_calql_sac.py --rev HEAD~3 # an older commit's
    python tools/line_breakdown.py --all                          # every script, one table

How a non-blank line is counted (a comment line counts as the code line after it):
- flags: the `Args` dataclass;
- support: import lines, and every statement that names something imported from
  wsrl_utils.py or the `run` object (`run.log_eval(...)`, `with run.stoppable():`,
  `ReplayBuffer(...)`, `check_args(...)`), wherever it stands, `main` included; of a compound
  statement (`if`, `for`, `with`) only its header line is judged, its body line by line;
- docs: the module docstring;
- algorithm: everything else (networks, losses and updates, evaluation, diagnostics, `main`).
A file that imports nothing from wsrl_utils.py (one from before the split, `--rev 4ca56a8`) has
its support code inside: its algorithm and support columns are printed as "-", since this rule
cannot tell the two apart there. Also printed: the file's length, `main`'s length, and where the first WSRL-specific statement
(the new empty replay buffer) stands in `main`, for the WSRL scripts.
"""

import argparse
import ast
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("sac_fast.py", "calql_offline.py", "wsrl_calql_sac.py", "wsrl_iql_sac.py", "jsrl.py", "td3c.py")
KINDS = ("flags", "algorithm", "support", "docs")
SUPPORT_MODULE = "wsrl_utils"
FIRST_WSRL_STATEMENT = "Alg. 1, line 2: a fresh, EMPTY buffer"


def support_names(tree: ast.Module) -> set:
    names = {"run"}  # the Run object of wsrl_utils
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == SUPPORT_MODULE:
            names |= {alias.asname or alias.name for alias in node.names}
        if isinstance(node, ast.Import):
            names |= {alias.asname or alias.name for alias in node.names if alias.name == SUPPORT_MODULE}
    return names


def names_in(node: ast.AST) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def header_of(node: ast.stmt) -> list:
    """The parts of a compound statement that its header line holds."""
    if isinstance(node, (ast.If, ast.While)):
        return [node.test]
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return [node.target, node.iter]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [item.context_expr for item in node.items]
    return []


def classify(text: str) -> tuple[list, ast.Module]:
    lines = text.splitlines()
    kind = [None] * len(lines)
    tree = ast.parse(text)
    support = support_names(tree)

    def mark(first: int, last: int, k: str) -> None:
        for i in range(first - 1, last):
            if kind[i] is None:
                kind[i] = k

    def visit(stmts: list, default: str) -> None:
        for node in stmts:
            body = [getattr(node, f) for f in ("body", "orelse", "finalbody", "handlers") if getattr(node, f, None)]
            is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if is_def or isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.AsyncFor, ast.AsyncWith)):
                if is_def:
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    k = "support" if any(names_in(d) & support for d in node.decorator_list) else default
                    head_end = node.body[0].lineno - 1
                    mark(first, head_end, k)
                else:
                    head = header_of(node)
                    k = "support" if any(names_in(h) & support for h in head) else default
                    mark(node.lineno, node.lineno, k)
                for part in body:
                    visit(part if isinstance(part, list) else [part], default)
                if isinstance(node, ast.Try):
                    for h in node.handlers:
                        mark(h.lineno, h.lineno, default)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mark(node.lineno, node.end_lineno, "support")
                continue
            k = "support" if names_in(node) & support else default
            mark(node.lineno, node.end_lineno, k)

    for node in tree.body:
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                and node is tree.body[0]):
            mark(node.lineno, node.end_lineno, "docs")
        elif isinstance(node, ast.ClassDef) and node.name == "Args":
            mark(min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno, "flags")
        else:
            visit([node], "algorithm")
    # a comment line (or a line inside a multi-line string) takes the kind of the next code line
    following = "algorithm"
    for i in range(len(lines) - 1, -1, -1):
        if kind[i] is not None:
            following = kind[i]
        elif lines[i].strip():
            kind[i] = following
    return kind, tree


def breakdown(text: str) -> dict:
    kind, tree = classify(text)
    lines = text.splitlines()
    counts = {k: sum(1 for line, k2 in zip(lines, kind) if line.strip() and k2 == k) for k in KINDS}
    main = next(n for n in tree.body if getattr(n, "name", None) == "main")
    first = next((i + 1 for i, line in enumerate(lines) if FIRST_WSRL_STATEMENT in line), None)
    split = any(isinstance(n, ast.ImportFrom) and n.module == SUPPORT_MODULE for n in ast.walk(tree))
    return {"lines": len(lines), "counts": counts, "split": split, "main_lines": main.end_lineno - main.lineno + 1,
            "main_start": main.lineno, "first_wsrl_in_main": first - main.lineno + 1 if first else None}


def read(name: str, rev: str = None) -> str:
    if rev:
        return subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    return open(os.path.join(ROOT, name), encoding="utf-8").read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", nargs="?")
    parser.add_argument("--all", action="store_true", help="every script, one table")
    parser.add_argument("--rev", default=None, help="a git revision (default: the working copy)")
    opts = parser.parse_args()
    if not opts.all and not opts.script:
        parser.error("name a script, or pass --all")
    names = SCRIPTS if opts.all else [os.path.basename(opts.script)]
    print(f"{'at ' + opts.rev if opts.rev else 'working copy'} (non-blank lines)\n")
    print("| script | lines | main | algorithm | flags | support | docs | algorithm : support | "
          "first WSRL statement, line of main |\n|---|---|---|---|---|---|---|---|---|")
    for name in names:
        b = breakdown(read(name, opts.rev))
        c = b["counts"]
        where = b["first_wsrl_in_main"] if b["first_wsrl_in_main"] else "-"
        algo, support, ratio = ((c["algorithm"], c["support"], f"{c['algorithm'] / max(c['support'], 1):.1f}")
                                if b["split"] else ("-", "-", "-"))
        print(f"| {name} | {b['lines']} | {b['main_lines']} | {algo} | {c['flags']} | {support} | "
              f"{c['docs']} | {ratio} | {where} |")


if __name__ == "__main__":
    main()
