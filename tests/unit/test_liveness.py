"""Whether a runner is alive: known only on this host (and pid space); "dead" only when its process is gone."""

import os
import subprocess
import sys

import pytest

from migrator import liveness
from migrator.commands.rows import interrupted_text, runner_stopped
from migrator.liveness import ALIVE, DEAD, HOST, PID_SPACE, UNKNOWN, runner_state, state_of_runner
from migrator.plan import INTERRUPTED, StatusRow, lost_lock_error


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process any more
    return child.pid


def test_a_runner_of_this_host_is_alive_while_its_process_is_and_dead_once_it_is_gone():
    assert runner_state(HOST, os.getpid()) == ALIVE
    assert runner_state(HOST, os.getpid(), PID_SPACE) == ALIVE
    assert runner_state(HOST, a_dead_pid()) == DEAD
    assert state_of_runner(f"{HOST}:{os.getpid()}:abcd") == ALIVE and state_of_runner(f"{HOST}:{a_dead_pid()}") == DEAD


def test_an_exited_child_not_reaped_yet_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, still a zombie
    try:
        assert runner_state(HOST, child.pid) == DEAD
    finally:
        child.wait()


@pytest.mark.parametrize("host, pid, space", [
    ("deploy-7", "mine", None),  # another host: nobody here can tell
    (HOST, "mine", "another-boot/pid:[1]"),  # this host's name, another container or boot
    (HOST, 0, None), (HOST, -1, None), (HOST, None, None), (HOST, True, None),  # never a process group
])
def test_a_runner_elsewhere_or_unnamed_is_unknown_never_dead(host, pid, space):
    pid = os.getpid() if pid == "mine" else pid  # resolved here: every xdist worker must collect the same ids
    assert runner_state(host, pid, space) == UNKNOWN


def test_a_runner_name_that_is_not_host_pid_is_unknown():
    assert state_of_runner("force-unlock by x") == UNKNOWN and state_of_runner(f"{HOST}:?") == UNKNOWN


def test_died_is_said_only_when_known_and_a_rollback_is_named():
    assert runner_stopped("vm:1", DEAD) == "its runner vm:1 died"
    unknown = runner_stopped("vm:1", UNKNOWN)
    assert "died" not in unknown and "stopped without recording an end" in unknown
    assert "still alive on this host" in runner_stopped("vm:1", ALIVE)
    lost = runner_stopped("vm:1", DEAD, "lost the migration lock: x")
    assert lost == "its runner vm:1 stopped: lost the migration lock: x"
    row = StatusRow("m", "2025-01-01", INTERRUPTED, "rollback", runner="vm:1", runner_state=DEAD)
    assert interrupted_text(row) == "rollback interrupted: its runner vm:1 died"


def test_the_error_of_a_runner_that_lost_the_lock_is_found_by_its_run():
    start = {"state": "running", "action": "apply", "run_id": "r2"}
    lost = {"state": "failed", "action": "apply", "run_id": "r2", "lock_lost": True, "error": "lost the migration lock"}
    older = {**lost, "run_id": "r1", "error": "an earlier run's"}
    assert lost_lock_error([older, start, lost]) == "lost the migration lock"
    assert lost_lock_error([lost, start]) == "lost the migration lock"  # history-only entries sort first
    assert lost_lock_error([older, start]) == ""
    assert lost_lock_error([start, lost, {**start, "state": "failed", "run_id": "r3"}]) == ""


def test_the_pid_space_is_this_boot_and_pid_namespace():
    assert liveness.PID_SPACE is None or liveness.PID_SPACE.count("/pid:[") == 1
