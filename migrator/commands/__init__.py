"""What each command does, narrated as it goes. The CLI parses flags and calls these.

The workflows that change the database are the engine's (migrator.engine: the lock, the refusals, the
backup policy, the changelog); a command adds what only a command line has: confirmation and the lines
it prints. One module per kind of command:
    apply       --all, --migration, --dry-run, the rollbacks
    info        --status, --history, --check, --verify
    schema      --plan, and the schema's lines of --check and --status
    restore     --restore
    prove       --selftest, --preview, the estimate of --dry-run
    authoring   --mark-applied, --force-unlock, --new
    control     --pause, --resume, --cancel
    narration   what they are handed (Context) and the CLI's one reporter: the engine's events as log lines
    rows        a status row as text and JSON
"""

from migrator.commands.apply import (
                                     apply_one,
                                     apply_pending,
                                     dry_run,
                                     rollback,
                                     rollback_schema,
                                     select_after,
                                     select_last,
                                     select_named,
                                     up_to,
)
from migrator.commands.authoring import (
                                     TEMPLATE,
                                     TEST_TEMPLATE,
                                     force_unlock,
                                     mark_applied,
                                     migration_test_path,
                                     new_migration,
                                     new_migration_with_test,
)
from migrator.commands.control import cancel, pause, resume
from migrator.commands.info import check, history, status, verify, verify_applied
from migrator.commands.narration import Context, Narration
from migrator.commands.prove import preview, selftest
from migrator.commands.restore import restore
from migrator.commands.schema import plan

__all__ = ["Context", "Narration", "TEMPLATE", "TEST_TEMPLATE", "apply_one", "apply_pending", "cancel", "check",
           "dry_run", "force_unlock", "history", "mark_applied", "migration_test_path", "new_migration",
           "new_migration_with_test", "pause", "plan", "preview", "restore",
           "resume", "rollback", "rollback_schema", "select_after", "select_last", "select_named", "selftest", "status",
           "up_to",
           "verify", "verify_applied"]
