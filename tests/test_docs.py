"""The repository's own documentation: theory sections, API reference, no paths outside the repo.

Code, tests, benchmarks, examples and the README cite the theory as ``§N.N`` (and the oracle
checklist as ``§7 item N``); every such citation must resolve to a numbered heading (or a row of
the checklist) of docs/theory.md. Every public name must appear in docs/api.md. Both lists are
computed here at test time, so a new citation or a new export without documentation fails.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
THEORY = DOCS / "theory.md"
API = DOCS / "api.md"

SCANNED = ("src", "tests", "benchmarks", "examples", "docs")
SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".hypothesis"}
PUBLIC_MODULES = ("lossgeom", "lossgeom.loci", "lossgeom.flows", "lossgeom.linear",
                  "lossgeom.manifold", "lossgeom.sweep")

CITATION = re.compile(r"(?<![\w§])(design\s+)?§\s?(\d+(?:\.\d+)?)", re.IGNORECASE)
ITEM_CITATION = re.compile(r"§\s?7\s+(?:items?|rows?)\s+(\d+(?:\s*(?:,|and|–|-)\s*\d+)*)",
                           re.IGNORECASE)
HEADING = re.compile(r"^(#{1,6})\s+(\d+)(?:\.(\d+))?\s+\S")
CHECKLIST_ROW = re.compile(r"^\|\s*(\d+)\s*\|")

# References that point outside the repository. Users have only the repository, so no file may
# name another checkout, a home folder, or documents that ship elsewhere. The strings are put
# together from pieces, so that this file holds none of them and is scanned like every other.
_UP, _SHARED, _SPEC = "..", "shared", "spec"
OUTSIDE_SAMPLES = {
    "sibling checkout": f"see {_UP}/{_SHARED} here",
    "machine path (work)": "see " + "/" + "work/ here",
    "machine path (root)": "see " + "/" + "root/ here",
    "machine path (home)": "see " + "/" + "home/ here",
    "spec folder": f"see {_SHARED}/{_SPEC} here",
    "spec file": f"see {_SPEC}/math" + ".md here",
    "design guide": "see design" + ".md here",
    "design-guide citation": "see Design " + "§" + "3.8",
}
OUTSIDE_PATTERNS = {
    "sibling checkout": re.compile(re.escape(f"{_UP}/{_SHARED}")),
    "machine path (work)": re.compile(re.escape("/" + "work/")),
    "machine path (root)": re.compile(re.escape("/" + "root/")),
    "machine path (home)": re.compile(re.escape("/" + "home/")),
    "spec folder": re.compile(re.escape(f"{_SHARED}/{_SPEC}")),
    "spec file": re.compile(re.escape(f"{_SPEC}/math" + ".md")),
    "design guide": re.compile(r"\bdesign" + r"\.md\b"),
    "design-guide citation": re.compile(r"\bdesign\s+§", re.IGNORECASE),
}
RELATIVE_MD = re.compile(r"(?:\.\./)+[\w./-]*\.md\b")


def _text_files(roots=SCANNED, extra=("README.md",)):
    """Every readable text file under the scanned folders, plus the top-level extras."""
    files = [ROOT / name for name in extra if (ROOT / name).is_file()]
    for top in roots:
        base = ROOT / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file() or SKIPPED_DIRS & set(path.relative_to(ROOT).parts):
                continue
            if path.name.endswith(".egg-info") or ".egg-info" in str(path):
                continue
            files.append(path)
    for path in files:
        try:
            yield path, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary data (figures, archives, databases)


def _markdown_lines(text: str):
    """Lines of a Markdown text outside fenced code blocks, with their line numbers."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def _theory_sections() -> list[tuple[int, int | None, str]]:
    """(top, sub, heading line) for every numbered heading of docs/theory.md, in order."""
    sections = []
    for _, line in _markdown_lines(THEORY.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            sub = int(match.group(3)) if match.group(3) else None
            sections.append((int(match.group(2)), sub, line))
    return sections


def _section_labels() -> set[str]:
    return {f"{top}" if sub is None else f"{top}.{sub}" for top, sub, _ in _theory_sections()}


def _checklist_items() -> list[int]:
    """Item numbers of the table in section 7 of docs/theory.md."""
    items, inside = [], False
    for _, line in _markdown_lines(THEORY.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            inside = match.group(2) == "7" and match.group(3) is None
            continue
        if inside:
            row = CHECKLIST_ROW.match(line)
            if row:
                items.append(int(row.group(1)))
    return items


def _item_numbers(text: str) -> list[int]:
    """Item numbers of a checklist citation: "9", "1, 2, 15", "4 and 18", "3–5" (a range)."""
    items = []
    for part in re.split(r"\s*(?:,|and)\s*", text):
        ends = [int(v) for v in re.split(r"\s*[–-]\s*", part) if v]
        items += list(range(ends[0], ends[-1] + 1))
    return items


def _citations():
    """(file, line number, label) for every theory citation §N or §N.N in the repository."""
    found = []
    for path, text in _text_files():
        for number, line in enumerate(text.splitlines(), 1):
            for match in CITATION.finditer(line):
                if match.group(1):  # a design-guide citation, not the theory (test (c))
                    continue
                found.append((path.relative_to(ROOT).as_posix(), number, match.group(2)))
    return found


# -- (d) the documents exist ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["docs/theory.md", "docs/api.md", "docs/routes.md",
                                  "docs/architecture.md", "CHANGELOG.md"])
