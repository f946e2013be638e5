"""What the engine tells while it works: events with data, handed to one injected reporter.

The engine and everything under it never log or print: they call `report(SomeEvent(...))`, where
`report` is the Reporter the caller passed in (the CLI renders events as log lines, a progress bar in
a terminal, or JSON; from Python the default, `silent`, tells no one). Each event is a frozen dataclass
defined here, so that this module lists everything the engine can say.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """The base of every event."""


Reporter = Callable[[Event], None]


def silent(event: Event) -> None:
    """The default reporter: tells no one."""
