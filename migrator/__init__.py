"""The migration engine of the Flowise Proxy Service: discovery, order, running, output."""

from migrator.engine import Engine, Options
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, Outcome, Verification
from migrator.scope import WHOLE, Scope
from migrator.version import __version__

__all__ = ["__version__", "WHOLE", "Engine", "ExitCode", "Migration", "MigrationError", "Options", "Outcome", "Scope",
           "Verification"]
