"""runc's logging contract: errors go to stderr as one logrus-style line and, with `--log`, to
a log file (`--log-format json` is what containerd's shim reads back to report failures)."""

import json
import sys
import time

_log_file = None
_format = "text"
_debug = False


def configure(path: str | None, fmt: str, debug: bool) -> None:
    global _log_file, _format, _debug
    _format, _debug = fmt, debug
    if path:
        _log_file = open(path, "a", buffering=1)


def _timestamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _line(level: str, msg: str) -> str:
    if _format == "json":
        return json.dumps({"level": level, "msg": msg, "time": _timestamp()})
    return f'time="{_timestamp()}" level={level} msg={json.dumps(msg)}'


def log(level: str, msg: str) -> None:
    if level == "debug" and not _debug:
        return
    if _log_file is not None:
        _log_file.write(_line(level, msg) + "\n")
    if level in ("error", "warning") or _debug:
        sys.stderr.write(_line(level, msg) + "\n")
        sys.stderr.flush()


def error(msg: str) -> None:
    log("error", msg)


def warning(msg: str) -> None:
    log("warning", msg)


def debug(msg: str) -> None:
    log("debug", msg)
