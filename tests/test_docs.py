"""The repository stands on its own: every section a comment cites exists in docs/, every
markdown file a text names exists, and no file holds an absolute path of some machine.

Run: `python -m pytest -q tests/test_docs.py`.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".py", ".md", ".ini", ".txt", ".json", ".jsonl", ".cfg", ".toml", ".sh", ""}
SKIP_DIRS = {".git", ".venv", "venv", ".ci", "runs", "__pycache__", ".pytest_cache", "node_modules"}

# "docs/kucoin.md 5.2", "docs/design.md 2 and 9", "docs/kucoin.md 5.1, 5.6, 5.8",
# "docs/kucoin.md 3.6-3.8"; a citation may wrap onto the next comment line.
CITE_RE = re.compile(r"docs/([a-z_]+)\.md(?:\s+sections?)?((?:[\s,]+(?:and\s+)?\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?)*)")
NUM_RE = re.compile(r"\d+(?:\.\d+)?")
HEADING_RE = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)?)\.?\s", re.MULTILINE)
MD_NAME_RE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.md)\b")
# Absolute paths of a machine: home and work folders, a venv's interpreter, pyenv shims.
ABS_PATH_RE = re.compile(r"(?<![\w.])/(?:home|root|work|Users|mnt|srv)/[\w.-]+|/tmp/[\w.-]+"
                         r"|[A-Za-z]:\\\\Users")


def _text_files():
    for p in sorted(ROOT.rglob("*")):
        if not p.is_file() or any(part in SKIP_DIRS for part in p.relative_to(ROOT).parts):
            continue
        if p.suffix in TEXT_SUFFIXES and p.stat().st_size < 2_000_000:
            try:
                yield p, p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def _flatten_comments(text: str) -> str:
    # Join wrapped comment lines so a citation split across two lines reads as one.
    return re.sub(r"\n\s*#\s*", " ", text)


def _sections(doc: Path) -> set[str]:
    return set(HEADING_RE.findall(doc.read_text(encoding="utf-8")))


def test_cited_doc_sections_when_scanned_then_each_exists():
    docs = {p.stem: _sections(p) for p in (ROOT / "docs").glob("*.md")}
    missing, seen = [], 0
    for path, text in _text_files():
        for m in CITE_RE.finditer(_flatten_comments(text)):
            name, nums = m.group(1), NUM_RE.findall(m.group(2))
            if name not in docs:
                missing.append(f"{path.relative_to(ROOT)}: docs/{name}.md does not exist")
                continue
            for n in nums:
                seen += 1
                if n not in docs[name]:
                    missing.append(f"{path.relative_to(ROOT)}: docs/{name}.md has no section {n}")
    assert seen > 100, "the citation scan found almost nothing: the regex is broken"
    assert not missing, "\n".join(missing)


def test_markdown_names_when_scanned_then_each_file_exists():
    known = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.md")
             if not any(part in SKIP_DIRS for part in p.relative_to(ROOT).parts)}
    basenames = {Path(k).name for k in known}
    missing = []
    for path, text in _text_files():
        for name in set(MD_NAME_RE.findall(text)):
            if name in known or name in basenames or (path.parent / name).exists():
                continue
            missing.append(f"{path.relative_to(ROOT)}: names {name}, which the repository lacks")
    assert not missing, "\n".join(sorted(missing))


def test_files_when_scanned_then_no_absolute_machine_path():
    found = []
    for path, text in _text_files():
        for lineno, line in enumerate(text.splitlines(), 1):
            if ABS_PATH_RE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def test_heading_regex_when_given_examples_then_reads_numbers():
    text = "## 5. HF orders\n### 5.2 Add order\n## 10. Tests\n"
    assert set(HEADING_RE.findall(text)) == {"5", "5.2", "10"}
    cites = [NUM_RE.findall(m.group(2)) for m in CITE_RE.finditer(
        "see docs/kucoin.md 5.1, 5.6, 5.8 and docs/design.md 2 and 9; docs/kucoin.md 3.6-3.8.")]
    assert cites == [["5.1", "5.6", "5.8"], ["2", "9"], ["3.6", "3.8"]]
