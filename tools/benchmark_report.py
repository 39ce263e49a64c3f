"""Turn a folder of benchmark runs (tensorboard logs) into figures and a score table.

benchmark.sh runs every method with `--exp-name METHOD`, so each run folder is named
`ENV__METHOD__SEED__TIME`. This tool groups the folders by method, reads the tensorboard logs
back and writes, into --out:

- `curves.png`: normalized score against online environment steps, one line per method: the
  mean over seeds, with the band from the lowest to the highest seed;
- `analysis.png`: the `analysis/` curves around the offline-to-online switch (mean Q on online
  batches and on held-out offline data, TD error on the held-out data: the panels of the paper's
  Fig. 11, whose Q panels show Fig. 4's downward spiral when it happens; and KL(pi_pre || pi)),
  for the methods that log them;
- `scores.md`: final scores per method with every seed, plus the numbers behind the figures.

    python tools/benchmark_report.py --runs results/cpu/runs --out results/cpu --note "2-core VM, 2026-11-21"
"""

import argparse
import os
import sys
import textwrap
from collections import defaultdict

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# (exp_name used by benchmark.sh, label); the order of the legend and the table
BENCHMARK_METHODS = [
    ("wsrl", "WSRL (Cal-QL)"),
    ("wsrl_iql", "WSRL (IQL)"),
    ("wsrl_no_warmup", "WSRL, no warmup"),
    ("calql_no_retention", "Cal-QL, no retention"),
    ("calql_retention", "Cal-QL, retention"),
    ("jsrl", "JSRL"),
    ("so2", "SO2"),
    ("rlpd", "RLPD (retention)"),
    ("sac_fast", "SAC (fast), from scratch"),
]
# run only when METHODS names them: demo.sh's runs from an IQL agent, the Fig. 7 baselines
METHODS = BENCHMARK_METHODS + [("wsrl_iql_no_warmup", "WSRL (IQL), no warmup"), ("iql_no_retention", "IQL, no retention"),
                                # the paper's Fig. 7 baselines as their papers ran them (2 Q-functions, no LayerNorm)
                                ("calql_2q", "Cal-QL (2 Q, no LN), no retention"), ("cql_2q", "CQL (2 Q, no LN), no retention"),
                                ("iql_2q", "IQL (2 Q, no LN), no retention")]
# the td3c tier (td3c.py: the policy-collapse paper); TD3-C first, the reference of its report
METHODS += [("td3c", "TD3-C"), ("td3", "TD3"), ("td3bc", "TD3+BC, continued online")]
# (tag, panel title, log scale): Fig. 11's three panels, then how far the policy moved (Fig. 8)
ANALYSIS_TAGS = [
    ("analysis/q_online", "mean Q on online batches", False),
    ("analysis/q_heldout", "mean Q on held-out offline data", False),
    ("analysis/td_error_heldout", "TD error on held-out offline data", True),
    ("analysis/policy_kl_heldout", "KL(pi_pre || pi) on offline states", False),
]


def parse_run_name(name: str):
    """ENV__METHOD__SEED__TIME[_N] -> (METHOD, SEED), or None for other folders."""
    parts = name.split("__")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def read_runs(runs_dirs, tags: list) -> dict:
    """{method: {seed: {tag: {step: value}}}} for every run folder under runs_dirs (one folder or a
    list: e.g. two benchmarks of the same tier, one method each, reported together)."""
    folders = [runs_dirs] if isinstance(runs_dirs, str) else list(runs_dirs)
    for runs_dir in folders:
        if not os.path.isdir(runs_dir):
            sys.exit(f"error: no folder {runs_dir!r}; run benchmark.sh first")
    out = defaultdict(dict)
    for runs_dir, name in sorted((d, n) for d in folders for n in os.listdir(d)):
        parsed = parse_run_name(name)
        if parsed is None:
            continue
        method, seed = parsed
        events = EventAccumulator(os.path.join(runs_dir, name), size_guidance={"scalars": 0}).Reload()
        have = set(events.Tags()["scalars"])
        if seed in out[method]:
            print(f"warning: two runs of {method} seed {seed}; keeping the later one ({name})")
        out[method][seed] = {t: {e.step: e.value for e in events.Scalars(t)} for t in tags if t in have}
    return dict(out)


