"""Logging to stderr as text or JSON lines (LOG_LEVEL, LOG_FORMAT)."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log per request would drown everything else at INFO
    quieter = max(logging.WARNING, root.level)
    logging.getLogger("uvicorn.access").setLevel(quieter)
    logging.getLogger("alembic.runtime.plugins").setLevel(quieter)
    # httpx logs every request's URL at INFO, and alert channels' URLs are secrets (a Slack
    # or webhook URL carries its token)
    logging.getLogger("httpx").setLevel(quieter)
    logging.getLogger("httpcore").setLevel(quieter)
