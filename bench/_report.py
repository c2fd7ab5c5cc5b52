"""Write one benchmark's section of BENCHMARKS.md, replacing its previous run."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\nEach section is written by the script it names, with the command that "
    "produced it. Ratios are measured side by side in one run (the machines are shared).\n"
)


def write_section(name: str, markdown: str, path: Path = BENCHMARKS) -> None:
    """Replace the section between `<!-- bench:name -->` markers in `path` (or append it)."""
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- bench:{name} -->\n{markdown.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S
    )
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
