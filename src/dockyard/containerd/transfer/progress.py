"""Progress events of pull and push, worded exactly as Docker words them (moby
`distribution/pull_v2.go`, `push_v2.go`, `xfer/download.go`), so the engine can hand them on as
Docker's JSON progress messages (`{"id", "status", "progressDetail": {current, total}}`).

`id` is the layer's short digest (12 hex), the tag or digest for "Pulling from …", and "" for the
image-wide lines ("Digest: …", "Status: …"). Byte counts are reported for Downloading, Extracting
(compressed bytes consumed) and Pushing; a `Reporter` throttles them so a fast local registry does
not turn into thousands of events, and serializes the callback, which parallel downloads call from
several threads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

# Pull (per layer, in Docker's order).
PULLING_FS_LAYER = "Pulling fs layer"
WAITING = "Waiting"
DOWNLOADING = "Downloading"
VERIFYING = "Verifying Checksum"
DOWNLOAD_COMPLETE = "Download complete"
EXTRACTING = "Extracting"
PULL_COMPLETE = "Pull complete"
ALREADY_EXISTS = "Already exists"
# Push (per layer).
PREPARING = "Preparing"
PUSHING = "Pushing"
PUSHED = "Pushed"
LAYER_EXISTS = "Layer already exists"
# Docker 25's words when an index cannot be pushed whole and its host-platform manifest is instead.
PARTIAL_INDEX = ("Not all multiplatform-content is present and only the available single-platform "
                 "image was pushed")


def pulling_from(path: str) -> str:
    return f"Pulling from {path}"


def digest_line(digest: str) -> str:
    return f"Digest: {digest}"


def downloaded_newer(familiar: str) -> str:
    return f"Status: Downloaded newer image for {familiar}"


def up_to_date(familiar: str) -> str:
    return f"Status: Image is up to date for {familiar}"


def push_refers_to(name: str) -> str:
    return f"The push refers to repository [{name}]"


def mounted_from(repo: str) -> str:
    return f"Mounted from {repo}"


def pushed_digest(tag: str, digest: str, size: int) -> str:
    return f"{tag}: digest: {digest} size: {size}"


@dataclass(frozen=True)
class Progress:
    id: str
    status: str
    current: int = 0
    total: int = 0
    detail: str = ""


Callback = Callable[[Progress], None]


class Reporter:
    """Calls `callback` one event at a time; byte-count updates of one id are throttled to one
    per `interval` seconds (the last one before a status change is always sent)."""

    def __init__(self, callback: Callback | None, interval: float = 0.1):
        self._callback = callback
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def __call__(self, id: str, status: str, current: int = 0, total: int = 0, detail: str = "") -> None:
        if self._callback is None:
            return
        with self._lock:
            self._last.pop(id, None)
            self._callback(Progress(id, status, current, total, detail))

    def bytes(self, id: str, status: str, current: int, total: int) -> None:
        """A byte count: sent at most every `interval` seconds per id, and always when done."""
        if self._callback is None:
            return
        now = time.monotonic()
        with self._lock:
            last = self._last.get(id)
            if last is not None and now - last < self._interval and current != total:
                return
            self._last[id] = now
            self._callback(Progress(id, status, current, total))


def reporter(progress: Callback | Reporter | None) -> Reporter:
    return progress if isinstance(progress, Reporter) else Reporter(progress)
