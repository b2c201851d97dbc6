"""Docker's JSON message stream: the objects, one per line, that image pull/push/load/import
and build answer with (moby `pkg/jsonmessage` JSONMessage, `pkg/streamformatter`).

A layer's progress is `{"status", "progressDetail": {current, total}, "progress", "id"}`, the
`progress` text being the bar dockerd renders for a 200-column terminal
(`[=====>     ]  1.2MB/3.4MB`, sizes in go-units' decimal HumanSize); image-wide lines
("Pulling from …", "Digest: …", "Status: …") are plain `{"status", "id"}` messages. Errors after
the 200 travel in the stream as `{"errorDetail": {"message"}, "error"}`.
"""

from __future__ import annotations

from typing import Any, Protocol

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BAR_WIDTH = 50


class ProgressLike(Protocol):
    """dockyard.containerd.transfer.progress.Progress, or the Transfer service's pb Progress."""
    id: str
    status: str
    current: int
    total: int


def human_size(size: float) -> str:
    """go-units HumanSize: decimal units, four significant digits ("2.152MB", "512B")."""
    unit = 0
    while size >= 1000 and unit < len(_DECIMAL_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.4g}{_DECIMAL_UNITS[unit]}"


def progress_bar(current: int, total: int) -> str:
    """JSONMessage.progress for byte counts, as dockerd renders it ("" with no counts)."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(int(current / total * 100) // 2, _BAR_WIDTH)
    bar = f"[{'=' * filled}>{' ' * (_BAR_WIDTH - filled)}] "
    if current > total:  # a wonky count: the total would only confuse
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def _is_message(p: ProgressLike) -> bool:
    # Image-wide lines carry no id; "Pulling from x" is keyed by the tag. dockerd sends both as
    # plain messages, without progressDetail (streamformatter formatStatus).
    return not p.id or p.status.startswith("Pulling from ")


def progress_message(p: ProgressLike) -> dict:
    """The JSONMessage for one progress event."""
    if _is_message(p):
        return status_message(p.status, p.id)
    detail: dict[str, int] = {}
    if p.current:
        detail["current"] = int(p.current)
    if p.total:
        detail["total"] = int(p.total)
    msg: dict[str, Any] = {"status": p.status, "progressDetail": detail}
    bar = progress_bar(int(p.current), int(p.total))
    if bar:
        msg["progress"] = bar
    msg["id"] = p.id
    return msg


def status_message(status: str, id: str = "") -> dict:
    msg = {"status": status}
    if id:
        msg["id"] = id
    return msg


def error_message(text: str) -> dict:
    """An error reported inside an already-started stream (the CLI prints it and exits 1)."""
    return {"errorDetail": {"message": text}, "error": text}


def stream_message(text: str) -> dict:
    """Plain output ("Loaded image: busybox:latest\\n"); the text carries its own newline."""
    return {"stream": text}


def aux_message(obj: Any) -> dict:
    """Auxiliary data (the pushed digest and size; a loaded image id)."""
    return {"aux": obj}
