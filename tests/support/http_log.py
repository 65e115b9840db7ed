"""Counters, not clocks: what urllib3 logs about one block of code (connections opened, requests answered,
retries), for tests that prove "not retried" or "no request at all" without timing it.

urllib3 (under requests, the aistore SDK and ais_wds's own pools) logs at DEBUG every new connection
("Starting new HTTP(S) connection") and every answered request (``scheme://host:port "METHOD path
HTTP/1.1" status length``), and at WARNING each retry after a broken connection. In this process only:
DataLoader workers and subprocesses log elsewhere.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, List, Tuple

_REQUEST = '%s://%s:%s "%s %s %s" %s %s'


class HttpLog(logging.Handler):
    """What urllib3 logged while installed: ``connections`` ("host:port" per connection opened, refused or
    not), ``requests`` ((method, "host:port", path, status) per answer) and ``retries`` (urllib3's retry
    messages and ais_wds's "resuming" / "retrying" warnings)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.connections: List[str] = []
        self.requests: List[Tuple[str, str, str, int]] = []
        self.retries: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg, args = record.msg, record.args
        if record.name.startswith("ais_wds"):  # its retry loops: "resuming in", "retrying"
            if record.levelno >= logging.WARNING and ("resuming" in record.getMessage()
                                                      or "retrying" in record.getMessage()):
                self.retries.append(record.getMessage())
            return
        if not isinstance(msg, str) or not isinstance(args, tuple):
            return
        if msg.startswith("Starting new HTTP"):
            self.connections.append(f"{args[1]}:{args[2]}")
        elif msg == _REQUEST:
            self.requests.append((str(args[3]), f"{args[1]}:{args[2]}", str(args[4]), int(args[6])))
        elif msg.startswith("Retry"):
            self.retries.append(record.getMessage())

    def summary(self) -> str:
        return f"connections {self.connections}, requests {self.requests}, retries {self.retries}"


@contextmanager
def http_log() -> Iterator[HttpLog]:
    """Install an :class:`HttpLog` on urllib3's connection pools (DEBUG) and on ais_wds (its retry
    warnings) for the block."""
    handler = HttpLog()
    loggers = [(logging.getLogger("urllib3.connectionpool"), logging.DEBUG), (logging.getLogger("ais_wds"), None)]
    levels = [logger.level for logger, _ in loggers]
    for logger, level in loggers:
        if level is not None:
            logger.setLevel(level)
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for (logger, _), level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
