"""The migrations running now, and how far they are: for `--status` and the app's /health.

The changelog says which migration started and on which runner, the lock whether that runner still
holds it (Engine.status: else `interrupted`), the checkpoint how far its batches are (plan.add_progress).
"""

from datetime import datetime

from migrator import plan
from migrator.clock import server_now

# What a running migration's progress is made of, in --status --json and /health
FIELDS = ("host", "pid", "since", "step", "done", "total", "total_estimated", "percent", "rate_per_s", "eta_s")


async def status_rows(engine) -> list[plan.StatusRow]:
    """Engine.status, with the progress of each running migration: two reads more while one runs, none otherwise."""
    rows = await engine.status()
    running = [row for row in rows if row.state == plan.RUNNING]
    if running:
        checkpoints = await engine.retry("reading the checkpoints", engine.checkpoints.all)
        now = await engine.retry("reading the server's clock", lambda: server_now(engine.database))
        for row in running:
            plan.add_progress(row, plan.checkpoints_of(row, checkpoints.get(row.name, [])), now)
    return rows


def as_json(row: plan.StatusRow) -> dict:
    """A running migration for /health: its name and progress."""
    return {"name": row.name, **{name: _plain(getattr(row, name)) for name in FIELDS}}


def _plain(value):
    return value.isoformat() if isinstance(value, datetime) else value
