"""The getter child's one exception type (kept free of heavy imports)."""

from __future__ import annotations

__all__ = ["FetchFailure"]


class FetchFailure(Exception):
    """A download failed. ``recoverable``: a later attempt of the task may succeed (Nomad's getter
    errors are, save a few about the job itself); ``retry``: repeating the request right away, within
    this attempt, may succeed (a transient network or server error; default: ``recoverable``)."""

    def __init__(self, message: str, recoverable: bool, *, retry: bool | None = None) -> None:
        super().__init__(message)
        self.recoverable = recoverable
        self.retry = recoverable if retry is None else retry
