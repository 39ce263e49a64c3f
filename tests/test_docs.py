"""The documentation keeps up with the code: every tensorboard tag a script logs is described in
docs/metrics.md (with the scripts that log it), and every relative link of README.md and
docs/*.md points at a file that exists (and, for `#anchor` links into markdown, at a heading).

The tags are read from the scripts' source with `ast`, no run needed: the string or f-string
passed to `writer.add_scalar`, or to the logging calls of wsrl_utils.Run (`run.log(prefix,
scalars, step)`, `run.log_losses(prefix, info, ...)`, `run.log_eval(prefix, ...)`,
`run.log_episode(...)`, `run.progress(..., tag=...)`), its `{...}` placeholders expanded from what
they iterate over (the keys of the dicts the update and diagnostic functions return, the keys of
the dict literals a logging helper is called with, the string constants it is called with)."""
# what each Run logging call writes (wsrl_utils.Run), after its prefix argument
RUN_TAGS = {"log_eval": ["eval/return", "eval/normalized_score", "eval/success_rate"],
            "log_episode": ["charts/episodic_return", "charts/episodic_length"]}

import ast
import glob
import itertools
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["sac_fast.py", "jsrl.py", "calql_offline.py", "wsrl_calql_sac.py", "wsrl_iql_sac.py", "td3c.py"]
METRICS = os.path.join(ROOT, "docs", "metrics.md")


