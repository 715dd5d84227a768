"""All artifacts of one task, as the agent's artifact hook runs them (Nomad's task runner rules).

Up to three downloads run at once; the task's events are ``Downloading Artifacts`` before and
``Failed Artifact Download`` (with ``failed to download artifact "<source>": <reason>``) on the
first failure, which is always recoverable (:func:`hook_error`): the restart policy applies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from rawexec.artifacts.config import GetterConfig
from rawexec.artifacts.getter import FetchResult, Progress, fetch_artifact
from rawexec.artifacts.spec import ArtifactSpec
from rawexec.errors import ArtifactError

__all__ = [
    "EVENT_DOWNLOADING",
    "EVENT_DOWNLOADING_MESSAGE",
    "EVENT_FAILED",
    "MAX_PARALLEL_DOWNLOADS",
    "fetch_task_artifacts",
    "hook_error",
]

EVENT_DOWNLOADING = "Downloading Artifacts"
EVENT_DOWNLOADING_MESSAGE = "Client is downloading artifacts"
EVENT_FAILED = "Failed Artifact Download"
MAX_PARALLEL_DOWNLOADS = 3


def hook_error(exc: ArtifactError) -> ArtifactError:
    """The task's error for a failed download: recoverable whatever the getter said, as Nomad's
    artifact hook wraps every getter error in a recoverable one (the restart policy decides)."""
    return exc if exc.recoverable else ArtifactError(exc.message, recoverable=True)


def fetch_task_artifacts(specs: Sequence[ArtifactSpec], *, task_dir: str, alloc_dir: str,
                         config: GetterConfig | None = None,
                         progress: Callable[[Progress], None] | None = None,
                         interpolate: Callable[[str], str] | None = None,
                         task_user: str | None = None,
                         emit: Callable[[str, str], None] | None = None,
                         max_parallel: int = MAX_PARALLEL_DOWNLOADS,
                         cancelled: Callable[[], bool] | None = None) -> list[FetchResult]:
    """Fetch every artifact of a task; results in the order of ``specs``.

    ``emit(event_type, message)`` receives the task events. On failure the first error (in spec
    order) is emitted and raised; artifacts that did succeed keep their markers, so a restart
    fetches only what is missing. The error raised is recoverable (:func:`hook_error`).
    ``cancelled`` is :func:`fetch_artifact`'s.
    """
    if not specs:
        return []
    cfg = config or GetterConfig()
    if emit is not None:
        emit(EVENT_DOWNLOADING, EVENT_DOWNLOADING_MESSAGE)

    def one(spec: ArtifactSpec) -> FetchResult:
        return fetch_artifact(spec, task_dir=task_dir, alloc_dir=alloc_dir, config=cfg, progress=progress,
                              interpolate=interpolate, task_user=task_user, cancelled=cancelled)

    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(specs))),
                            thread_name_prefix="artifact") as pool:
        futures = [pool.submit(one, s) for s in specs]
        results: list[FetchResult] = []
        first_error: ArtifactError | None = None
        for fut in futures:
            try:
                results.append(fut.result())
            except ArtifactError as exc:
                first_error = first_error or exc
    if first_error is not None:
        if emit is not None:
            emit(EVENT_FAILED, first_error.message)
        raise hook_error(first_error)
    return results
