"""The toolkit's one error type and the exit codes a deploy script can rely on."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a migration, its verification right after it, or a rollback failed
    USAGE = 2  # bad flags or settings, unknown migration, refused without confirmation
    LOCKED = 3  # another runner held the lock past --lock-timeout
    VERIFY_FAILED = 4  # --verify found a migration whose change is not (or no longer) in place
    UNREACHABLE = 5  # cannot reach or authenticate to the database
    NOT_CURRENT = 6  # --check: something is pending, changed, failed, interrupted or out of order
    CANCELLED = 7  # --cancel from anywhere: batches stopped at a batch boundary, as after SIGTERM (resumable)
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM (docker stop): batches stop at a batch boundary (resumable), other work unwinds


class MigrationError(Exception):
    """An error the CLI prints as one line before exiting with `exit_code`."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED):
        super().__init__(message)
        self.exit_code = exit_code

    @property
    def stopped_by_signal(self) -> bool:
        """Ctrl-C, SIGTERM or --cancel stopped the work (exit 130, 143 or 7): the same command again goes on."""
        return self.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED, ExitCode.CANCELLED)
