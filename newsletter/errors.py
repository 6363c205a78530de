"""The error types for an operator's mistake: bad input, an unknown id, settings that cannot work.

The CLI prints their message (one line per problem) on stderr and exits non-zero, never a
traceback. This module imports nothing, so any module of the core can raise them.
"""


class OperatorError(Exception):
    """A mistake the operator can fix; the message says what to do."""


class ConfigError(RuntimeError):
    """The settings cannot work (for example a default secret in production). The message holds
    one line per problem, each naming its NEWSLETTER_* setting."""


class NoPapers(OperatorError):
    """An issue would be made with no paper to send (none ingested for its period yet). Made
    empty, it would stay empty for its whole period, even after the papers arrive."""

    def __init__(self, title: str) -> None:
        super().__init__(
            f"no papers for {title}: run `newsletter papers ingest` first (or check the paper source)"
        )


class NotFound(OperatorError):
    """The subscriber or issue the operator named does not exist (the API answers 404)."""
