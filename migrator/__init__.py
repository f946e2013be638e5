"""The migration engine of the Flowise Proxy Service: discovery, order, running, output."""

from migrator.engine import Engine, Options
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, Outcome, Verification
from migrator.version import __version__

__all__ = ["__version__", "Engine", "ExitCode", "Migration", "MigrationError", "Options", "Outcome", "Verification"]