def test_document_exists_with_a_heading(name):
    path = ROOT / name
    assert path.is_file(), f"{name} is missing"
    first = next((line for _, line in _markdown_lines(path.read_text(encoding="utf-8"))
                  if line.strip()), "")
    assert first.startswith("# "), f"{name} should open with a '# ' heading, got {first!r}"


# -- (a) every § citation resolves ---------------------------------------------------------------


def test_citations_are_found():
    # The scan itself must see the citations; a broken pattern would make the next test vacuous.
    labels = {label for _, _, label in _citations()}
    assert {"1.2", "2.3", "3.4", "6.2"} <= labels


def test_every_section_citation_resolves_to_a_theory_heading():
    headings = _section_labels()
    missing = sorted({(label, f"{file}:{line}") for file, line, label in _citations()
                      if label not in headings})
    assert not missing, (
        "§ citations without a numbered heading in docs/theory.md (label, first place): "
        + ", ".join(f"§{label} at {where}" for label, where in missing[:20]))


def test_every_checklist_citation_resolves_to_a_row_of_section_7():
    items = set(_checklist_items())
    cited = []
    for path, text in _text_files():
        for number, line in enumerate(text.splitlines(), 1):
            cited += [(item, f"{path.relative_to(ROOT).as_posix()}:{number}")
                      for m in ITEM_CITATION.finditer(line) for item in _item_numbers(m.group(1))]
    assert cited, "no '§7 item N' citation found: the pattern is broken"
    missing = [(item, where) for item, where in cited if item not in items]
    assert not missing, f"§7 items cited but not in the checklist table: {missing}"


def test_theory_headings_are_numbered_consistently():
    sections = _theory_sections()
    assert sections, "docs/theory.md has no numbered headings"
    labels = [(top, sub) for top, sub, _ in sections]
    assert len(set(labels)) == len(labels), f"duplicate section numbers: {labels}"
    assert labels == sorted(labels, key=lambda t: (t[0], -1 if t[1] is None else t[1])), \
        "numbered headings are out of order"
    tops = [top for top, sub in labels if sub is None]
    assert tops == list(range(len(tops))), f"top-level sections should be 0, 1, 2, …: {tops}"
    depth = {(top, sub): len(line) - len(line.lstrip("#")) for top, sub, line in sections}
    assert all(depth[t] in (1, 2) for t in labels if t[1] is None), "top-level: '#' or '##'"
    assert all(depth[t] == 2 for t in labels if t[1] is not None), "subsections: '##'"
    for top, sub in labels:
        if sub is not None:
            assert (top, None) in labels, f"§{top}.{sub} has no top-level section {top}"
    for top in tops:
        subs = [sub for t, sub in labels if t == top and sub is not None]
        assert subs == list(range(1, len(subs) + 1)), f"§{top} subsections not 1, 2, …: {subs}"