# ---------------------------------------------------------------------------------------------
# The tags each script logs, from its source
# ---------------------------------------------------------------------------------------------
class Script:
    def __init__(self, path: str):
        self.tree = ast.parse(open(path, encoding="utf-8").read(), path)
        self.parents = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.functions = {}  # name -> FunctionDef, top level and nested alike
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(node.name, node)
        self.aliases = {}  # `a, b = run.graphs.wrap(f), run.graphs.wrap(g)`: a -> f, b -> g
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else [node.targets[0]]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for t, v in zip(targets, values):
                    if (isinstance(t, ast.Name) and isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute)
                            and v.func.attr == "wrap" and v.args and isinstance(v.args[0], ast.Name)):
                        self.aliases.setdefault(t.id, set()).add(v.args[0].id)

    def ancestors(self, node):
        while node in self.parents:
            node = self.parents[node]
            yield node

    def enclosing_function(self, node):
        return next((a for a in self.ancestors(node) if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef))), None)

    # -- the string keys of the dict a function returns ------------------------------------------
    def returned_keys(self, name: str, seen=(), scope=None) -> set:
        if name in seen:
            return set()
        wrapped = self.aliases.get(name, set()) - {name}  # `f = run.graphs.wrap(f)` is f itself
        if wrapped:  # a wrapped update: what the function it wraps returns
            return set().union(*(self.returned_keys(n, seen + (name,)) for n in wrapped))
        fn = self.functions.get(name)
        if fn is None and scope is not None and name in [a.arg for a in scope.args.args]:
            # a function passed in as a parameter: whatever the call sites pass for it
            index = [a.arg for a in scope.args.args].index(name)
            keys = set()
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == scope.name:
                    passed = [a for i, a in enumerate(node.args) if i == index] + [k.value for k in node.keywords
                                                                                    if k.arg == name]
                    for arg in passed:
                        if isinstance(arg, ast.Name):
                            keys |= self.returned_keys(arg.id, seen + (name,))
            return keys
        if fn is None:
            return set()
        seen = seen + (name,)
        keys = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Return) and node.value is not None and self.enclosing_function(node) is fn:
                keys |= self.expr_keys(node.value, fn, seen)
        return keys

    def expr_keys(self, expr, scope, seen=()) -> set:
        """Keys of the dict `expr` evaluates to: a dict literal, a call of a function of this
        script (a function passed by name or a lambda's body counts too), or a local variable
        built from those (assigned, or grown with `.update(...)`)."""
        if isinstance(expr, ast.Dict):
            return {k.value for k in expr.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if isinstance(expr, ast.Name):
            if expr.id in self.functions:
                return self.returned_keys(expr.id, seen)
            keys = set()
            for node in ast.walk(scope):
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == expr.id for t in node.targets):
                    keys |= self.expr_keys(node.value, scope, seen)
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == expr.id):
                    for arg in node.args:
                        keys |= self.expr_keys(arg, scope, seen)
            return keys
        if isinstance(expr, ast.Call):
            keys = set()
            if isinstance(expr.func, ast.Name):
                keys |= self.returned_keys(expr.func.id, seen, self.enclosing_function(expr))
            for arg in expr.args:  # graphs.run(key, fn, batch): the dict is fn's
                if isinstance(arg, ast.Name) and arg.id in self.functions:
                    keys |= self.returned_keys(arg.id, seen)
                if isinstance(arg, ast.Lambda):
                    keys |= self.expr_keys(arg.body, scope, seen)
            return keys
        return set()

    # -- the values a placeholder name takes at one add_scalar call -------------------------------
    def loop_values(self, call, name: str, binding: dict):
        """Values of `name` when it is the first target of an enclosing `for name, _ in X.items()`
        loop, else None."""
        for loop in self.ancestors(call):
            if not isinstance(loop, ast.For):
                continue
            target = loop.target
            first = target.elts[0] if isinstance(target, ast.Tuple) and target.elts else target
            if not (isinstance(first, ast.Name) and first.id == name):
                continue
            it = loop.iter
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr == "items":
                source = it.func.value
                if isinstance(source, ast.Name) and source.id in binding:  # a parameter: the call site's dict
                    return binding[source.id]
                scope = self.enclosing_function(call) or self.tree
                if isinstance(source, ast.Name):  # a local variable: the update functions assigned to it in this loop's scope
                    return sorted(self.expr_keys(source, self.outer_loop(call) or scope))
                return sorted(self.expr_keys(source, scope))
        return None

    def outer_loop(self, call):
        """The outermost `for` loop around a call inside its function (the training loop)."""
        fn = self.enclosing_function(call)
        outer = None
        for a in self.ancestors(call):
            if a is fn:
                break
            if isinstance(a, ast.For):
                outer = a
        return outer

    def call_site_bindings(self, fn) -> list:
        """For a logging helper `fn`: one binding per call of it in the script, each parameter
        bound to the string constant, or the keys of the dict literal, passed for it."""
        if fn is None:
            return [{}]
        params = [a.arg for a in fn.args.args]
        bindings = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == fn.name:
                binding = {}
                pairs = list(zip(params, node.args)) + [(k.arg, k.value) for k in node.keywords if k.arg]
                for param, arg in pairs:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        binding[param] = [arg.value]
                    elif isinstance(arg, ast.Dict):
                        binding[param] = sorted(self.expr_keys(arg, fn))
                bindings.append(binding)
        return bindings or [{}]

    def values(self, expr, call, binding: dict, comprehension=None) -> list:
        """The strings an expression takes: a constant, a name (a loop variable, a parameter
        bound at the call sites, a comprehension's key variable), or an f-string of those."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return [expr.value]
        if isinstance(expr, ast.JoinedStr):
            choices = []
            for part in expr.values:
                if isinstance(part, ast.Constant):
                    choices.append([part.value])
                    continue
                assert isinstance(part.value, ast.Name), f"line {call.lineno}: placeholder {ast.unparse(part)}"
                choices.append(self.values(part.value, call, binding, comprehension))
            return ["".join(parts) for parts in itertools.product(*choices)]
        if isinstance(expr, ast.Name):
            found = None
            for gen in (comprehension.generators if comprehension is not None else []):
                first = gen.target.elts[0] if isinstance(gen.target, ast.Tuple) else gen.target
                if (isinstance(first, ast.Name) and first.id == expr.id and isinstance(gen.iter, ast.Call)
                        and isinstance(gen.iter.func, ast.Attribute) and gen.iter.func.attr == "items"):
                    found = sorted(self.expr_keys(gen.iter.func.value, self.enclosing_function(call) or self.tree))
            if found is None:
                found = self.loop_values(call, expr.id, binding)
            if found is None:
                found = binding.get(expr.id)
            assert found, (f"line {call.lineno}: cannot tell what {{{expr.id}}} takes in "
                           f"{ast.unparse(call)[:80]}: teach tests/test_docs.py the new pattern")
            return found
        raise AssertionError(f"line {call.lineno}: cannot read {ast.unparse(expr)[:80]}: teach tests/test_docs.py")

    def dict_key_values(self, expr, call, binding: dict) -> list:
        """The keys of the scalars passed to run.log: a dict literal, a dict comprehension, or a
        dict an update function returned."""
        if isinstance(expr, ast.Dict):
            return [v for k in expr.keys for v in self.values(k, call, binding)]
        if isinstance(expr, ast.DictComp):
            return self.values(expr.key, call, binding, comprehension=expr)
        return sorted(self.expr_keys(expr, self.outer_loop(call) or self.enclosing_function(call) or self.tree))

    def run_call_tags(self, call) -> set:
        """The tags of one call of a wsrl_utils.Run logging method (`run.log(...)` etc.)."""
        method, tags = call.func.attr, set()
        for binding in self.call_site_bindings(self.enclosing_function(call)):
            if method == "log_episode":
                tags |= set(RUN_TAGS[method])
                continue
            if method == "progress":
                tag = next((k.value for k in call.keywords if k.arg == "tag"), None)
                tags |= set(self.values(tag, call, binding)) if tag is not None else {"charts/SPS"}
                continue
            prefixes = self.values(call.args[0], call, binding)
            if method == "log_eval":
                names = RUN_TAGS[method]
            else:  # log(prefix, scalars, step), log_losses(prefix, info, step, phase)
                names = self.dict_key_values(call.args[1], call, binding)
            assert names, f"line {call.lineno}: no keys found for {ast.unparse(call)[:80]}"
            tags |= {p + n for p in prefixes for n in names}
        return tags

    def tags(self) -> set:
        tags = set()
        for call in ast.walk(self.tree):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and isinstance(call.func.value, ast.Name) and call.func.value.id == "run"
                    and call.func.attr in ("log", "log_losses", "log_eval", "log_episode", "progress")):
                tags |= self.run_call_tags(call)
                continue
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "add_scalar" and call.args):
                continue
            tag = call.args[0]
            if isinstance(tag, ast.Constant) and isinstance(tag.value, str):
                tags.add(tag.value)
                continue
            assert isinstance(tag, ast.JoinedStr), f"line {call.lineno}: a tag that is neither a string nor an f-string"
            for binding in self.call_site_bindings(self.enclosing_function(call)):
                choices = []
                for part in tag.values:
                    if isinstance(part, ast.Constant):
                        choices.append([part.value])
                        continue
                    assert isinstance(part.value, ast.Name), f"line {call.lineno}: placeholder {ast.unparse(part)}"
                    name = part.value.id
                    values = self.loop_values(call, name, binding)
                    if values is None:
                        values = binding.get(name)
                    assert values, (f"line {call.lineno}: cannot tell what {{{name}}} takes in the tag "
                                    f"{ast.unparse(tag)}: teach tests/test_docs.py the new pattern")
                    choices.append(values)
                tags |= {"".join(parts) for parts in itertools.product(*choices)}
        return tags


def logged_tags() -> dict:
    """tag -> the set of scripts that log it."""
    by_tag = {}
    for script in SCRIPTS:
        for tag in Script(os.path.join(ROOT, script)).tags():
            by_tag.setdefault(tag, set()).add(script[:-3])
    return by_tag


def test_the_extractor_finds_every_kind_of_tag():
    """Guards the guard: tags of each kind (plain strings, losses from the update functions'
    dicts, the diagnostics' keys crossed with the batches' names, the eval prefix) are found."""
    tags = logged_tags()
    expected = {
        "charts/SPS": {"sac_fast", "jsrl", "calql_offline", "wsrl_calql_sac", "wsrl_iql_sac", "td3c"},
        "offline/SPS": {"calql_offline", "wsrl_calql_sac", "wsrl_iql_sac", "td3c"},
        "losses/qf_loss": {"sac_fast", "jsrl", "calql_offline", "wsrl_calql_sac", "wsrl_iql_sac", "td3c"},
        "losses/alpha": {"sac_fast", "jsrl", "calql_offline", "wsrl_calql_sac", "wsrl_iql_sac"},
        "offline/losses/cql_gap": {"calql_offline", "wsrl_calql_sac"},
        "offline/losses/awr_weight_mean": {"wsrl_iql_sac"},
        "analysis/td_error_heldout": {"calql_offline", "wsrl_calql_sac", "wsrl_iql_sac", "td3c"},
        "analysis/q_online": {"calql_offline", "wsrl_calql_sac", "wsrl_iql_sac", "td3c"},
        "offline/analysis/td_error_heldout": {"calql_offline", "wsrl_calql_sac", "wsrl_iql_sac", "td3c"},
        "analysis/policy_kl_online": {"wsrl_calql_sac", "wsrl_iql_sac"},
        "offline/eval/normalized_score": {"calql_offline", "wsrl_calql_sac", "wsrl_iql_sac", "td3c"},
        "eval/success_rate": {"sac_fast", "jsrl", "calql_offline", "wsrl_calql_sac", "wsrl_iql_sac", "td3c"},
        "jsrl/rollin_prob": {"jsrl"},
        "losses/lagrange_multiplier": {"td3c"},
        "analysis/policy_distance_heldout": {"td3c"},
    }
    for tag, scripts in expected.items():
        assert tags.get(tag) == scripts, (tag, tags.get(tag))
    # IQL's pre-training has no temperature: nothing SAC-only is logged under offline/ by it
    assert "wsrl_iql_sac" not in tags.get("offline/losses/alpha", set())
    assert "offline/analysis/q_online" not in tags  # pre-training measures the held-out sample only
    assert all("{" not in t and "}" not in t for t in tags)


def test_the_extractor_expands_placeholders_and_refuses_what_it_cannot_read(tmp_path):
    source = tmp_path / "toy.py"
    source.write_text(
        "def update_critic():\n    return {'qf_loss': 0, 'qf_mean': 1}\n"
        "def update(batch):\n    info = update_critic()\n    info.update({'alpha': 2})\n    return info\n"
        "def diagnostics():\n    return {'q': 0}\n"
        "def main(writer):\n"
        "    def log(prefix, batches):\n"
        "        for name, batch in batches.items():\n"
        "            for key, value in diagnostics().items():\n"
        "                writer.add_scalar(f'{prefix}{key}_{name}', value, 0)\n"
        "    for step in range(3):\n"
        "        info = run('x', lambda b: update(b), None)\n"
        "        for k, v in info.items():\n"
        "            writer.add_scalar(f'losses/{k}', v, step)\n"
        "        writer.add_scalar('charts/SPS', 1.0, step)\n"
        "    log('offline/analysis/', {'heldout': 0})\n"
        "    log('analysis/', {'heldout': 0, 'online': 1})\n")
    assert Script(str(source)).tags() == {
        "charts/SPS", "losses/qf_loss", "losses/qf_mean", "losses/alpha", "offline/analysis/q_heldout",
        "analysis/q_heldout", "analysis/q_online"}
    source.write_text(  # the logging calls of wsrl_utils.Run, and an update wrapped once
        "def diagnostics():\n    return {'q': 0}\n"
        "def update(batch):\n    return {'qf_loss': 0}\n"
        "def analyse(run, prefix, batches):\n"
        "    for name, batch in batches.items():\n"
        "        run.log(prefix, {f'{k}_{name}': v for k, v in diagnostics().items()}, 0)\n"
        "        run.log('analysis/', {f'kl_{name}': 0.0}, 0)\n"
        "def main(run):\n"
        "    step_fn = run.graphs.wrap(update)\n"
        "    info = step_fn(None)\n"
        "    run.log_losses('losses/', info, 1, 'online')\n"
        "    run.log_eval('offline/', 1, None, [])\n"
        "    run.log_episode(None, 1, 0.0)\n"
        "    run.progress(1, 1, 0, None, 0, [], info, tag='offline/SPS')\n"
        "    analyse(run, 'analysis/', {'heldout': 0, 'online': 1})\n")
    assert Script(str(source)).tags() == {
        "analysis/q_heldout", "analysis/q_online", "analysis/kl_heldout", "analysis/kl_online", "losses/qf_loss",
        "offline/eval/return", "offline/eval/normalized_score", "offline/eval/success_rate", "charts/episodic_return",
        "charts/episodic_length", "offline/SPS"}
    source.write_text("def main(writer, tag):\n    writer.add_scalar(f'x/{tag.name}', 1.0, 0)\n")
    with pytest.raises(AssertionError, match="placeholder"):
        Script(str(source)).tags()


# ---------------------------------------------------------------------------------------------
# docs/metrics.md describes every tag, and says which scripts log it
# ---------------------------------------------------------------------------------------------
def metrics_rows() -> dict:
    """tag -> the scripts that its row in docs/metrics.md names, in the column headed "logged by"
    ("all" = every script). A row may describe several tags (all in its first cell)."""
    rows, column = {}, None
    for line in open(METRICS, encoding="utf-8").read().splitlines():
        if not line.startswith("|"):
            column = None  # a table ends
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]  # \| is a pipe in a cell
        if column is None:  # a header row
            column = next((i for i, c in enumerate(cells) if c.lower() == "logged by"), -1)
            continue
        if column < 0 or set(cells[0]) <= set("-: ") or column >= len(cells):
            continue
        named = set(re.findall(r"\b(sac_fast|jsrl|calql_offline|wsrl_calql_sac|wsrl_iql_sac|td3c)\b", cells[column]))
        if re.search(r"\ball\b", cells[column]):
            named = {s[:-3] for s in SCRIPTS}
        for tag in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)+)`", cells[0]):
            rows[tag] = named
    return rows


def test_every_logged_tag_is_described_in_docs_metrics():
    doc = open(METRICS, encoding="utf-8").read()
    missing = sorted(t for t in logged_tags() if f"`{t}`" not in doc)
    assert not missing, f"logged but not described in docs/metrics.md: {missing}"


def test_docs_metrics_names_the_scripts_that_log_each_tag():
    tags, rows = logged_tags(), metrics_rows()
    missing = sorted(set(tags) - set(rows))
    assert not missing, f"no table row (tag in the first cell, a 'logged by' column) in docs/metrics.md for {missing}"
    wrong = {t: (sorted(rows[t]), sorted(tags[t])) for t in tags if rows[t] != tags[t]}
    assert not wrong, f"docs/metrics.md names other scripts than those that log (doc, code): {wrong}"
    stale = sorted(set(rows) - set(tags))
    assert not stale, f"docs/metrics.md describes tags no script logs: {stale}"


# ---------------------------------------------------------------------------------------------
# Relative links point at files (and headings) that exist
# ---------------------------------------------------------------------------------------------
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def strip_fences(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)


def strip_code(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "", strip_fences(text))  # fenced blocks, then inline code


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation but - and _ dropped,
    spaces made hyphens (markdown links keep their text, code spans lose the backticks)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: str) -> set:
    slugs, seen = set(), {}
    for line in strip_fences(open(path, encoding="utf-8").read()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


def links(path: str):
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", strip_code(open(path, encoding="utf-8").read())):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not checked
            yield target


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_point_at_existing_files_and_headings(doc):
    broken = []
    for target in links(doc):
        file_part, _, anchor = target.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(doc), file_part)) if file_part else doc
        if not os.path.exists(path):
            broken.append(f"{target}: no such file")
        elif anchor and path.endswith(".md"):
            if anchor not in anchors(path):
                broken.append(f"{target}: no heading with that anchor in {os.path.relpath(path, ROOT)}")
        elif anchor and re.fullmatch(r"L\d+(-L\d+)?", anchor):  # line anchors into a script
            last = int(anchor.split("-")[-1][1:])
            with open(path, encoding="utf-8") as f:
                if last > sum(1 for _ in f):
                    broken.append(f"{target}: past the end of the file")
    assert not broken, f"{os.path.relpath(doc, ROOT)}: " + "; ".join(broken)


def test_the_slug_rule_matches_githubs():
    assert github_slug("`sac_fast.py`: high-UTD ensemble SAC, and RLPD") == "sac_fastpy-high-utd-ensemble-sac-and-rlpd"
    assert github_slug("A sparse-reward maze on 2 cores: `bash benchmark.sh maze`") == \
        "a-sparse-reward-maze-on-2-cores-bash-benchmarksh-maze"
    assert github_slug("The warmup ablation at the paper's UTD 4") == "the-warmup-ablation-at-the-papers-utd-4"
    assert github_slug("§3 CQL and Cal-QL (`calql_offline.py`, phase 1)") == "3-cql-and-cal-ql-calql_offlinepy-phase-1"
