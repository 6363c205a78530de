"""Paper sources (a JSON file, Hugging Face daily papers, the arXiv API) and their ingest."""

from newsletter.papers.arxiv import fetch_arxiv, parse_arxiv_feed
from newsletter.papers.base import PaperRecord, SourceError, SourceResult, title_key
from newsletter.papers.file import parse_feed, read_feed
from newsletter.papers.huggingface import fetch_daily_papers
from newsletter.papers.ingest import IngestReport, ingest_records, load_source, sample_feed_path

__all__ = [
    "IngestReport",
    "PaperRecord",
    "SourceError",
    "SourceResult",
    "fetch_arxiv",
    "fetch_daily_papers",
    "ingest_records",
    "load_source",
    "parse_arxiv_feed",
    "parse_feed",
    "read_feed",
    "sample_feed_path",
    "title_key",
]