def test_item_numbers_of_a_checklist_citation():
    assert _item_numbers("9") == [9]
    assert _item_numbers("1, 2, 15") == [1, 2, 15]
    assert _item_numbers("4 and 18") == [4, 18]
    assert _item_numbers("3–5") == [3, 4, 5]


def test_checklist_items_are_consecutive():
    items = _checklist_items()
    assert items == list(range(1, len(items) + 1)), f"§7 items should run 1, 2, …: {items}"


# -- (b) every public name is documented -----------------------------------------------------------


def _documented(name: str, text: str, headings: list[str]) -> bool:
    in_backticks = re.search(r"`(?:[\w.]+\.)?" + re.escape(name) + r"`", text)
    in_heading = any(re.search(r"(?<![\w.])" + re.escape(name) + r"(?!\w)", h) for h in headings)
    return bool(in_backticks or in_heading)


def _public_names() -> list[tuple[str, str]]:
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names += [(module_name, name) for name in module.__all__]
    return names


def test_public_names_are_collected():
    modules = {module for module, _ in _public_names()}
    assert modules == set(PUBLIC_MODULES)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_appears_in_the_api_reference(module_name):
    text = API.read_text(encoding="utf-8")
    headings = [line for _, line in _markdown_lines(text) if line.startswith("#")]
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not _documented(name, text, headings)]
    assert not missing, f"{module_name}.__all__ names missing from docs/api.md: {missing}"


def test_documented_check_can_fail():
    text = "### `alpha`\n\nSee `lg.linear.beta`.\n"
    headings = ["### `alpha`"]
    assert _documented("alpha", text, headings) and _documented("beta", text, headings)
    assert not _documented("gamma", text, headings)
    assert not _documented("alp", text, headings)


# -- (c) nothing points outside the repository -----------------------------------------------------


def _outside_references():
    found = []
    for path, text in _text_files(roots=("src", "tests", "docs", "benchmarks", "examples")):
        where = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(text.splitlines(), 1):
            for label, pattern in OUTSIDE_PATTERNS.items():
                if pattern.search(line):
                    found.append(f"{where}:{number} ({label})")
            for match in RELATIVE_MD.finditer(line):
                target = (path.parent / match.group(0)).resolve()
                if not target.is_relative_to(ROOT) or not target.is_file():
                    found.append(f"{where}:{number} ({match.group(0)} is not a file of the repository)")
    return found


def test_outside_reference_scan_detects_each_pattern(tmp_path):
    assert OUTSIDE_SAMPLES.keys() == OUTSIDE_PATTERNS.keys()
    for label, pattern in OUTSIDE_PATTERNS.items():
        assert pattern.search(OUTSIDE_SAMPLES[label]), label
    assert not OUTSIDE_PATTERNS["design-guide citation"].search("the theory's §9.1")
    assert RELATIVE_MD.search(f"(``{_UP}/api.md``)") and not RELATIVE_MD.search(f'"{_UP}/data.npz"')


def test_no_file_points_outside_the_repository():
    found = _outside_references()
    assert not found, "references outside the repository:\n" + "\n".join(found)


# -- links inside the docs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["theory.md", "api.md"])
def test_relative_links_in_docs_resolve(name):
    text = (DOCS / name).read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        if not (DOCS / target).resolve().is_file():
            broken.append(target)
    assert not broken, f"docs/{name} links to missing files: {broken}"


def _anchors(text: str) -> set[str]:
    """The heading anchors GitHub generates for a Markdown text (duplicates get -1, -2, …)."""
    anchors, seen = set(), {}
    for _, line in _markdown_lines(text):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_anchor_slugs_follow_github():
    anchors = _anchors("# `lossgeom.flows`\n## 1.2 Behavior manifold\n### `Inertia`\n### `inertia`\n")
    assert anchors == {"lossgeomflows", "12-behavior-manifold", "inertia", "inertia-1"}


@pytest.mark.parametrize("name", ["theory.md", "api.md"])
def test_anchor_links_in_docs_resolve(name):
    text = (DOCS / name).read_text(encoding="utf-8")
    anchors = _anchors(text)
    broken = sorted({a for a in re.findall(r"\]\(#([^)\s]+)\)", text) if a not in anchors})
    assert not broken, f"docs/{name} links to missing headings: {broken}"
