"""Blocks copied across scripts (`# [copy: NAME]` ... `# [end copy]`) must stay identical, so a
fix made in one script reaches every copy (the transformers "Copied from" convention)."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"# \[copy: ([\w.-]+)\]\n(.*?)# \[end copy\]", re.S)


def marked_blocks(sources: dict) -> dict:
    """{block name: {script: text}} over every script."""
    blocks = {}
    for script, text in sources.items():
        for name, body in BLOCK.findall(text):
            assert script not in blocks.get(name, {}), f"{script} has two blocks named {name}"
            blocks.setdefault(name, {})[script] = body
    return blocks


def differing(sources: dict) -> list:
    return sorted(name for name, copies in marked_blocks(sources).items() if len(set(copies.values())) > 1)


def test_checker_catches_a_drifted_copy():
    a = "x = 1\n# [copy: foo]\ndef f():\n    return 1\n# [end copy]\n"
    assert differing({"a.py": a, "b.py": a}) == []
    assert differing({"a.py": a, "b.py": a.replace("return 1", "return 2")}) == ["foo"]


def test_marked_copies_are_identical_across_scripts():
    sources = {os.path.basename(p): open(p, encoding="utf-8").read() for p in glob.glob(os.path.join(ROOT, "*.py"))}
    blocks = marked_blocks(sources)
    assert {"networks", "sac-actor", "sac-core", "sac-update"} <= set(blocks), "sac_fast.py lost its marked blocks"
    for text in sources.values():  # every opened block is closed
        assert text.count("# [copy: ") == text.count("# [end copy]")
    assert differing(sources) == [], "copies differ: fix every copy of these blocks"
