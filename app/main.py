"""The Flowise proxy service: its health endpoint, and a check of the migrations at start-up.

    uvicorn app.main:app [--host 0.0.0.0 --port 8000]

Settings come from the environment, else from the env file (`.env`, or the file ENV_FILE names,
e.g. ENV_FILE=.env.test; see migrator/settings.py):
- MONGODB_URL, MONGODB_DATABASE_NAME: the database.
- REQUIRE_MIGRATIONS: `1` (or true/yes) refuses to start while a migration is pending or not current (a broken
  migration file included) or the schema is not as declared (migrations/_schema.py), the
  database cannot be reached or the document models cannot be initialised: for production, where the
  migrations run before the app. Unset (the default), start-up only logs a warning, and GET /health
  answers 503 until the problem is gone (e.g. `python migrations/run_migrations.py --all` has run).
- MONGODB_TIMEOUT_MS: how long to wait for the database, at start-up and in /health (default 5000).
- MIGRATIONS_DIR: the folder of the migrations (default: migrations/ of this project), read once at start-up: a
  fixed migration file is read when the app restarts.
Settings that cannot be used (a missing URL, an invalid database name, an env file that is not UTF-8, a
MIGRATIONS_DIR that is not a folder)
stop the start-up with one line; uvicorn then exits with its code for a failed start-up, 3.

GET /health: 200 when the database answers, every migration is current (as --check: applied, its file there,
readable and unchanged, in order), the schema is as migrations/_schema.py declares, and the document models (Beanie)
are initialised, else 503. Models not initialised at start-up (the database was down) are initialised
by the next /health that finds the database answering. The JSON says why:
    {"status": "ok" | "migrations pending" | "migrations not current" | "database unreachable" |
               "models not initialised",
     "database": "<name>", "reachable": true | false, "pending_migrations": ["<name>", ...],
     "running_migrations": [{"name", "host", "pid", "since", "done", "total", "percent", "rate_per_s",
                             "eta_s", "paused_by", "paused_since", ...}] (only while a runner is applying one: it is
                            pending until it is applied; paused_by: "user@host" of a --pause, else null),
     "problems": [{"name", "kind"}] (only if any: why the database is not current, the reasons --check gives;
                 kind: pending, failed, rolled_back, running, interrupted, changed, missing_file, out_of_order,
                 broken_file, which also has "error": the file's, e.g. a syntax error; a broken file makes the
                 status "migrations not current", since nothing runs until it is fixed; and the schema's drift, as
                 --check names it: missing_index, extra_index, removed_index, index_options, hidden_index, validator
                 (with "detail": the difference), broken_schema_file (with "error"); name: collection.index),
     "error": "..." (unless ok or pending)}
"""

import asyncio
import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from beanie import init_beanie
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, PyMongoError

from app.database import DOCUMENT_MODELS, create_client
from migrator import plan
from migrator.commands.rows import running_json
from migrator.discovery import MIGRATIONS_DIR, discover
from migrator.engine import Engine
from migrator.errors import MigrationError
from migrator.redact import redact
from migrator.schema.diff import BROKEN_SPEC, schema_state
from migrator.settings import SettingsError, load_settings

log = logging.getLogger("uvicorn.error")  # uvicorn's own logger: shown, formatted, under any log config

OK, PENDING = "ok", "migrations pending"
# none pending, but an applied file changed or is gone, or one is out of order; or a migration file is broken
NOT_CURRENT = "migrations not current"
UNREACHABLE, NO_MODELS = "database unreachable", "models not initialised"


class StartupRefused(RuntimeError):
    """The app must not start; the reason is logged as one line, without a traceback."""


class MigrationsRequired(StartupRefused):
    """REQUIRE_MIGRATIONS is set and the database is not ready for the app."""


