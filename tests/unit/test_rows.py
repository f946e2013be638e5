"""How a status row reads in --status and --check: each thing said once."""

from migrator.commands.rows import failed_text, interrupted_text
from migrator.plan import FAILED, INTERRUPTED, StatusRow

NAME = "add_metadata_to_chat_messages"


def test_a_failure_does_not_name_its_migration_twice():
    row = StatusRow(NAME, "2025-01-01", FAILED, "apply", error=f"{NAME}: stopped by SIGINT after 300 documents")
    assert failed_text(row) == "failed: stopped by SIGINT after 300 documents"
    other = StatusRow(NAME, "2025-01-01", FAILED, "apply", error="other_migration: up failed: boom")
    assert failed_text(other) == "failed: other_migration: up failed: boom"  # only its own name is dropped
    assert failed_text(StatusRow(NAME, "2025-01-01", FAILED, "apply")) == "failed"


def test_an_interrupted_run_that_lost_its_lock_does_not_name_its_migration_twice():
    row = StatusRow(NAME, "2025-01-01", INTERRUPTED, "apply", runner="vm:1",
                    error=f"{NAME}: lost the migration lock: taken over")
    assert interrupted_text(row) == "interrupted: its runner vm:1 stopped: lost the migration lock: taken over"
