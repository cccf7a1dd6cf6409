"""The command line's one logging handler: library messages (``logging``) on covseg's safe consoles.

covseg's library code reports through ``logging.getLogger(__name__)`` and prints nothing. The CLI
installs :class:`ConsoleHandler` on the root logger and lets covseg's loggers through from INFO:
INFO lines go to standard output as plain text, warnings and errors to standard error as
``warning: ...`` / ``error: ...`` lines (like :func:`covseg.commands._common.warn`), debug lines
(``COVSEG_TRACE_PLUGINS=1``) to standard error, dimmed. Every message is user text: the consoles
never read it as markup and show control characters escaped (:mod:`covseg.terminal`). Other
libraries' warnings pass through the same handler.
"""

from __future__ import annotations

import logging

from covseg.terminal import console, error_console, join, styled

COVSEG_LOGGER = "covseg"


class ConsoleHandler(logging.Handler):
    """One record, one line on covseg's consoles (see the module docstring)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.ERROR:
                error_console.print(join(styled("error:", "bold red"), " ", message), soft_wrap=True)
            elif record.levelno >= logging.WARNING:
                error_console.print(join(styled("warning:", "bold yellow"), " ", message), soft_wrap=True)
            elif record.levelno >= logging.INFO:
                console.print(join(message), soft_wrap=True)
            else:
                error_console.print(styled(f"{record.name}: {message}", "dim"), soft_wrap=True)
        except Exception:  # logging's own rule: a failing handler reports and carries on
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Route log records to the consoles, covseg's from ``level``; calling it again changes nothing."""
    root = logging.getLogger()
    if not any(isinstance(handler, ConsoleHandler) for handler in root.handlers):
        root.addHandler(ConsoleHandler())
    covseg_logger = logging.getLogger(COVSEG_LOGGER)
    if covseg_logger.level == logging.NOTSET or covseg_logger.level > level:
        covseg_logger.setLevel(level)
