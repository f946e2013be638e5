"""Run a script of the toolkit with PyMongo's command monitoring on; write what its clients sent and received.

    BENCH_COMMAND_TOTALS=totals.json python bench/command_totals.py migrations/run_migrations.py --all

A listener registered before the script runs sees every command of every client the script opens,
and each command is one round trip (the toolkit uses no exhaust cursors and no unacknowledged
writes). The script runs as it would on its own (same arguments, same exit code); nothing in the
toolkit knows it is watched. At exit the file gets
    {"commands": N, "sent": bytes, "received": bytes, "by_command": {name: {"count", "sent", "received"}},
     "by_target": {"name collection": count}, "connections": N, "heartbeats": N}
Bytes are each message's size on the wire: the command's or the reply's BSON plus OP_MSG's framing
(21 bytes: the header, the flags, the section's kind), and the document sequence that carries an
insert's, update's or delete's list. Opening a connection
(its handshake) and the driver's server monitoring (`hello` every 10 s on connections of their own) are
not commands: they are counted apart, in connections and heartbeats.
"""

import atexit
import json
import os
import runpy
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bson
from pymongo import monitoring

OUTPUT = "BENCH_COMMAND_TOTALS"
OP_MSG_FRAMING = 16 + 4 + 1
DOCUMENT_SEQUENCES = {"insert": "documents", "update": "updates", "delete": "deletes"}


class Totals(monitoring.CommandListener, monitoring.ConnectionPoolListener):
    def __init__(self):
        self.commands = self.sent = self.received = self.connections = self.heartbeats = 0
        self.by_command: dict[str, dict[str, int]] = {}
        self.by_target: dict[str, int] = {}  # "find migrations_control": how many
        self._lock = threading.Lock()  # the driver's monitors report from threads of their own

    def _add(self, name: str, sent: int = 0, received: int = 0, commands: int = 0) -> None:
        with self._lock:
            row = self.by_command.setdefault(name, {"count": 0, "sent": 0, "received": 0})
            row["count"] += commands
            row["sent"] += sent
            row["received"] += received
            self.commands += commands
            self.sent += sent
            self.received += received

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self._add(event.command_name, sent=_message_size(event.command), commands=1)
        target = event.command.get(event.command_name)
        if isinstance(target, str):
            with self._lock:
                key = f"{event.command_name} {target}"
                self.by_target[key] = self.by_target.get(key, 0) + 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._add(event.command_name, received=len(bson.encode(event.reply)) + OP_MSG_FRAMING)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._add(event.command_name, received=len(bson.encode(event.failure)) + OP_MSG_FRAMING)

    def connection_created(self, event) -> None:
        with self._lock:
            self.connections += 1

    def heartbeat(self) -> None:
        with self._lock:
            self.heartbeats += 1

    # the events nobody counts
    def pool_created(self, event) -> None: ...
    def pool_ready(self, event) -> None: ...
    def pool_cleared(self, event) -> None: ...
    def pool_closed(self, event) -> None: ...
    def connection_ready(self, event) -> None: ...
    def connection_closed(self, event) -> None: ...
    def connection_check_out_started(self, event) -> None: ...
    def connection_check_out_failed(self, event) -> None: ...
    def connection_checked_out(self, event) -> None: ...
    def connection_checked_in(self, event) -> None: ...

    def as_dict(self) -> dict:
        with self._lock:
            return {"commands": self.commands, "sent": self.sent, "received": self.received,
                    "by_command": self.by_command, "by_target": self.by_target, "connections": self.connections,
                    "heartbeats": self.heartbeats}


def _message_size(command: Mapping[str, Any]) -> int:
    """The OP_MSG's size: the driver sends an insert's, update's or delete's list as a document sequence
    (a section of its own: kind, size, name, the documents), not as an array inside the command."""
    name = next(iter(command))
    field = DOCUMENT_SEQUENCES.get(name)
    if field is None or field not in command:
        return len(bson.encode(command)) + OP_MSG_FRAMING
    body = {key: value for key, value in command.items() if key != field}
    sequence = 1 + 4 + len(field) + 1 + sum(len(bson.encode(document)) for document in command[field])
    return len(bson.encode(body)) + sequence + OP_MSG_FRAMING


class Heartbeats(monitoring.ServerHeartbeatListener):  # its methods have the names of a CommandListener's
    def __init__(self, totals: Totals):
        self.totals = totals

    def started(self, event) -> None: ...
    def failed(self, event) -> None: ...

    def succeeded(self, event) -> None:
        self.totals.heartbeat()


def main() -> None:
    if len(sys.argv) < 2 or not os.environ.get(OUTPUT):
        sys.exit(f"usage: {OUTPUT}=FILE python {sys.argv[0]} SCRIPT [ARGS...]")
    output, script = Path(os.environ[OUTPUT]), Path(sys.argv[1]).resolve()
    totals = Totals()
    monitoring.register(totals)  # every client created from now on reports to it
    monitoring.register(Heartbeats(totals))
    atexit.register(lambda: output.write_text(json.dumps(totals.as_dict())))
    sys.argv = [str(script), *sys.argv[2:]]
    sys.path[0] = str(script.parent)  # as if the script had been run itself
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
