"""The migration engine of the Flowise Proxy Service: discovery, order, running, output."""

__version__ = "0.3.0"

from migrator.engine import Engine, Options
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, Outcome, Verification

__all__ = ["Engine", "ExitCode", "Migration", "MigrationError", "Options", "Outcome", "Verification"]