def seed_matrix(per_seed: dict, tag: str):
    """Steps logged by EVERY seed, and a (seeds, steps) array of the values there."""
    series = [s[tag] for s in per_seed.values() if tag in s]
    if not series:
        return None, None
    steps = sorted(set.intersection(*[set(s) for s in series]))
    return np.array(steps), np.array([[s[k] for k in steps] for s in series])


def plot_curves(runs: dict, methods: list, tag: str, path: str, title: str, warmup: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, (method, label) in enumerate(methods):
        steps, values = seed_matrix(runs.get(method, {}), tag)
        if steps is None or len(steps) == 0:
            continue
        color = f"C{i % 10}"
        ax.plot(steps, values.mean(0), color=color, marker=".", label=f"{label} ({len(values)} seeds)")
        ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.15, linewidth=0)
    if warmup:
        ax.axvline(warmup, color="gray", linestyle="--", linewidth=1, label="end of WSRL's warmup")
    ax.set(xlabel="online environment steps", ylabel=tag.split("/")[-1].replace("_", " "))
    ax.set_title(textwrap.fill(title, 90), fontsize=9)  # long titles (budgets, seeds) wrap, not cut
    ax.grid(alpha=0.3)
    # outside the axes: eight methods' labels would hide the curves' start, where the dips are
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_analysis(runs: dict, methods: list, path: str, title: str, warmup: int = 0) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [(m, l) for m, l in methods if any(t in s for s in runs.get(m, {}).values() for t, _, _ in ANALYSIS_TAGS)]
    if not present:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    axes = axes.ravel()
    for ax, (tag, name, log) in zip(axes, ANALYSIS_TAGS):
        for i, (method, label) in enumerate(methods):
            if (method, label) not in present:
                continue
            steps, values = seed_matrix(runs[method], tag)
            if steps is None or len(steps) == 0:
                continue
            ax.plot(steps, values.mean(0), color=f"C{i % 10}", label=label)
            ax.fill_between(steps, values.min(0), values.max(0), color=f"C{i % 10}", alpha=0.15, linewidth=0)
        if warmup:  # WSRL's updates start here; the Cal-QL runs and no-warmup WSRL update from 0
            ax.axvline(warmup, color="gray", linestyle="--", linewidth=1,
                       label="end of WSRL's warmup" if ax is axes[0] else None)
        ax.set(title=name, xlabel="online environment steps (0 = the switch)")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 110), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# demo.sh's figure: the three runs from one IQL agent, in words a student reads without the docs
DEMO_METHODS = [("wsrl_iql", "WSRL: warmup with the frozen policy, then SAC"),
                ("wsrl_iql_no_warmup", "SAC from the first batch, no warmup"),
                ("iql_no_retention", "IQL kept as the online learner")]
DEMO_PANELS = [("eval/normalized_score", "How well the agent does\n(normalised score: 0 random, 100 expert)", False),
               ("analysis/policy_kl_heldout", "How far the policy moved from the pre-trained one\n"
                                              "(KL(pi_pre || pi) on offline states)", False),
               ("analysis/td_error_heldout", "How badly the critic now fits offline data\n"
                                             "(TD error on held-out offline transitions, log scale)", True)]


