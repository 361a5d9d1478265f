"""The README (rendered by GitHub, outside the docs site): every relative link resolves to a file of the
repository, every `#anchor` into a Markdown file names one of its headings, and training on your own data starts
within the first screenful. The docs site's own links are checked by `mkdocs build --strict` (`make docs`)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The README without its fenced code blocks (JSON rows and shell lines are not links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", _prose(markdown.read_text(encoding="utf-8")), flags=re.M)
    return {_slug(h) for h in headings}


def _relative_links() -> list[str]:
    links = LINK.findall(_prose(README.read_text(encoding="utf-8")))
    return [link for link in links if not re.match(r"^[a-z]+:", link)]


def test_readme_relative_links_resolve():
    links = _relative_links()
    assert links, "the README links into docs/"
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (ROOT / path).resolve() if path else README
        if ROOT not in target.parents and target != ROOT or not target.exists():
            broken.append(f"{link}: no such file in the repository")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link}: no heading '#{anchor}' in {path or 'README.md'}")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_reachable_from_the_readme():
    """Following relative links from the README, page to page, reaches every Markdown file under docs/."""
    seen, todo = set(), [README]
    while todo:
        page = todo.pop()
        if page in seen or not page.exists():
            continue
        seen.add(page)
        for link in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            path = link.partition("#")[0]
            if path.endswith(".md") and not re.match(r"^[a-z]+:", path):
                todo.append((page.parent / path).resolve())
    unreached = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md") if p not in seen)
    assert not unreached, unreached


def test_readme_links_only_inside_the_repository():
    absolute = [link for link in _relative_links() if link.startswith("/")]
    assert not absolute, absolute


def test_training_on_your_own_data_is_in_the_first_screenful():
    lines = README.read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if line.lower().startswith("## train on your own data"))
    assert first < 60, f"'Train on your own data' starts at line {first + 1}"
