"""The exceptions dedup raises, all under one :class:`DedupError`.

The CLI maps every :class:`DedupError` to a one-line ``Error: ...`` message and
a non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DedupError(Exception):
    """Base class of every error dedup raises on purpose."""


class ConfigError(DedupError, ValueError):
    """An option or parameter has a value dedup cannot use."""


class InputError(DedupError):
    """Input that dedup cannot read, located by file and line where known.

    Parameters
    ----------
    message : str
        What is wrong, without the location.
    path : str, optional
        The file (``"-"`` or ``"<stdin>"`` for standard input).
    line : int, optional
        1-based line (or row, for CSV and Parquet) within ``path``.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or ""
        if self.path is not None and self.line is not None:
            where = f"{self.path}:{self.line}"
        return f"{where}: {self.message}" if where else self.message


class FieldError(InputError):
    """A record lacks a required field, or a remapped field does not exist."""


class DuplicateIdError(InputError):
    """Two documents share one id."""


class EmptyDocumentError(InputError):
    """A document's text is empty (allow it with ``allow_empty=True``)."""
