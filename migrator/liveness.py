"""Is a runner alive? Known only for one that ran where this process runs: the same host, the same boot and the
same pid namespace. Anywhere else nobody can tell (only its lease can), and nothing here claims to.

A runner is recorded as host:pid (the lock's owner, the changelog's entries) with its `pid_space`: the boot id
and the pid namespace of its process. A pid names the same process only within one pid namespace of one boot:
two containers may share a host name (`--network host`, a compose `hostname:`) and not their pids, and a
machine rebooted has new ones. Without a recorded pid space (the previous version's records, a system without
/proc), the host name alone is trusted: two machines or containers of the same name holding the lock at once
are assumed not to happen. A dead runner's pid reused by another process reads as alive: the safe side.
"""

import os
import socket
from pathlib import Path

ALIVE, DEAD, UNKNOWN = "alive", "dead", "unknown"  # UNKNOWN: it ran elsewhere
HOST = socket.gethostname()


def _pid_space() -> str | None:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


PID_SPACE = _pid_space()


def runner_state(host: str | None, pid: object, pid_space: str | None = None) -> str:
    """ALIVE or DEAD for a runner of this host (and pid space, when recorded); UNKNOWN for one elsewhere."""
    if host != HOST or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:  # 0, -1: process groups
        return UNKNOWN
    if pid_space is not None and pid_space != PID_SPACE:
        return UNKNOWN
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return DEAD
    except PermissionError:  # it exists, another user's
        return ALIVE
    except OSError:
        return UNKNOWN
    return DEAD if _zombie(pid) else ALIVE


def _zombie(pid: int) -> bool:
    """Exited, not yet reaped by its parent (it still answers signal 0)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def state_of_runner(runner: str, pid_space: str | None = None) -> str:
    """The state of a runner named host:pid, or by a lock owner id host:pid:random (lock_commands.new_owner)."""
    host, _, rest = runner.partition(":")
    pid = rest.split(":")[0]
    return runner_state(host, int(pid), pid_space) if pid.isdigit() else UNKNOWN
