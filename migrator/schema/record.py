"""How a schema run is kept in the changelog, and what the toolkit's runs created (no I/O here).

A schema run is one changelog entry stream under the name "schema" (NAME), like a migration's: action "apply" or
"rollback", state running, then applied (a rollback: rolled_back) or failed, with a field `schema`:

    {"created": [definition, ...], "dropped": [...], "adopted": [...], "validators": {collection: validator},
     "validators_before": {collection: the validator it replaced, {} for none}}

each definition `{"collection": c, "keys": [{"field": f, "direction": d}, ...], "options": {...}, "name": n}`
(Index.definition with its collection): enough to build the index again. A failed run records what it did before it
failed, since that is in the database. A rollback names the run it undoes (`rolls_back`: that run's run_id).

The indexes the toolkit created are those its runs created and have not dropped since; a rollback gives back what its
run dropped only to the owner it had: an index the run re-creates is the toolkit's again only if it was before.
"""

from dataclasses import dataclass, field

from migrator.schema.model import Index

NAME = "schema"  # the changelog name of every schema run


def definition(index: Index) -> dict:
    """What the changelog records of an index: its definition with its collection."""
    return {"collection": index.collection, **index.definition()}


def index_of(recorded: dict) -> Index:
    """The Index a recorded definition describes (compared by keys and options like any other)."""
    return Index.of_definition(recorded)


@dataclass
class SchemaRecord:
    """What a schema run did, as it goes: the changelog's `schema` field."""
    created: list[Index] = field(default_factory=list)
    dropped: list[Index] = field(default_factory=list)
    adopted: list[Index] = field(default_factory=list)
    validators: dict[str, dict] = field(default_factory=dict)
    validators_before: dict[str, dict] = field(default_factory=dict)  # what a rollback sets again ({} for none)

    def field(self) -> dict:
        return {"created": [definition(index) for index in self.created],
                "dropped": [definition(index) for index in self.dropped],
                "adopted": [definition(index) for index in self.adopted],
                "validators": dict(self.validators), "validators_before": dict(self.validators_before)}

    @property
    def changed(self) -> bool:
        return bool(self.created or self.dropped or self.validators)


def recorded(entry: dict, what: str) -> list[Index]:
    """The indexes an entry says it `created`, `dropped` or `adopted`."""
    return [index_of(item) for item in (entry.get(NAME) or {}).get(what, [])]


def schema_entries(entries: list[dict]) -> list[dict]:
    """The schema runs' entries, in the changelog's order (as Changelog.entries gives them)."""
    return [entry for entry in entries if entry.get("name") == NAME]


def created_indexes(entries: list[dict]) -> set[Index]:
    """The indexes the toolkit created and has not dropped since, from every changelog entry in its order."""
    owned: set[Index] = set()
    before: dict[str, set[Index]] = {}  # run_id -> what the toolkit owned before that run
    for entry in schema_entries(entries):
        if NAME not in entry:
            continue  # a start (running): nothing done yet
        if entry.get("action") == "rollback":
            owned_before = before.get(entry.get("rolls_back", ""), set())
            owned = (owned - set(recorded(entry, "dropped"))) | (set(recorded(entry, "created")) & owned_before)
            continue
        before.setdefault(entry.get("run_id", ""), set(owned))
        owned = (owned | set(recorded(entry, "created"))) - set(recorded(entry, "dropped"))
    return owned


def last_run(entries: list[dict]) -> dict | None:
    """The latest schema run that changed something and is not rolled back yet (its final entry: applied or failed),
    or None: what a rollback of the schema undoes."""
    undone = {entry.get("rolls_back") for entry in schema_entries(entries)
              if entry.get("action") == "rollback" and entry.get("state") == "rolled_back"}
    for entry in reversed(schema_entries(entries)):
        if entry.get("action") != "apply" or NAME not in entry or entry.get("run_id") in undone:
            continue
        if recorded(entry, "created") or recorded(entry, "dropped") or (entry[NAME].get("validators")):
            return entry
    return None
