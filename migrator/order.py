"""The order migrations run in: by date and time, then name, with `depends_on` respected. No I/O.

A plain `Date: YYYY-MM-DD` counts as the start of that day, so it runs before a same-day `YYYY-MM-DD HH:MM`.
"""

import heapq
from collections.abc import Collection

from migrator.migration import Migration, date_of


def order_migrations(migrations: list[Migration], broken: Collection[str] = ()
                     ) -> tuple[list[Migration], list[tuple[Migration, str]]]:
    """(the migrations in the order they run, those that have no place in it, each with why: a name used twice, a
    dependency that does not exist, a cycle). A dependency on a `broken` file's migration, or on one without a
    place, is left out of the order: nothing runs while a file is broken (migrator.discovery)."""
    by_name: dict[str, Migration] = {}
    unplaced: list[tuple[Migration, str]] = []
    known = {migration.name for migration in migrations}.union(broken)
    for migration in migrations:
        missing = sorted(set(migration.depends_on) - known)
        if migration.name in by_name:
            unplaced.append((migration, f"two migrations are named {migration.name!r}"))
        elif missing:
            unplaced.append((migration, f"depends on {', '.join(missing)}, which does not exist"))
        else:
            by_name[migration.name] = migration
    when = {name: date_of(migration) for name, migration in by_name.items()}

    waiting_on = {name: set(m.depends_on).intersection(by_name) for name, m in by_name.items()}
    ready = [(when[name], name) for name, needs in waiting_on.items() if not needs]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, name = heapq.heappop(ready)
        ordered.append(by_name[name])
        for other, needs in waiting_on.items():
            if name in needs:
                needs.discard(name)
                if not needs:
                    heapq.heappush(ready, (when[other], other))

    if len(ordered) < len(by_name):
        cycle = sorted(set(by_name) - {m.name for m in ordered})
        unplaced += [(by_name[name], f"migrations depend on each other in a cycle: {', '.join(cycle)}")
                     for name in cycle]
    return ordered, unplaced
