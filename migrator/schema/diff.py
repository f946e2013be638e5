"""The plan: what makes the database's indexes and validators as declared (pure, no I/O), and its drift.

Indexes are matched by collection, keys and options, never by name:
- a declared index the server has already is adopted as it is (never rebuilt; UNHIDE if it is hidden);
- one it lacks is created; one whose keys are there with other options is replaced (whoever made it: the declaration
  owns its key pattern). The safe order of a REPLACE: the
  new index is built first (`build_first`) when the server can hold both meanwhile, which MongoDB allows only when
  they differ by collation or partialFilterExpression alone and are named differently; otherwise the old one is
  dropped, then the new one built (the collection is without that index in between);
- an index neither declared nor `_id_` is dropped only if the toolkit created it (its runs, in the changelog) or it is
  declared REMOVED; every other one is `unknown`: reported, never dropped. Drops come last, after every build, so
  that a compound index is there before the index it covers goes;
- a declared validator that differs from the collection's is set (an undeclared one is left alone);
- what the server cannot do (migrator.profile) is a SKIP step whose reason says why: never run, no drift; an index
  with its keys is kept as it is (neither replaced nor dropped).
"""

from collections.abc import Awaitable, Callable, Set
from dataclasses import dataclass

from migrator.errors import ExitCode, MigrationError
from migrator.profile import ServerProfile
from migrator.schema.declared import SPEC_FILE, Declared
from migrator.schema.listed import Listed, same_validator
from migrator.schema.model import CREATE, DROP, REPLACE, SKIP, UNHIDE, VALIDATOR, Index, SchemaPlan, SchemaStep

CREATED_BY_TOOLKIT, DECLARED_REMOVED = "created by the toolkit, no longer declared", "declared removed"
# what a server may lack, by option: the profile's capability, and the index it makes
_NEEDS = {"partialFilterExpression": ("partial_indexes", "a partial index (partialFilterExpression)"),
          "sparse": ("sparse_indexes", "a sparse index"),
          "expireAfterSeconds": ("ttl_indexes", "a TTL index (expireAfterSeconds)"),
          "collation": ("collation_indexes", "an index with a collation")}
_COEXIST = {"collation", "partialFilterExpression"}  # the options two indexes of the same keys may differ by


def plan_schema(declared: Declared, listed: Listed, created_by_toolkit: Set[Index],
                profile: ServerProfile) -> SchemaPlan:
    """The steps, in the order they may run: per collection the builds (and skips), then its validator; every drop
    last. `created_by_toolkit`: the indexes the toolkit's runs created and have not dropped since."""
    steps, drops, adopted, unknown = [], [], [], []
    collections = list(dict.fromkeys(declared.collections + tuple(index.collection for index in listed.indexes)))
    for collection in collections:
        there = sorted((index for index in listed.indexes if index.collection == collection), key=lambda i: i.name)
        used: list[Index] = []
        for index in (index for index in declared.indexes if index.collection == collection):
            if why := _cannot(index, profile):  # what has its keys stays: the nearest the server can have
                steps.append(SchemaStep(SKIP, collection, index, reason=why))
                used += [old for old in there if old.keys == index.keys and old not in declared.indexes]
            elif match := next((old for old in there if old == index and old not in used), None):
                used.append(match)
                adopted.append(match)
                if match in listed.hidden:
                    steps.append(SchemaStep(UNHIDE, collection, match, reason="declared, but hidden"))
            elif old := next((old for old in there if old.keys == index.keys and old not in used
                              and old not in declared.indexes), None):
                used.append(old)
                steps.append(SchemaStep(REPLACE, collection, index, previous=old, build_first=_coexist(old, index)))
            else:
                taken = next((old for old in there if old.name == index.name), None)
                steps.append(SchemaStep(CREATE, collection, index, reason=f"its name is taken by {taken.shown()}: the "
                                        "build will fail; name one of them otherwise" if taken else ""))
        steps += _validator_step(collection, declared, listed, profile)
        for index in (index for index in there if index not in used):
            if index in declared.removed or index in created_by_toolkit:
                reason = DECLARED_REMOVED if index in declared.removed else CREATED_BY_TOOLKIT
                drops.append(SchemaStep(DROP, collection, index, reason=reason))
            else:
                unknown.append(index)
    return SchemaPlan(tuple(steps + drops), tuple(unknown), tuple(adopted))


