"""The documents the code relies on live in the repository, and what cites them points at something real.

A maintainer who clones the repository must be able to follow every citation: no tracked file may name
a document kept outside it (the product notes it was first written from), and every ``docs/X.md §N``
must name a section that exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Spelled in pieces so that this file does not cite them itself.
OUTSIDE = re.compile("|".join(re.escape(name) for name in (
    "SPEC" + ".md", "PROTOCOL" + ".md", "STYLE" + ".md", "../" + "shared", "/work/" + "shared",
    "fixtures/" + "misskey/")))
CITATION = re.compile(r"docs/(\w+)\.md §(\d+(?:\.\d+)?)")


def tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                               timeout=30).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):  # not a git checkout (an sdist): every file counts
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and not any(part.startswith(".") or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)]
    files = []
    for name in filter(None, names):
        path = ROOT / name
        if path.is_file() and b"\0" not in path.read_bytes()[:4096]:
            files.append(path)
    return files


def test_the_documents_exist():
    for name in ("protocol", "cli"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), f"docs/{name}.md is missing"


def test_no_tracked_file_cites_a_document_outside_the_repository():
    found = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            match = OUTSIDE.search(line)
            if match:
                found.append(f"{path.relative_to(ROOT)}:{number}: cites {match.group(0)}")
    assert not found, "cite docs/protocol.md or docs/cli.md instead:\n" + "\n".join(found)


def sections(doc: str) -> set[str]:
    text = (ROOT / "docs" / f"{doc}.md").read_text(encoding="utf-8")
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.MULTILINE))


def test_every_citation_of_a_document_section_names_one_that_exists():
    known = {doc: sections(doc) for doc in ("protocol", "cli")}
    assert known["protocol"] >= {"1", "2", "3", "3.1", "3.2", "9"} and known["cli"] >= {"1", "6", "7"}
    dangling = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for doc, section in CITATION.findall(line):
                if section not in known.get(doc, set()):
                    dangling.append(f"{path.relative_to(ROOT)}:{number}: docs/{doc}.md §{section}")
    assert not dangling, "no such section:\n" + "\n".join(dangling)
