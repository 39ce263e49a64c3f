"""Propagate marked copies (`# [copy: NAME]` ... `# [end copy]`) from one script to the others.

Edit a shared block in ONE script, then run

    python tools/sync_copies.py sac_fast.py          # every block of sac_fast.py -> the other scripts
    python tools/sync_copies.py calql_offline.py --check   # only list the blocks that differ

Each other top-level script that has a block of the same name gets the source's text. This is
the `make fix-copies` of transformers' "Copied from" convention; tests/test_copies.py fails while
copies differ.
"""

import argparse
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"# \[copy: ([\w.-]+)\]\n.*?# \[end copy\]\n", re.S)


def blocks_of(text: str) -> dict:
    return {m.group(1): m.group(0) for m in BLOCK.finditer(text)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the script whose blocks are right, e.g. sac_fast.py")
    parser.add_argument("--check", action="store_true", help="list differing blocks, change nothing")
    opts = parser.parse_args()
    source = blocks_of(open(os.path.join(ROOT, os.path.basename(opts.source)), encoding="utf-8").read())
    changed = []
    for path in sorted(glob.glob(os.path.join(ROOT, "*.py"))):
        if os.path.basename(path) == os.path.basename(opts.source):
            continue
        text = open(path, encoding="utf-8").read()
        new = BLOCK.sub(lambda m: source.get(m.group(1), m.group(0)), text)
        if new != text:
            names = [n for n, b in blocks_of(text).items() if n in source and source[n] != b]
            changed.append(f"{os.path.basename(path)}: {', '.join(names)}")
            if not opts.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    print(("differ: " if opts.check else "updated: ") + ("; ".join(changed) if changed else "nothing"))
    return 1 if (opts.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
