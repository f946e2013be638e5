"""How the toolkit talks: one log format on stderr (rich in a terminal), prompts, masking."""

import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from migrator.errors import ExitCode, MigrationError
from migrator.redact import redact

log = logging.getLogger("migrator")


class _RedactFilter(logging.Filter):
    """Mask the whole record: its message, and the traceback --debug adds (exception messages repeat URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_info:
            if record.exc_info[0] is not None:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None  # no handler formats the raw exception again (rich's tracebacks included)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _LogLines(RichHandler):
    """Rich's colours, but each record on one line as long as it is, never folded at the window's width:
    the terminal wraps it, so a path in it stays whole (to copy, to grep). A RichHandler still, so that the
    progress bar (migrator.commands.progress_view) draws through the same console and log lines print above it."""

    def emit(self, record: logging.LogRecord) -> None:
        when = datetime.fromtimestamp(record.created).strftime("[%x %X]")
        line = Text.assemble((when, "log.time"), " ", self.get_level_text(record), " ",
                             self.render_message(record, self.format(record)))  # type: ignore[arg-type]
        try:
            self.console.print(line, soft_wrap=True)  # no folding, no cropping; the bar's lines are cropped by rich
        except Exception:
            self.handleError(record)


TEXT, JSON = "text", "json"  # --log-format
_captured: ContextVar[list[tuple[int, str]] | None] = ContextVar("captured", default=None)


class _JsonLines(logging.Handler):
    """--log-format json: each record one JSON object on its line (a log line of no event: `"event": "log"`).
    While an event is rendered (`captured`), its lines are kept instead, for the event's own object."""

    @property
    def stream(self):
        return sys.stderr  # the one at the time of writing (a test's, a caller's)

    def flush(self) -> None:
        self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        lines = _captured.get()
        if lines is not None:
            lines.append((record.levelno, record.getMessage()))
            return
        message = record.getMessage() + (f"\n{record.exc_text}" if record.exc_text else "")
        try:
            self.stream.write(json_line(record.levelname.lower(), "log", message) + "\n")
            self.flush()
        except Exception:
            self.handleError(record)


def json_line(level: str, event: str, message: str, fields: dict[str, Any] | None = None) -> str:
    """One object of --log-format json: the documented fields (docs/production.md) after the event's own."""
    when = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = {"ts": when, "level": level, "event": event, "message": message}
    line.update((name, value) for name, value in (fields or {}).items() if name not in line)
    return json.dumps(line, ensure_ascii=False, default=str)


def write_json(line: str) -> None:
    """A JSON line of an event, through the same handler (and stream) as the log lines."""
    for handler in log.handlers:
        if isinstance(handler, _JsonLines):
            handler.acquire()
            try:
                handler.stream.write(line + "\n")
                handler.flush()
            finally:
                handler.release()


@contextmanager
def captured() -> Iterator[list[tuple[int, str]]]:
    """The log lines written inside the block (their level and masked text), kept, not written (json only)."""
    lines: list[tuple[int, str]] = []
    token = _captured.set(lines)
    try:
        yield lines
    finally:
        _captured.reset(token)


def setup_logging(debug: bool = False, log_format: str = TEXT) -> None:
    if log_format == JSON:
        handler: logging.Handler = _JsonLines()
    elif sys.stderr.isatty():
        handler = _LogLines(console=Console(stderr=True), markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_RedactFilter())
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def plural(count: int, noun: str, nouns: str = "") -> str:
    """`1 document`, `2,000 documents`; `nouns` where adding an s is wrong (`indexes`)."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def say(text: str) -> None:
    """A result for scripts (lists, JSON): stdout, masked."""
    print(redact(text), flush=True)


def confirm(action: str, assume_yes: bool) -> None:
    """Go on only with a yes: from --yes, or typed at a terminal. Anything else changes nothing."""
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise MigrationError(f"refusing to {action} without confirmation: stdin is not a terminal (pass --yes)",
                             ExitCode.USAGE)
    try:
        with _ctrl_c_interrupts():  # set before the prompt shows, so a Ctrl-C at any moment of it counts
            sys.stderr.write(f"{action[0].upper()}{action[1:]}? [yes/no] ")
            sys.stderr.flush()
            answer = sys.stdin.readline().strip().lower()
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        raise MigrationError("cancelled at the prompt: nothing was changed", ExitCode.INTERRUPTED) from None
    if answer not in {"y", "yes"}:
        raise MigrationError("not confirmed: nothing was changed", ExitCode.USAGE)


@contextmanager
def _ctrl_c_interrupts():
    """Under asyncio.run, SIGINT only cancels the main task, and a blocking readline would go on waiting
    for Enter: inside this block Ctrl-C raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def table(headers: list[str], rows: list[list[str]]) -> None:
    """A table on stdout: rich in a terminal, plain aligned columns otherwise (logs, pipes)."""
    rows = [[redact(cell) for cell in row] for row in rows]
    if sys.stdout.isatty():
        rich_table = Table(*headers)
        for row in rows:
            rich_table.add_row(*row)
        Console().print(rich_table)
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in [[h.upper() for h in headers], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), flush=True)
