"""The order migrations run in: by date and time, then name, with `depends_on` respected. No I/O.

A plain `Date: YYYY-MM-DD` counts as the start of that day, so it runs before a same-day `YYYY-MM-DD HH:MM`.
"""

import heapq

from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, date_of


def order_migrations(migrations: list[Migration]) -> list[Migration]:
    by_name: dict[str, Migration] = {}
    for migration in migrations:
        if migration.name in by_name:
            raise MigrationError(f"two migrations are named {migration.name!r}", ExitCode.USAGE)
        by_name[migration.name] = migration
    when = {name: date_of(migration) for name, migration in by_name.items()}

    waiting_on = {name: set(m.depends_on) for name, m in by_name.items()}
    for name, needs in waiting_on.items():
        missing = sorted(needs - by_name.keys())
        if missing:
            raise MigrationError(f"{name} depends on {', '.join(missing)}, which does not exist", ExitCode.USAGE)

    ready = [(when[m.name], m.name) for m in by_name.values() if not m.depends_on]
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
        raise MigrationError(f"migrations depend on each other in a cycle: {', '.join(cycle)}", ExitCode.USAGE)
    return ordered
