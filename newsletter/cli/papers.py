"""`newsletter papers ingest` and `newsletter preview`: what goes into a digest."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from newsletter import admin
from newsletter.cli.common import console, emit_json, err
from newsletter.config import get_settings
from newsletter.errors import OperatorError
from newsletter.values import shorten

papers_app = typer.Typer(help="Papers: ingest from a file, Hugging Face or arXiv.", no_args_is_help=True)


@papers_app.command("ingest")
def papers_ingest(
    path: Path | None = typer.Argument(None, help="A JSON feed file."),
    source: str | None = typer.Option(None, help="file | huggingface | arxiv"),
    week: str | None = typer.Option(None, help="Hugging Face ISO week, e.g. 2026-W48."),
    date: str | None = typer.Option(None, help="Hugging Face day, YYYY-MM-DD."),
    query: str | None = typer.Option(None, help="arXiv search query, e.g. cat:cs.CL."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ingest papers. Examples:

    newsletter papers ingest feed.json

    newsletter papers ingest --source huggingface --week 2026-W48

    newsletter papers ingest --source arxiv --query "cat:cs.LG AND ti:diffusion"
    """
    settings = get_settings()
    with nullcontext() if as_json else console.status("Fetching papers…", spinner="dots"):
        report = admin.ingest(settings, path=path, source=source, week=week, date=date, query=query)
    if as_json:
        return emit_json(report)
    console.print(
        f"Added {report['added']}, updated {report['updated']}, "
        f"unchanged {report['unchanged']}; {len(report['errors'])} item(s) skipped."
    )
    for line in report["errors"][:20]:
        err.print(f"  skipped: {escape(line)}")
    if len(report["errors"]) > 20:
        err.print(f"  … and {len(report['errors']) - 20} more (all of them: --json)")


def preview(
    interests: str | None = typer.Option(None, help="Free-text interests."),
    subscriber: str | None = typer.Option(None, help="Rank for this subscriber."),
    limit: int | None = typer.Option(None, min=1, max=50, help="Default: the reader's digest size."),
    as_json: bool = typer.Option(False, "--json", help="Ranked items as JSON."),
    html: Path | None = typer.Option(None, help="Write the digest HTML here."),
) -> None:
    """Show the digest someone would get from the papers in the store now.

    Example: newsletter preview --interests "robot learning" --json
    """
    if interests is not None and subscriber is not None:  # one would be ignored without a word
        raise OperatorError("give --interests or --subscriber, not both")
    result = admin.preview(get_settings(), interests=interests, email=subscriber, limit=limit)
    if html:
        html.write_text(result["html"])
    if as_json:
        return emit_json(result["items"])
    table = Table("#", "for you", "score", "title", "why")  # the email's order: "For you" first
    for i, item in enumerate(result["items"], 1):
        mark, title = "yes" if item["for_you"] else "", escape(shorten(item["title"], 70))
        table.add_row(str(i), mark, f"{item['score']:.3f}", title, escape(item["why"]))  # why: ≤ 80, whole
    console.print(table)
    if html:
        console.print(f"HTML written to {html}")
