"""
The README and the pages in C{docs/} point at what exists: every relative
link at a file or directory of the repository (and, with a C{#fragment}, at a
heading of that page), every C{make TARGET} at a target C{make help} lists.
And the README stays short: what does not fit belongs in a page of C{docs/}.

The checks are functions of a text and a root, so that the tests at the end
can show each of them finding what it is for.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

README_MAX_BYTES = 8 * 1024
"""
The README's bound: its two commands, what webstack is, the diagram, the
tour, where things are documented and the layout fit well within it.
"""

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_MAKE = re.compile(r"(?:^|[\s;(&|])make[ \t]+([a-z][a-z0-9-]*(?:NAME)?)")
_HELP_TARGET = re.compile(r"^([a-z][a-z0-9%-]*):.*## ", re.MULTILINE)


def prose(text: str) -> str:
    """
    The text without its code blocks and code spans, where a link is not one.
    """
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def code(text: str) -> list[str]:
    """
    The text's code: every fenced block and every code span.
    """
    blocks = [m.group(0) for m in _FENCE.finditer(text)]
    spans = [m.group(2) for m in _CODE_SPAN.finditer(_FENCE.sub("", text))]
    return blocks + spans


def slug(heading: str) -> str:
    """
    The anchor GitHub gives a heading: its text without markup, lower case,
    without punctuation but hyphens and underscores, spaces as hyphens.
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """
    Every anchor of a page; a repeated heading's later ones get C{-1}, C{-2}.
    """
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def brokenLinks(page: Path, root: Path) -> list[str]:
    """
    The relative links of C{page} that lead nowhere, each with why.
    """
    text = prose(page.read_text(encoding="utf-8"))
    targets = _INLINE_LINK.findall(text) + _REFERENCE.findall(text)
    broken = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("//"):
            continue  # http:, https:, mailto: ...
        path, _, fragment = target.partition("#")
        destination = (page.parent / path).resolve() if path else page.resolve()
        if root.resolve() not in (destination, *destination.parents):
            broken.append(f"{target}: outside the repository")
        elif not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment:
            if destination.suffix != ".md" or destination.is_dir():
                broken.append(f"{target}: an anchor in what is not a page")
            elif fragment not in anchors(destination.read_text(encoding="utf-8")):
                broken.append(f"{target}: no heading #{fragment}")
    return broken


def makeTargets(makefile: str) -> set[str]:
    """
    The targets the Makefile describes for C{make help} (those with a C{## }
    description), pattern rules (C{demo-%}) included.
    """
    return set(_HELP_TARGET.findall(makefile))


def isTarget(name: str, targets: set[str]) -> bool:
    return any(
        re.fullmatch(re.escape(target).replace("%", ".+"), name) for target in targets
    )


def unknownTargets(text: str, targets: set[str]) -> list[str]:
    """
    The C{make TARGET}s in the code of C{text} that are not in C{targets}.
    """
    return sorted(name for name in namedTargets(text) if not isTarget(name, targets))


def namedTargets(text: str) -> set[str]:
    """
    Every C{make TARGET} in the code of C{text} (not in its prose, where
    "make" is a verb).
    """
    return {name for snippet in code(text) for name in _MAKE.findall(snippet)}


# The repository's own pages.


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_everyRelativeLinkLeadsToWhatExists(page):
    assert brokenLinks(page, ROOT) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_everyMakeTargetNamedExists(page):
    targets = makeTargets((ROOT / "Makefile").read_text(encoding="utf-8"))
    assert unknownTargets(page.read_text(encoding="utf-8"), targets) == []


def test_theReadmeIsShort():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, over {README_MAX_BYTES}: move a subject to docs/"
    )


def test_theReadmeStartsWithTheTwoCommands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = _FENCE.search(text)
    assert first is not None
    assert text[: first.start()].strip().splitlines() == ["# webstack"]
    commands = [line.split()[:2] for line in first.group(0).splitlines()[1:-1]]
    assert commands == [["make", "up"], ["make", "test"]]


def test_everyPageIsReachableFromTheReadme():
    readme = ROOT / "README.md"
    linked = {
        (readme.parent / target.partition("#")[0]).resolve()
        for target in _INLINE_LINK.findall(prose(readme.read_text(encoding="utf-8")))
    }
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert unlinked == []


def test_everyPageStartsWithItsSummary():
    for page in PAGES[1:]:
        first = page.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# ") and len(first) > len("# ") + 10, page.name


# The checks find what they are for.


def test_aBrokenLinkIsFound(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "there.txt").write_text("")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Title\n\n## Two words\n\n"
        "[ok](../there.txt) [ok](#two-words) [ok](https://example.org/x) "
        "[gone](../missing.md) [bad anchor](page.md#nowhere) [out](../../x)\n"
        "`[not a link](nowhere.md)`\n\n```\n[nor this](nowhere.md)\n```\n"
        "[ref]: gone-too.md\n"
    )
    assert brokenLinks(page, tmp_path) == [
        "../missing.md: no such file",
        "page.md#nowhere: no heading #nowhere",
        "../../x: outside the repository",
        "gone-too.md: no such file",
    ]


def test_anchorsAreGitHubs():
    text = "# A tour\n## Where this differs, and why\n## `make up` (v2)\n## A tour\n"
    assert anchors(text) == {"a-tour", "where-this-differs-and-why", "make-up-v2", "a-tour-1"}


def test_anUnknownMakeTargetIsFound():
    makefile = (
        "help: ## List\n\t@true\nup: images ## Start\n\t@true\nhidden:\n\t@true\n"
        "demo-%: venv ## Run one\n\t@true\n"
    )
    targets = makeTargets(makefile)
    assert targets == {"help", "up", "demo-%"}
    text = (
        "Run `make up`, then `WEBSTACK_PUBLISH=0.0.0.0:8080 make upp`; to make sure, "
        "`make hidden`, or `make demo-cancel`, not `make demo-`.\n"
        "```sh\nmake help\nmake lock-check   # gone\n```\n"
    )
    assert namedTargets(text) == {
        "up", "upp", "hidden", "demo-cancel", "demo-", "help", "lock-check"
    }
    assert unknownTargets(text, targets) == ["demo-", "hidden", "lock-check", "upp"]
