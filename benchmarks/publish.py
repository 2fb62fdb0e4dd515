"""Where a benchmark's results go: its JSON under benchmarks/results/ and its section of docs/benchmarks.md."""

from __future__ import annotations

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "benchmarks.md")


def write_doc_section(heading: str, section: str, doc: str = DOC) -> None:
    """Replaces the `heading` section (up to the next `## `) of `doc` with `section`, or appends it."""
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n\n"
    start = text.find(heading + "\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    os.makedirs(os.path.dirname(doc), exist_ok=True)
    with open(doc, "w") as handle:
        handle.write(text)


def publish(report: dict, results: str, heading: str, section: str) -> None:
    """Writes `report` as JSON to `results` and `section` into docs/benchmarks.md; says so."""
    os.makedirs(os.path.dirname(results), exist_ok=True)
    with open(results, "w") as handle:
        json.dump(report, handle, indent=1)
    write_doc_section(heading, section)
    print(f"wrote {results} and the '{heading.lstrip('# ')}' section of {DOC}")
