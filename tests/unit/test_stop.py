"""Ctrl-C and SIGTERM while a migration's own code awaits (migrator/stop.py, through migrator/hooks.py); a
subprocess each, so that a signal missed here cannot interrupt the test session. No server."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A hook that sleeps a minute, with the signal delivered to another thread than the one the event loop waits
# in, as the kernel may do under load: a Python-level handler would run only when the loop wakes by itself.
SLEEPING_HOOK = """
    import asyncio, signal, sys, threading, time
    from migrator.errors import MigrationError
    from migrator.hooks import Hooks

    class Sleeper:
        name = "sleeper"

        async def up(self, db):
            def later():  # once the loop waits
                time.sleep(0.3)
                signal.pthread_kill(threading.get_ident(), signal.{signal})
            threading.Thread(target=later).start()
            await asyncio.sleep(60)

    async def main():
        told = []
        try:
            await Hooks(None, report=told.append).call(Sleeper(), "up")
        except MigrationError as exc:
            print(exc.exit_code, exc, [type(event).__name__ for event in told])
            await asyncio.sleep(0)  # what follows (releasing the lock) is not cancelled
            print("unwound")

    asyncio.run(main())
"""


@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_cancels_a_hook_that_awaits_even_when_another_thread_receives_it(name, code):
    script = textwrap.dedent(SLEEPING_HOOK).replace("{signal}", name)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        f"{code} sleeper: up stopped by {name}: run the same command again to finish ['StopRequested']", "unwound"]