def plot_demo(runs: dict, path: str, title: str, warmup: int) -> list:
    """demo.sh's one figure: a panel per question, a legend in every panel, the switch (step 0:
    online, the data thrown away) and the end of WSRL's warmup (its first update) marked. With
    several seeds: the mean and the band from the lowest to the highest seed. Returns the panels'
    legend labels (for the tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 6.2))
    legends = []
    for ax, (tag, name, log) in zip(axes, DEMO_PANELS):
        if warmup:
            ax.axvspan(0, warmup, color="0.85", alpha=0.6, linewidth=0,
                       label=f"WSRL's warmup: the frozen pre-trained policy acts, no update (0-{warmup:,})")
        ax.axvline(0, color="k", linewidth=1.2, label="the switch: online, the offline data thrown away")
        for i, (method, label) in enumerate(DEMO_METHODS):
            steps, values = seed_matrix(runs.get(method, {}), tag)
            if steps is None or len(steps) == 0:
                continue
            seeds = f" (mean of {len(values)} seeds; band: lowest to highest)" if len(values) > 1 else ""
            ax.plot(steps, values.mean(0), color=f"C{i}", marker=".", label=label + seeds)
            if len(values) > 1:
                ax.fill_between(steps, values.min(0), values.max(0), color=f"C{i}", alpha=0.15, linewidth=0)
        if log:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("online environment steps")
        ax.set_xlim(left=-0.04 * max(ax.get_xlim()[1], 1))  # the switch's line off the frame
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13))  # under the panel: no curve hidden
        legends.append([t.get_text() for t in ax.get_legend().get_texts()])
    fig.suptitle(textwrap.fill(title, 140), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return legends


def demo_caption(runs: dict, warmup: int, tag: str = "eval/normalized_score") -> str:
    """The paragraph demo.sh prints under its figure, its numbers read from the runs (mean over
    seeds, with the range when there are several)."""
    def stat(values) -> str:
        v = np.asarray(values, dtype=float)
        return f"{v.mean():.1f}" + (f" (seeds {v.min():.1f} to {v.max():.1f})" if len(v) > 1 else "")

    rows = {label: r for label, r in ((r[0], r) for r in score_rows(runs, DEMO_METHODS, tag))}
    said, starts = [], []
    for _, label in DEMO_METHODS:
        if label not in rows:
            continue
        _, finals, _, st, lows, last = rows[label]
        starts += list(st.values())
        said.append(f"{label}: lowest {stat(list(lows.values()))}, final {stat(list(finals.values()))}")
    if not said:
        return ""
    seeds = max(len(r[1]) for r in rows.values())
    start, last = float(np.mean(starts)), max(r[5] for r in rows.values())
    above = [label for label, r in rows.items() if np.mean(list(r[1].values())) > start]
    verdict = (f"Ending above the start: {', '.join(above)}." if above else
               f"No method ends above the pre-trained agent's {start:.1f} within {last:,} steps.")
    dips = {label: start - np.mean(list(r[4].values())) for label, r in rows.items() if r[4]}
    sac = [(label, dips[label]) for _, label in DEMO_METHODS[:2] if label in dips]
    dip_said = ("In these runs the switch from IQL to SAC cost " +
                " and ".join(f"{d:.1f} points ({label.split(':')[0].split(',')[0]})" for label, d in sac) +
                " (mean start minus mean lowest evaluation). ") if sac else ""
    more = ("docs/benchmarks.md (The demo) has the same runs over 5 seeds with their intervals." if seeds == 1 else
            "The intervals over these seeds are in bench/scores.md.")
    return textwrap.fill(
        f"An agent pre-trained offline with IQL (normalised score {start:.1f} at step 0) is fine-tuned online "
        f"for {last:,} steps with its offline data thrown away, three ways ({seeds} seed{'s' * (seeds > 1)}). "
        f"{'; '.join(said)}. {verdict} Grey band: WSRL lets the frozen pre-trained policy act for {warmup:,} "
        "steps before its first update, so its score holds there; its dip comes after its first update, "
        "the other two update (or, for IQL, keep updating) from the first batch. Middle: how far each policy "
        "has moved from the pre-trained one. Right: the TD error of each critic on offline transitions it "
        "never trained on, which grows as the critic forgets the data (what the paper's Fig. 4 looks at). "
        f"{dip_said}This is a small budget (2 CPU cores, 128-unit networks, one update per step; the paper "
        f"fine-tunes for 300,000 steps at four). {more}", 100)


def score_rows(runs: dict, methods: list, tag: str) -> list:
    rows = []
    for method, label in methods:
        per_seed = runs.get(method, {})
        finals, means, lows, starts = {}, {}, {}, {}
        for seed, tags in sorted(per_seed.items()):
            curve = tags.get(tag)
            if not curve:
                continue
            steps = sorted(curve)
            finals[seed] = curve[steps[-1]]
            means[seed] = float(np.mean([curve[k] for k in steps]))
            if steps[0] == 0 and len(steps) > 1:  # starts from a pre-trained agent: how far does it fall?
                starts[seed] = curve[0]
                lows[seed] = min(curve[k] for k in steps[1:])
        if finals:
            rows.append((label, finals, means, starts, lows, steps[-1]))
    return rows


def fmt(values: dict) -> str:
    v = np.array(list(values.values()))
    return f"{v.mean():.1f} ± {v.std():.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def write_table(rows: list, path: str, tag: str, note: str, command: str) -> str:
    lines = [
        f"# Final scores ({tag})",
        "",
        *([f"Command: `{command}`", ""] if command else []),
        *([note, ""] if note else []),
        "mean ± std over seeds (population std); `start`: the pre-trained agent at online step 0; "
        "`lowest`: the worst evaluation after the switch (the initial dip); `average`: the mean over "
        "all evaluations of the run (sample efficiency).",
        "",
        "| method | seeds | final | per seed (final) | average over the run | start | lowest after start |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, finals, means, starts, lows, last in rows:
        per_seed = ", ".join(f"{s}: {v:.1f}" for s, v in finals.items())
        lines.append(f"| {label} | {len(finals)} | {fmt(finals)} | {per_seed} | {fmt(means)} | "
                     f"{fmt(starts) if starts else '-'} | {fmt(lows) if lows else '-'} |")
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def analysis_rows(runs: dict, methods: list, marks: list) -> list:
    """The numbers behind analysis.png: for each method that logs them and each ANALYSIS_TAGS tag,
    the mean over seeds (± population std) at the logged step nearest to each of `marks` (online
    steps, e.g. the switch, 1,000 steps after WSRL's warmup, the end; a mark past the run's last
    step takes the last). Rows (label, tag name, [(step, mean, std) per mark])."""
    rows = []
    for method, label in methods:
        for tag, name, _ in ANALYSIS_TAGS[1:]:  # held-out offline data: Q, TD error, KL
            steps, values = seed_matrix(runs.get(method, {}), tag)
            if steps is None or len(steps) == 0:
                continue
            cells = []
            for mark in marks:
                j = int(np.abs(steps - min(mark, steps[-1])).argmin())
                cells.append((int(steps[j]), float(values[:, j].mean()), float(values[:, j].std())))
            rows.append((label, name, cells))
    return rows


def analysis_text(rows: list) -> str:
    if not rows:
        return ""
    lines = ["", "## Held-out offline data (the numbers behind analysis.png)", "",
             "mean ± std over seeds at the logged step nearest to each column's step.", "",
             "| method | quantity | " + " | ".join(f"step {s:,}" for s, _, _ in rows[0][2]) + " |",
             "|---|---|" + "---|" * len(rows[0][2])]
    for label, name, cells in rows:
        lines.append(f"| {label} | {name} | " + " | ".join(f"{m:.3g} ± {sd:.2g}" for _, m, sd in cells) + " |")
    return "\n".join(lines) + "\n"


def per_seed_metrics(rows: list) -> dict:
    """{label: {metric: array over seeds}}: the final score, the average over the run, and the dip
    (pre-trained start minus the lowest evaluation after it) for methods that start pre-trained."""
    out = {}
    for label, finals, means, starts, lows, _ in rows:
        m = {"final": np.array(list(finals.values())), "average": np.array(list(means.values()))}
        if starts:
            m["dip"] = np.array([starts[s] - lows[s] for s in starts])
        out[label] = m
    return out


def interval_estimates(metrics_by_label: dict, reps: int = 5000) -> dict:
    """rliable's interquartile mean with a 95% stratified-bootstrap confidence interval over seeds
    (one task, so the strata are the runs): {metric: {label: (iqm, low, high)}}."""
    import warnings

    from rliable import library as rly
    from rliable import metrics

    out = {}
    for metric in ("final", "average", "dip"):
        scores = {label: m[metric].reshape(-1, 1) for label, m in metrics_by_label.items() if metric in m}
        if not scores:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arch warns about RandomState; it is what keeps this reproducible
            point, ci = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
                                                   random_state=np.random.RandomState(0))
        out[metric] = {label: (float(point[label][0]), float(ci[label][0, 0]), float(ci[label][1, 0])) for label in scores}
    return out


def improvement_probabilities(metrics_by_label: dict, reference: str, reps: int = 5000) -> dict:
    """P(reference's final score > another method's), the probability of improvement of rliable
    (Agarwal et al., 2021), with its 95% bootstrap interval: {label: (p, low, high)}."""
    import warnings

    from rliable import library as rly
    from rliable import metrics

    if reference not in metrics_by_label:
        return {}
    x = metrics_by_label[reference]["final"].reshape(-1, 1)
    pairs = {label: (x, m["final"].reshape(-1, 1)) for label, m in metrics_by_label.items() if label != reference}
    if not pairs:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        point, ci = rly.get_interval_estimates(pairs, metrics.probability_of_improvement, reps=reps,
                                               random_state=np.random.RandomState(0))
    flat = lambda v: np.asarray(v, dtype=float).ravel()
    return {label: (flat(point[label])[0], *flat(ci[label])[:2]) for label in pairs}


def plot_intervals(estimates: dict, path: str, title: str, colors: dict | None = None) -> dict:
    """One panel per metric, a bar per method: the IQM and its 95% interval (rliable's figure).
    Every method keeps one row and one colour (its colour in curves.png) in every panel, also in
    a panel it is missing from (the dip of a method that starts from scratch). Returns the rows,
    {metric: {label: (y, colour)}}, for the tests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"final": "final score", "average": "average score over the run", "dip": "dip after the switch (lower is better)"}
    labels = list(dict.fromkeys(label for per_label in estimates.values() for label in per_label))
    colors = colors or {label: f"C{i % 10}" for i, label in enumerate(labels)}
    row = {label: len(labels) - 1 - i for i, label in enumerate(labels)}  # the first method on top
    fig, axes = plt.subplots(1, len(estimates), figsize=(4.2 * len(estimates), 0.5 * len(labels) + 1.6),
                             squeeze=False, sharey=True)
    drawn = {}
    for ax, (metric, per_label) in zip(axes[0], estimates.items()):
        drawn[metric] = {}
        for label, (iqm, lo, hi) in per_label.items():
            y, color = row[label], colors.get(label, "C0")
            ax.barh(y, hi - lo, left=lo, height=0.6, color=color, alpha=0.6)
            ax.plot([iqm, iqm], [y - 0.3, y + 0.3], color="k", linewidth=1.5)
            drawn[metric][label] = (y, color)
        ax.set_yticks(range(len(labels)), [l for l, _ in sorted(row.items(), key=lambda r: r[1])], fontsize=8)
        ax.set_ylim(-0.5, len(labels) - 0.5)
        ax.margins(x=0.05)
        ax.set(title=names[metric], xlabel="IQM, 95% CI")
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(textwrap.fill(title, 110), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def interval_text(estimates: dict, probabilities: dict, reference: str) -> str:
    lines = ["", "## Interquartile mean and 95% stratified-bootstrap confidence intervals (rliable)", "",
             "Over seeds; `dip` = start minus the lowest evaluation after it (methods that start pre-trained).", "",
             "| method | final | average over the run | dip after the switch |", "|---|---|---|---|"]
    labels = list(next(iter(estimates.values())))
    cell = lambda metric, label: (f"{estimates[metric][label][0]:.1f} [{estimates[metric][label][1]:.1f}, "
                                  f"{estimates[metric][label][2]:.1f}]") if label in estimates.get(metric, {}) else "-"
    for label in labels:
        lines.append(f"| {label} | {cell('final', label)} | {cell('average', label)} | {cell('dip', label)} |")
    if probabilities:
        lines += ["", f"Probability that {reference} ends above each method (final score; 0.5 = no difference), "
                      "with its 95% interval:", "", "| vs | P(improvement) | 95% CI |", "|---|---|---|"]
        lines += [f"| {label} | {p:.2f} | [{lo:.2f}, {hi:.2f}] |" for label, (p, lo, hi) in probabilities.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, nargs="+",
                   help="folder(s) holding the run folders (ENV__METHOD__SEED__TIME)")
    p.add_argument("--out", required=True, help="where curves.png, analysis.png and scores.md go")
    p.add_argument("--tag", default="eval/normalized_score", help="the score to plot and tabulate")
    p.add_argument("--title", default="", help="figure title (e.g. the environment and budget)")
    p.add_argument("--note", default="", help="a line for scores.md: machine, date, budgets")
    p.add_argument("--command", default="", help="the command that produced the runs, for scores.md")
    p.add_argument("--warmup", type=int, default=0, help="draw the end of WSRL's warmup at this step")
    p.add_argument("--demo", action="store_true",
                   help="demo.sh's figure instead (demo.png: the three runs from one IQL agent) and its caption "
                        "(caption.txt, also printed)")
    a = p.parse_args()
    runs = read_runs(a.runs, [a.tag] + [t for t, _, _ in ANALYSIS_TAGS])
    if a.demo:
        if not any(m in runs for m, _ in DEMO_METHODS):
            sys.exit(f"error: no run of {', '.join(m for m, _ in DEMO_METHODS)} under {a.runs}")
        os.makedirs(a.out, exist_ok=True)
        plot_demo(runs, os.path.join(a.out, "demo.png"), a.title, a.warmup)
        caption = demo_caption(runs, a.warmup, a.tag)
        with open(os.path.join(a.out, "caption.txt"), "w") as f:
            f.write(caption + "\n")
        print(f"\n{caption}\n\nwrote {a.out}/demo.png and {a.out}/caption.txt")
        return
    unknown = sorted(set(runs) - {m for m, _ in METHODS})
    methods = METHODS + [(m, m) for m in unknown if m not in ("pretrain", "td3bc_pretrain", "dataset")]  # others
    if not any(a.tag in s for m, _ in methods for s in runs.get(m, {}).values()):
        sys.exit(f"error: no run under {a.runs} logs {a.tag}")
    os.makedirs(a.out, exist_ok=True)
    plot_curves(runs, methods, a.tag, os.path.join(a.out, "curves.png"), a.title, a.warmup)
    drew = plot_analysis(runs, methods, os.path.join(a.out, "analysis.png"), a.title, a.warmup)
    rows = score_rows(runs, methods, a.tag)
    text = write_table(rows, os.path.join(a.out, "scores.md"), a.tag, a.note, a.command)
    last = max(r[5] for r in rows)
    marks = sorted({0, (a.warmup or 0) + 1000, last})  # the switch, 1,000 updates into WSRL, the end
    extra = analysis_text(analysis_rows(runs, methods, marks))
    if extra:
        with open(os.path.join(a.out, "scores.md"), "a") as f:
            f.write(extra)
        text += extra
    per_seed = per_seed_metrics(rows)
    if max(len(m["final"]) for m in per_seed.values()) > 1:  # intervals over one seed say nothing
        estimates = interval_estimates(per_seed)
        plot_intervals(estimates, os.path.join(a.out, "intervals.png"), a.title,
                       colors={label: f"C{i % 10}" for i, (_, label) in enumerate(methods)})  # as in curves.png
        reference = next(label for m, label in methods if m in runs)  # WSRL (Cal-QL), or TD3-C in the td3c tier
        extra = interval_text(estimates, improvement_probabilities(per_seed, reference), reference)
        with open(os.path.join(a.out, "scores.md"), "a") as f:
            f.write(extra)
        text += extra
    print(text)
    print(f"wrote {a.out}/curves.png" + (f", {a.out}/analysis.png" if drew else "") + f" and {a.out}/scores.md")


if __name__ == "__main__":
    main()
