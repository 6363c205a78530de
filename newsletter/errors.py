"""The one error type for an operator's mistake (bad input, an unknown id).

The CLI prints its message as one line on stderr and exits non-zero, never a traceback.
This module imports nothing, so any module of the core can raise it.
"""


class OperatorError(Exception):
    """A mistake the operator can fix; the message says what to do."""


class NotFound(OperatorError):
    """The subscriber or issue the operator named does not exist (the API answers 404)."""
