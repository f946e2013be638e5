"""How a status row reads: as text (--status, --check) and as JSON (--status --json, the app's /health).

The JSON's keys are a contract with scripts and the app: they keep their names when a field is renamed.
"""

from datetime import datetime
from typing import Any

from migrator import liveness
from migrator.durations import eta_text
from migrator.plan import StatusRow

JSON_NAMES = {"documents_done": "done"}  # a StatusRow field -> its key in the JSON
# What a running migration's progress is made of, in --status --json and /health (the fields' names)
PROGRESS_FIELDS = ("host", "pid", "since", "step", "documents_done", "total", "total_estimated", "percent",
                   "rate_per_s", "eta_s", "paused_by", "paused_since")


def row_json(row: StatusRow) -> dict[str, Any]:
    """--status --json: every field of a row under its JSON name, and its flags."""
    return {**{JSON_NAMES.get(name, name): _plain(value) for name, value in row.__dict__.items()},
            "flags": row.flags}


def running_json(row: StatusRow) -> dict[str, Any]:
    """A running migration for /health: its name and progress."""
    return {"name": row.name, **{JSON_NAMES.get(name, name): _plain(getattr(row, name)) for name in PROGRESS_FIELDS}}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def progress_text(row: StatusRow) -> str:
    """`120 of 300 documents (40.0%), 25 documents/s, about 7 s left`; empty when not known (not batched)."""
    if row.documents_done is None:
        return ""
    step = f"step {row.step}: " if row.step and row.step > 1 else ""
    of = "" if row.total is None else f" of {'~' if row.total_estimated else ''}{row.total:,}"
    share = "" if row.percent is None else f" ({row.percent:.1f}%)"
    rate = "" if row.rate_per_s is None else f", {row.rate_per_s:,.0f} documents/s"
    left = "" if row.eta_s is None else f", {eta_text(row.eta_s)} left"
    return f"{step}{row.documents_done:,}{of} documents{share}{rate}{left}"


def running_text(row: StatusRow) -> str:
    """`running on host:pid since 2026-01-01 12:00:00 UTC: 120 of 300 documents (40.0%), ...`; paused:
    `running on host:pid since ..., paused by user@host since 2026-01-01 12:05:00 UTC: 120 of 300 documents ...`"""
    since = f" since {row.since:%Y-%m-%d %H:%M:%S} UTC" if row.since else ""
    progress = progress_text(row)
    doing = "rolling back" if row.action == "rollback" else "running"
    return f"{doing} on {row.runner}{since}{paused_text(row)}" + (f": {progress}" if progress else "")


def paused_text(row: StatusRow) -> str:
    """`, paused by user@host since 2026-01-01 12:05:00 UTC (--resume goes on)`; empty when not paused."""
    if not row.paused_by:
        return ""
    since = f" since {row.paused_since:%Y-%m-%d %H:%M:%S} UTC" if row.paused_since else ""
    return f", paused by {row.paused_by}{since} (--resume goes on)"


def failed_text(row: StatusRow) -> str:
    """`failed: stopped by SIGINT after ...`: the recorded error without the migration's name it starts with."""
    return f"failed: {_without_name(row)}" if row.error else "failed"


def _without_name(row: StatusRow) -> str:
    return row.error.removeprefix(f"{row.name}: ")


def interrupted_text(row: StatusRow) -> str:
    """`interrupted: its runner host:pid died`; `rollback interrupted: ...` for a rollback, a restore's likewise."""
    what = "interrupted" if row.action in ("", "apply") else f"{row.action.replace('_', ' ')} interrupted"
    return f"{what}: {runner_stopped(row.runner, row.runner_state, _without_name(row))}"


def runner_stopped(runner: str, state: str | None, error: str = "") -> str:
    """Why a run recorded a start and no end, saying only what is known: "died" only for a runner of this host whose
    process is gone (migrator.liveness), the error it recorded when it lost the lock, else that it stopped."""
    if error:
        return f"its runner {runner} stopped: {error}"
    if state == liveness.DEAD:
        return f"its runner {runner} died"
    if state == liveness.ALIVE:
        return (f"its runner {runner} no longer holds the lock; it is still alive on this host and stops at its next "
                "check of the lock")
    return f"its runner {runner} stopped without recording an end (it no longer holds the lock)"
