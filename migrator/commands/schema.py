"""--plan, and the schema's lines of --check and --status: what the declared schema (migrations/_schema.py) asks of
the database, as text and JSON. Nothing here writes."""

import json
from typing import Any

from migrator.commands.narration import Context
from migrator.errors import ExitCode
from migrator.output import plural, say
from migrator.schema.diff import SchemaState, schema_state
from migrator.schema.model import REPLACE, SKIP, VALIDATOR, Index, SchemaPlan, SchemaStep

NOTHING_DECLARED = "schema: nothing declared (no _schema.py in the migrations folder)"


async def plan(ctx: Context, as_json: bool = False) -> int:
    """--plan: the pending data migrations, then the schema steps, then the unknown indexes (kept)."""
    pending = await ctx.engine.pending()
    schema = await ctx.engine.schema_plan()  # a broken spec module: exit 2, naming it
    if as_json:
        say(json.dumps({"pending_migrations": [m.name for m in pending], "schema": plan_json(schema)}, indent=2,
                       default=str))
        return ExitCode.OK
    say(plural(len(pending), "pending migration") + (":" if pending else ""))
    for migration in pending:
        say(f"  {migration.name}  {migration.description}")
    if schema is None:
        say(NOTHING_DECLARED)
        return ExitCode.OK
    say(f"schema: {plural(len(schema.runnable), 'step')} to run{_adopted(schema)}" + (":" if schema.steps else ""))
    for step in schema.steps:
        say(f"  {step_text(step)}")
    for line in unknown_lines(schema):
        say(line)
    return ExitCode.OK


def step_text(step: SchemaStep) -> str:
    """`create chat_messages.user_id_1 {user_id: 1}`; `skip ...: why`; `replace A (drop first) by B`."""
    if step.kind == VALIDATOR:
        return f"validator {step.collection}: set the declared one ({step.reason}), {_levels(step.validator)}"
    if step.kind == SKIP and step.index is None:
        return f"skip validator of {step.collection}: {step.reason}"
    shown = step.index.shown() if step.index else step.collection
    if step.kind == REPLACE and step.previous is not None:
        order = "build the new one first, then drop it" if step.build_first else "drop it first, then build"
        return f"replace {step.previous.shown()} by {shown} ({order})"
    if step.kind == SKIP:
        return f"skip {shown}: {step.reason}"
    return f"{step.kind} {shown}" + (f" ({step.reason})" if step.reason else "")


def unknown_lines(schema: SchemaPlan) -> list[str]:
    return [f"unknown index (not declared, kept): {index.shown()}" for index in schema.unknown]


def _adopted(schema: SchemaPlan) -> str:
    count = len(schema.adopted)
    return f" ({plural(count, 'declared index', 'declared indexes')} in place)" if count else ""


def _levels(validator: dict | None) -> str:
    return ", ".join(f"{name} {value}" for name, value in (validator or {}).items() if name != "validator")


def plan_json(schema: SchemaPlan | None) -> dict[str, Any] | None:
    """The plan for scripts: steps (kind, collection, index, previous, validator, reason, build_first), unknown and
    adopted indexes, each index as its definition with its collection; None when nothing is declared."""
    if schema is None:
        return None
    return {"steps": [{"kind": step.kind, "collection": step.collection, "index": _index_json(step.index),
                       "previous": _index_json(step.previous), "validator": step.validator, "reason": step.reason,
                       "build_first": step.build_first, "text": step_text(step)} for step in schema.steps],
            "unknown": [_index_json(index) for index in schema.unknown],
            "adopted": [_index_json(index) for index in schema.adopted]}


def _index_json(index: Index | None) -> dict | None:
    return None if index is None else {"collection": index.collection, **index.definition()}


# ----- --check and --status: the drift (migrator.schema.diff.drift, the rule /health shares) -----

async def read_state(ctx: Context) -> SchemaState:
    return await schema_state(ctx.engine.schema_plan)


def check_lines(state: SchemaState) -> list[str]:
    """--check's reasons: one line per difference (exit 6 if any)."""
    return [f"schema: {difference.text}" for difference in state.differences]


def status_lines(state: SchemaState) -> list[str]:
    """--status's lines after the migrations: the schema as declared or each difference; skipped steps; unknowns."""
    if not state.declared:
        return []
    lines = check_lines(state) or [f"schema: as declared{_adopted(state.plan) if state.plan else ''}"]
    if state.plan is None:
        return lines
    skipped = [f"schema: {step_text(step)}" for step in state.plan.steps if step.kind == SKIP]
    return lines + skipped + unknown_lines(state.plan)


def status_json(state: SchemaState) -> dict[str, Any] | None:
    """--status --json's row named "schema" (None when nothing is declared): `state` current, drift or broken; each
    difference; the plan."""
    if not state.declared:
        return None
    broken = state.plan is None
    return {"name": "schema", "state": "broken" if broken else "drift" if state.differences else "current",
            "drift": [{"name": d.name, "kind": d.kind, "text": d.text} for d in state.differences],
            "plan": plan_json(state.plan)}
