"""The README is a front door and the docs link to each other: no link may lead nowhere.

Every relative link in README.md and docs/*.md must name a file that exists and, with a
``#fragment``, a heading of that file (GitHub's slugs); the README stays under 10 KB; the docs
index lists every document.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README_LIMIT_BYTES = 10_000  # 10 kB as a reader counts it

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"`[^`]*`")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (links and headings inside them are not rendered)."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # emphasis underscores, not snake_case ones
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    """Every heading anchor of ``markdown``, duplicates numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    for line in _prose_lines(markdown.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(markdown: Path) -> list[str]:
    """Targets of the inline and reference-style links of ``markdown`` (code spans excluded)."""
    targets: list[str] = []
    for line in _prose_lines(markdown.read_text(encoding="utf-8")):
        definition = _REFERENCE_DEF.match(line)
        if definition:
            targets.append(definition.group(1))
            continue
        targets.extend(m.group(1) for m in _INLINE_LINK.finditer(_INLINE_CODE.sub("", line)))
    return targets


def broken_links(markdown: Path, root: Path = REPO) -> list[str]:
    """One line per relative link of ``markdown`` that does not resolve inside ``root``."""
    problems = []
    for target in links(markdown):
        if _EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        destination = (markdown.parent / path_part).resolve() if path_part else markdown
        where = f"{markdown.relative_to(root)}: {target}"
        if not destination.is_relative_to(root):
            problems.append(f"{where}: leads outside the repository")
        elif not destination.exists():
            problems.append(f"{where}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            problems.append(f"{where}: no heading #{fragment} in {destination.relative_to(root)}")
    return problems


def documents(root: Path = REPO) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


@pytest.mark.parametrize("markdown", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(markdown: Path) -> None:
    assert broken_links(markdown) == []


def test_readme_is_a_front_door_under_10_kb() -> None:
    size = (REPO / "README.md").stat().st_size
    assert size < README_LIMIT_BYTES, f"README.md is {size} bytes; move detail to docs/"


def test_docs_index_lists_every_document() -> None:
    index = REPO / "docs" / "README.md"
    listed = {(index.parent / t).resolve() for t in links(index) if not _EXTERNAL.match(t)}
    missing = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p != index and p.resolve() not in listed]
    assert missing == []


def test_checker_catches_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## The `round`, as built\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "# Front\n\n"
        "[ok](docs/other.md#the-round-as-built) [self](#front) [web](https://example.org/x)\n"
        "[gone](docs/missing.md) [bad anchor](docs/other.md#no-such-heading) [bad self](#nowhere)\n"
        "`[in code](docs/missing-in-code.md)`\n\n"
        "```\n[in a fence](docs/missing-in-fence.md)\n```\n\n"
        "[ref]: docs/missing-ref.md\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "README.md: docs/missing.md: no such file",
        "README.md: docs/other.md#no-such-heading: no heading #no-such-heading in docs/other.md",
        "README.md: #nowhere: no heading #nowhere in README.md",
        "README.md: docs/missing-ref.md: no such file",
    ]


def test_checker_refuses_links_out_of_the_repository(tmp_path: Path) -> None:
    page = tmp_path / "repo" / "README.md"
    page.parent.mkdir()
    (tmp_path / "DESIGN.md").write_text("# Design\n", encoding="utf-8")
    page.write_text("[design](../DESIGN.md)\n", encoding="utf-8")
    assert broken_links(page, page.parent) == ["README.md: ../DESIGN.md: leads outside the repository"]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("`fedledger.fl`: heterogeneous federated learning", "fedledgerfl-heterogeneous-federated-learning"),
        ("Results (50 rounds, logit-adjusted loss τ = 1)", "results-50-rounds-logit-adjusted-loss-τ--1"),
        ("What the numbers say (honestly)", "what-the-numbers-say-honestly"),
        ("round_deadline_seconds and **k**", "round_deadline_seconds-and-k"),
    ],
)
def test_slugs_follow_github(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug
