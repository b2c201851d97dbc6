"""The daemon's log: stdlib logging to stderr, one line per event,
`time=… level=… msg="…" key=value …` (DESIGN.md, Conventions). Fields travel as
`extra=fields(key=value)`."""

import json
import logging
import sys
import time


def fields(**values) -> dict:
    return {"fields": values}


def _quote(value) -> str:
    text = str(value)
    return text if text and all(c.isalnum() or c in "-_./:@+," for c in text) else json.dumps(text)


class LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"time={t}.{int(record.msecs):03d}Z", f"level={record.levelname.lower()}",
                 f"msg={json.dumps(record.getMessage())}"]
        parts += [f"{key}={_quote(value)}" for key, value in getattr(record, "fields", {}).items()]
        if record.exc_info:
            # Still one line: the traceback's lines joined, for a debug log only.
            parts.append(f"traceback={json.dumps(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
