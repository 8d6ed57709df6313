"""Logging through loguru: readable lines by default, JSON lines on request.

pykka and other libraries log through the standard ``logging`` module; an
intercept handler forwards those records to loguru so there is one stream.
"""

from __future__ import annotations

import logging
import sys

from loguru import logger


class _Intercept(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    logger.remove()
    if json_lines:
        logger.add(sys.stderr, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level,
            backtrace=False,
            diagnose=False,  # never print local variables: they may hold PINs or keys
            format="<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
            "<cyan>{thread.name}</cyan> {message}",
        )
    logging.basicConfig(handlers=[_Intercept()], level=logging.INFO, force=True)
