"""Print tensorboard scalars of one or more runs as a table, without opening tensorboard.

    python tools/scalars.py runs/RUN                                  # list the run's tags
    python tools/scalars.py runs/RUN analysis/q_heldout eval/return   # one column per tag
    python tools/scalars.py runs/A runs/B --tag analysis/q_heldout    # one column per run
    python tools/scalars.py runs/A runs/B --tag eval/return --tag analysis/td_error_heldout \
        --labels "no retention" retention --plot switch.png              # and a figure, a panel per tag

Rows are the steps at which any of the columns was logged; a blank cell means "not logged at
that step".
"""

import argparse
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def points(events: EventAccumulator, tag: str) -> list:
    """The tag's points, or none when this run does not log it (e.g. a baseline without KL)."""
    return events.Scalars(tag) if tag in events.Tags()["scalars"] else []


def load(run_dir: str) -> EventAccumulator:
    if not os.path.isdir(run_dir):
        sys.exit(f"error: no run folder {run_dir!r}")
    return EventAccumulator(run_dir, size_guidance={"scalars": 0}).Reload()  # 0: keep every point


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="a run folder, then tags; or several run folders with --tag")
    p.add_argument("--tag", action="append", help="compare this tag across several runs (repeat for more tags)")
    p.add_argument("--labels", nargs="+", help="with --tag: names of the runs (default: their folders)")
    p.add_argument("--plot", help="with --tag: also draw the tags (one panel each, a line per run) to this PNG")
    a = p.parse_args()
    if a.tag:
        labels = a.labels or [os.path.basename(r.rstrip("/")) for r in a.paths]
        if len(labels) != len(a.paths):
            sys.exit("error: give one label per run")
        runs = {label: load(r) for label, r in zip(labels, a.paths)}
        if a.plot:
            plot(runs, a.tag, a.plot)
        for tag in a.tag:
            print(f"\n{tag}")
            table({label: {e.step: e.value for e in points(ev, tag)} for label, ev in runs.items()})
        return
    events = load(a.paths[0])
    tags = a.paths[1:]
    if not tags:
        print("\n".join(sorted(events.Tags()["scalars"])))
        return
    missing = [t for t in tags if t not in events.Tags()["scalars"]]
    if missing:
        sys.exit(f"error: {a.paths[0]} has no tag {', '.join(missing)} (run without tags to list them)")
    table({t: {e.step: e.value for e in events.Scalars(t)} for t in tags})


def table(columns: dict) -> None:
    steps = sorted(set().union(*[c.keys() for c in columns.values()]))
    if not steps:
        sys.exit("error: none of the runs logs that tag")
    print("| step | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for s in steps:
        print(f"| {s} | " + " | ".join(f"{c[s]:.4g}" if s in c else "" for c in columns.values()) + " |")


def plot(runs: dict, tags: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tags), figsize=(4.5 * len(tags), 3.5), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        for label, ev in runs.items():
            xs = points(ev, tag)
            ax.plot([e.step for e in xs], [e.value for e in xs], marker=".", label=label)
        ax.set(title=tag, xlabel="step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
