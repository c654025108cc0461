"""The README and docs point only at files inside the repository, and those files exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a markdown link's target, or a backticked path to a markdown file (`eval.md` alone names an output)
REFERENCE = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)|`([^`\s]*/[^`\s]+\.md)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_linked_file_is_inside_the_repository(doc):
    references = [a or b for a, b in REFERENCE.findall(doc.read_text())]
    for reference in references:
        if re.match(r"[a-z]+://", reference):
            continue
        # a backticked name is written from the repository root or the doc's own folder
        candidates = [(doc.parent / reference).resolve(), (ROOT / reference).resolve()]
        assert any(path.is_relative_to(ROOT) and path.exists() for path in candidates), (doc.name, reference)