def _cannot(index: Index, profile: ServerProfile) -> str:
    """Why the server cannot build `index` ("" when it can)."""
    options = dict(index.options)
    for option, (capability, what) in _NEEDS.items():
        if option in options and not getattr(profile, capability):
            return f"{profile.label} cannot build {what}"
    special = [str(direction) for _, direction in index.keys if direction not in (1, -1)]
    if special and not profile.special_index_keys:
        return f"{profile.label} cannot build a {special[0]} index (keys of 1 and -1 only)"
    return ""


def _coexist(old: Index, new: Index) -> bool:
    differ = {name for name, _ in set(old.options) ^ set(new.options)}
    return bool(differ) and differ <= _COEXIST and bool(old.name) and old.name != new.name


def _validator_step(collection: str, declared: Declared, listed: Listed, profile: ServerProfile) -> list[SchemaStep]:
    wanted = declared.validators.get(collection)
    if wanted is None or same_validator(wanted, listed.validators.get(collection)):
        return []
    if not profile.validators:
        return [SchemaStep(SKIP, collection, validator=wanted, reason=f"{profile.label} has no validators")]
    return [SchemaStep(VALIDATOR, collection, validator=wanted,
                       reason="none yet" if collection not in listed.validators else "differs from the declared one")]


# ----- drift: the one rule --check, --status and /health share -----

MISSING_INDEX, EXTRA_INDEX, REMOVED_INDEX, INDEX_OPTIONS, HIDDEN_INDEX, VALIDATOR_DIFFERS, BROKEN_SPEC = (
    "missing_index", "extra_index", "removed_index", "index_options", "hidden_index", "validator", "broken_schema_file")


@dataclass(frozen=True)
class Drift:
    """One way the database differs from the declared schema: `name` (collection.index), `kind`, and a line."""
    name: str
    kind: str
    text: str


def drift(plan: SchemaPlan | None) -> list[Drift]:
    """Each step that would change the database, as a difference (a SKIP is not one: the server cannot do it)."""
    found = []
    for step in plan.runnable if plan else ():
        index = step.index
        name = f"{step.collection}.{index.name}" if index else step.collection
        if step.kind == CREATE and index:
            found.append(Drift(name, MISSING_INDEX, f"missing index {index.shown()}"))
        elif step.kind == REPLACE and index and step.previous:
            found.append(Drift(name, INDEX_OPTIONS, f"index {step.previous.shown()} differs from the declared "
                                                     f"{index.shown()}"))
        elif step.kind == DROP and index:
            kind = REMOVED_INDEX if step.reason == DECLARED_REMOVED else EXTRA_INDEX
            found.append(Drift(name, kind, f"index {index.shown()} is there, {step.reason}"))
        elif step.kind == UNHIDE and index:
            found.append(Drift(name, HIDDEN_INDEX, f"index {index.shown()} is declared, but hidden"))
        elif step.kind == VALIDATOR:
            found.append(Drift(name, VALIDATOR_DIFFERS, f"validator of {step.collection}: {step.reason}"))
    return found


@dataclass(frozen=True)
class SchemaState:
    """What --check, --status and /health read of the schema: the plan (None: nothing declared, or its spec module is
    broken) and the differences (drift)."""
    plan: SchemaPlan | None
    differences: tuple[Drift, ...] = ()
    declared: bool = True  # False: no `_schema.py`, nothing planned, every gate as without it


async def schema_state(schema_plan: Callable[[], Awaitable[SchemaPlan | None]]) -> SchemaState:
    """The plan `schema_plan` (Engine.schema_plan) makes, and its drift; a spec module that cannot be read is one
    difference (as a broken migration file is a reason of --check, not an error of it)."""
    try:
        plan = await schema_plan()
    except MigrationError as exc:
        if exc.exit_code != ExitCode.USAGE:
            raise
        return SchemaState(None, (Drift(SPEC_FILE, BROKEN_SPEC, f"the schema's spec module is broken: {exc}"),))
    return SchemaState(plan, tuple(drift(plan)), declared=plan is not None)
