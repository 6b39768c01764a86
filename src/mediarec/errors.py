"""Errors a user can cause and fix. The CLI prints them as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class MediarecError(Exception):
    """Base of every error that is the user's input or configuration, not a bug."""


class ConfigError(MediarecError):
    """Start-up configuration is unusable: no model, no API key, bad option."""


class CatalogError(MediarecError):
    """A catalog or interaction file cannot be loaded; names the file and line where known."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class UnknownUserError(MediarecError):
    """A user id that the catalog's interactions do not contain."""


class UnknownItemError(MediarecError):
    """An item id or title that the catalog does not contain."""


class ModelError(MediarecError):
    """A model cannot be fetched, verified or loaded."""


class IndexError_(MediarecError):
    """The vector index is missing, stale or unreachable."""
