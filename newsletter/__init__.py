"""Paper Digest: a newsletter of trending research papers, ranked for each reader."""

__version__ = "0.1.0"