class Readiness:
    """What GET /health reports, and the document models, initialised once the database answers."""

    def __init__(self, database: AsyncDatabase, migrations_dir: Path, timeout_ms: int):
        self.database, self.timeout_ms = database, timeout_ms
        # retry_for_s=0: a health check answers at once; the orchestrator asks again. A broken migration file is a
        # problem the status rows show (migrator.plan.not_current); only a missing folder raises (MigrationError).
        self.engine = Engine(database, discover(migrations_dir), retry_for_s=0)
        self.models_ready = False
        self._initialising = asyncio.Lock()

    async def state(self) -> dict:
        """Never raises for a database problem."""
        state: dict[str, Any] = {"status": OK, "database": self.database.name, "reachable": True,
                                  "pending_migrations": []}
        try:
            rows = await self.engine.status()
            schema = await schema_state(self.engine.schema_plan)  # the rule --check and --status share
        except ConnectionFailure:
            return {**state, "status": UNREACHABLE, "reachable": False,
                    "error": f"no answer from the database server within {self.timeout_ms} ms"}
        except PyMongoError as exc:  # e.g. authentication failed
            return {**state, "status": UNREACHABLE, "reachable": False, "error": redact(exc)}
        problems = plan.not_current(rows)
        state["pending_migrations"] = [row.name for row in rows if row.state != plan.APPLIED]
        if problems or schema.differences:
            state["problems"] = [{"name": reason.name, "kind": reason.kind,
                                  **({"error": reason.row.broken} if reason.kind == plan.BROKEN_FILE else {})}
                                 for reason in problems] + [
                {"name": drift.name, "kind": drift.kind, "error" if drift.kind == BROKEN_SPEC else "detail": drift.text}
                for drift in schema.differences]
        running = [running_json(row) for row in rows if row.state == plan.RUNNING]
        if running:  # pending too, until it is applied
            state["running_migrations"] = running
        models_error = await self._initialise_models()
        if models_error:
            return {**state, "status": NO_MODELS, "error": models_error}
        broken = any(problem["kind"] in (plan.BROKEN_FILE, BROKEN_SPEC) for problem in state.get("problems", []))
        if state["pending_migrations"] and not broken:  # --all refuses a broken file: not "pending"
            state["status"] = PENDING
        elif "problems" in state:
            state["status"] = NOT_CURRENT
        return state

    async def _initialise_models(self) -> str | None:
        """Beanie reads the server's version: once, when the database answers. It builds no index (`skip_indexes`):
        the indexes are the migrations' (`run_migrations.py --all` builds what migrations/_schema.py declares)."""
        async with self._initialising:
            if not self.models_ready:
                try:
                    await init_beanie(database=self.database, document_models=DOCUMENT_MODELS, skip_indexes=True)
                except PyMongoError as exc:
                    return f"cannot initialise the document models: {redact(exc)}"
                self.models_ready = True
        return None


def _problem(state: dict) -> str:
    database = state["database"]
    if state["status"] == UNREACHABLE:
        return f"cannot reach database {database}: {state['error']}"
    if state["status"] == NO_MODELS:
        return f"database {database}: {state['error']}"
    if state["status"] == NOT_CURRENT:
        reasons = ", ".join(_reason(problem) for problem in state["problems"])
        broken = any("error" in problem for problem in state["problems"])  # a broken file: read again at a restart
        return (f"database {database} is not current: {reasons}: see `python migrations/run_migrations.py --check`"
                + ("; the app reads a fixed file when it restarts" if broken else ""))
    names = ", ".join(state["pending_migrations"])
    return (f"{len(state['pending_migrations'])} migration(s) pending on database {database} ({names}): "
            "run `python migrations/run_migrations.py --all`")


def _reason(problem: dict) -> str:
    """`m2 (changed)`, `broken (broken file: broken.py: syntax error at line 5: expected ':')`,
    `chat_messages.user_id_1 (missing index chat_messages.user_id_1 {user_id: 1})`: the schema's drift says it all."""
    if "detail" in problem:
        return f"{problem['name']} ({problem['detail']})"
    error = f": {problem['error']}" if "error" in problem else ""
    return f"{problem['name']} ({problem['kind'].replace('_', ' ')}{error})"


def _refuse(message: str, error: type[StartupRefused] = StartupRefused):
    log.error("%s", message)
    raise error(message)


@asynccontextmanager
async def lifespan(app: FastAPI):
    try:
        settings = load_settings()
    except SettingsError as exc:
        _refuse(f"cannot start: {exc}")
    timeout_ms = _timeout_ms(settings.get("MONGODB_TIMEOUT_MS", "5000"))
    require = settings.get("REQUIRE_MIGRATIONS").strip().lower() in {"1", "true", "yes"}
    client = create_client(settings, timeout_ms=timeout_ms)
    try:
        migrations_dir = Path(settings.get("MIGRATIONS_DIR", str(MIGRATIONS_DIR)))
        try:
            app.state.readiness = Readiness(client[settings.database_name], migrations_dir, timeout_ms)
        except MigrationError as exc:  # the folder is missing
            _refuse(f"cannot start: {exc} (MIGRATIONS_DIR)")
        state = await app.state.readiness.state()
        if state["status"] != OK:
            if require:
                _refuse(f"refusing to start (REQUIRE_MIGRATIONS is set): {_problem(state)}", MigrationsRequired)
            log.warning("%s; GET /health answers 503 until then", _problem(state))
        yield
    finally:
        await client.close()


def _timeout_ms(value: str) -> int:
    try:
        timeout_ms = int(value)
    except ValueError:
        timeout_ms = 0
    if timeout_ms <= 0:
        _refuse(f"cannot start: MONGODB_TIMEOUT_MS must be a positive number of milliseconds, not {value!r}")
    return timeout_ms


class Service(FastAPI):
    """FastAPI whose refused start-up is the one line already logged, not a traceback."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            send = _without_traceback_of_a_refusal(send)
        await super().__call__(scope, receive, send)


def _without_traceback_of_a_refusal(send):
    async def sending(message):
        # Starlette reports a failed start-up with the traceback, from inside its `except` block.
        if message["type"] == "lifespan.startup.failed" and isinstance(sys.exc_info()[1], StartupRefused):
            message = {**message, "message": ""}
        await send(message)
    return sending


app = Service(title="Flowise proxy", lifespan=lifespan)


@app.get("/health")
async def health(request: Request) -> JSONResponse:
    state = await request.app.state.readiness.state()
    return JSONResponse(state, status_code=200 if state["status"] == OK else 503)
