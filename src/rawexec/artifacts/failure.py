"""The getter child's one exception type (kept free of heavy imports)."""

from __future__ import annotations

__all__ = ["FetchFailure"]


class FetchFailure(Exception):
    """A download failed; ``recoverable`` says whether a later retry may succeed."""

    def __init__(self, message: str, recoverable: bool) -> None:
        super().__init__(message)
        self.recoverable = recoverable
