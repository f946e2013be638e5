"""The Flowise proxy service: its health endpoint, and a check of the migrations at start-up.

    uvicorn app.main:app [--host 0.0.0.0 --port 8000]

Settings come from the environment, else from the env file (`.env`, or the file ENV_FILE names,
e.g. ENV_FILE=.env.test; see app/settings.py):
- MONGODB_URL, MONGODB_DATABASE_NAME: the database.
- REQUIRE_MIGRATIONS: `1` (or true/yes) refuses to start while a migration is pending or the
  database cannot be reached: for production, where the migrations run before the app. Unset (the
  default), start-up only logs a warning, and GET /health answers 503 until
  `python migrations/run_migrations.py --all` has run.
- MONGODB_TIMEOUT_MS: how long to wait for the database, at start-up and in /health (default 5000).

GET /health: 200 when the database answers and no migration is pending, else 503. The JSON says why:
    {"status": "ok" | "migrations pending" | "database unreachable", "database": "<name>",
     "reachable": true | false, "pending_migrations": ["<name>", ...], "error": "..." (when unreachable)}
"""

import logging
import os
from contextlib import asynccontextmanager
from functools import partial

from beanie import init_beanie
from dotenv import dotenv_values
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, PyMongoError

from app.database import DOCUMENT_MODELS, create_client
from app.settings import Settings, load_settings
from migrator.engine import Engine
from migrator.redact import redact, remember_secret_of

log = logging.getLogger("uvicorn.error")  # uvicorn's own logger: shown, formatted, under any log config

OK, PENDING, UNREACHABLE = "ok", "migrations pending", "database unreachable"


class MigrationsRequired(RuntimeError):
    """REQUIRE_MIGRATIONS is set and the database is not migrated (or not reachable)."""


def _setting(settings: Settings, name: str, default: str) -> str:
    """Another setting, in load_settings' order: the environment, then the env file, then the default."""
    value = os.environ.get(name) or (dotenv_values(settings.env_file).get(name) if settings.env_file else None)
    return value or default


async def migration_state(engine: Engine, database_name: str, timeout_ms: int) -> dict:
    """What GET /health reports; never raises for a database problem."""
    state = {"status": OK, "database": database_name, "reachable": True, "pending_migrations": []}
    try:
        state["pending_migrations"] = [migration.name for migration in await engine.pending()]
    except ConnectionFailure:
        return {**state, "status": UNREACHABLE, "reachable": False,
                "error": f"no answer from the database server within {timeout_ms} ms"}
    except PyMongoError as exc:  # e.g. authentication failed
        return {**state, "status": UNREACHABLE, "reachable": False, "error": redact(exc)}
    if state["pending_migrations"]:
        state["status"] = PENDING
    return state


def _problem(state: dict) -> str:
    if not state["reachable"]:
        return f"cannot reach database {state['database']}: {state['error']}"
    names = ", ".join(state["pending_migrations"])
    return (f"{len(state['pending_migrations'])} migration(s) pending on database {state['database']} ({names}): "
            "run `python migrations/run_migrations.py --all`")


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = load_settings()
    remember_secret_of(settings.mongodb_url)
    timeout_ms = int(_setting(settings, "MONGODB_TIMEOUT_MS", "5000"))
    require = _setting(settings, "REQUIRE_MIGRATIONS", "").strip().lower() in {"1", "true", "yes"}
    client = create_client(settings, timeout_ms=timeout_ms)
    try:
        engine = Engine(client[settings.database_name])
        app.state.check = partial(migration_state, engine, settings.database_name, timeout_ms)
        state = await app.state.check()
        if state["status"] != OK:
            if require:
                message = f"refusing to start (REQUIRE_MIGRATIONS is set): {_problem(state)}"
                log.error(message)
                raise MigrationsRequired(message)
            log.warning("%s; GET /health answers 503 until then", _problem(state))
        if state["reachable"]:  # Beanie reads the server's version and creates the indexes
            await init_beanie(database=engine.database, document_models=DOCUMENT_MODELS)
        else:
            log.warning("the document models are not initialised: restart the app once the database is reachable")
        yield
    finally:
        await client.close()


app = FastAPI(title="Flowise proxy", lifespan=lifespan)


@app.get("/health")
async def health(request: Request) -> JSONResponse:
    state = await request.app.state.check()
    return JSONResponse(state, status_code=200 if state["status"] == OK else 503)
