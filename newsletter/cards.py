"""Papers as cards: what an issue keeps of each paper, and what the templates show of it.

An issue keeps a snapshot of its papers when it is planned (`paper_snapshot`, `issue_papers`), so a
later ingest cannot change what it shows. A card (`PaperView`) has the title, always a link (the
paper's page, else an arXiv title search: never an invented id), the one-line TL;DR when the source
gave one, the abstract trimmed below it, the organisation, and the links, with the code
repository's stars beside "Code". The digest, the view-in-browser page and the archive show the same
cards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlmodel import Session, col, select

from newsletter.models import Issue, Paper, saved_id
from newsletter.papers.base import ENRICHED_FIELDS, LINK_FIELDS, MAX_AUTHORS
from newsletter.ranking import PaperText
from newsletter.values import shorten

ABSTRACT_CHARS = 420
ABSTRACT_UNDER_TLDR_CHARS = 280  # a card with a TL;DR trims the abstract below it further
# Paper columns an issue keeps (issue.papers_snapshot): what paper_view and paper_text read.
SNAPSHOT_FIELDS = (
    ("id", "title", "abstract", "authors", "keywords", "upvotes", "published_at")
    + LINK_FIELDS
    + ENRICHED_FIELDS
)
ARXIV_TITLE_SEARCH = "https://arxiv.org/search/"


@dataclass(frozen=True)
class PaperView:
    id: int
    title: str
    link: str  # never empty: the paper's page, or an arXiv search for its title
    authors: tuple[str, ...]
    authors_line: str
    abstract_short: str
    thumbnail: str | None
    links: tuple[tuple[str, str], ...]
    tldr: str = ""  # one line saying what the paper does, when the source has one
    organization: str = ""
    stars: str = ""  # the code repository's stars, written for people ("1,234"); "" when unknown


def title_search_url(title: str) -> str:
    """arXiv's search for papers with this title: where a title with no known page links to."""
    return f"{ARXIV_TITLE_SEARCH}?{urlencode({'searchtype': 'title', 'query': title})}"


def paper_view(paper: Paper) -> PaperView:
    arxiv = paper.arxiv_url
    pairs = [
        ("Paper", paper.url),
        ("arXiv", arxiv),
        ("PDF", paper.pdf_url),
        ("Code", paper.code_url),
        ("Project", paper.project_url),
    ]
    seen: set[str] = set()
    link_list = []
    for label, url in pairs:
        if url and url not in seen:
            seen.add(url)
            link_list.append((label, url))
    authors = tuple(paper.authors or ())
    line = ", ".join(authors[:6]) + _more_authors(len(authors) - 6, len(authors) >= MAX_AUTHORS)
    tldr = paper.summary or ""
    trim = ABSTRACT_UNDER_TLDR_CHARS if tldr else ABSTRACT_CHARS
    page = paper.url or arxiv or paper.pdf_url
    return PaperView(
        id=saved_id(paper),
        title=paper.title,
        link=page or title_search_url(paper.title),
        authors=authors,
        authors_line=line,
        abstract_short=shorten(paper.abstract, trim, one_line=True, at_word=True),
        thumbnail=paper.thumbnail,
        # the first link is the title's own; without a page, every link is listed
        links=tuple(link_list[1:] if page else link_list),
        tldr=tldr,
        organization=paper.organization or "",
        stars=f"{paper.github_stars:,}" if paper.github_stars and paper.code_url else "",
    )


def paper_snapshot(paper: Paper) -> dict[str, Any]:
    """What an issue keeps of a paper when it is planned: all it shows and ranks by, as JSON."""
    return {name: getattr(paper, name) for name in SNAPSHOT_FIELDS} | {
        "published_at": paper.published_at.isoformat()
    }


def issue_papers(session: Session, issue: Issue) -> list[Paper]:
    """The issue's papers in its order, as they were when it was planned (unsaved rows, so a
    later ingest changes nothing here). Issues planned before migration 0005 have no snapshot
    and get the papers' current rows; snapshots from before 0008 lack the TL;DR and the rest."""
    if issue.papers_snapshot is not None:
        return [
            Paper(**{**kept, "published_at": datetime.fromisoformat(kept["published_at"])})
            for kept in issue.papers_snapshot
        ]
    found = {p.id: p for p in session.exec(select(Paper).where(col(Paper.id).in_(issue.paper_ids)))}
    return [found[i] for i in issue.paper_ids if i in found]


def paper_text(paper: Paper) -> PaperText:
    return PaperText(
        id=saved_id(paper),
        title=paper.title,
        abstract=paper.abstract,
        keywords=tuple(paper.keywords or ()),
        upvotes=paper.upvotes,
        published_at=paper.published_at,
        comments=paper.comments or 0,
        github_stars=paper.github_stars or 0,
    )


def _more_authors(more: int, cut: bool) -> str:
    """ " and 12 more"; " and 494+ more" when the ingest kept only the first MAX_AUTHORS names (a
    collaboration of thousands is not "494 more")."""
    return f" and {more}{'+' if cut else ''} more" if more > 0 else ""
