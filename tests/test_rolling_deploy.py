"""A rolling deploy converges: pods of the app's older version keep writing messages without `metadata` while
the migration runs. The run covers the messages that existed when its walk began and exits 0; a later --verify
(of the whole collection) names the stragglers until a catch-up run (the same migration, run again)."""

import threading

import pytest
from bson import ObjectId

from conftest import NAME, RUNNER, load

LACKS = {"metadata": {"$exists": False}}


class OldPods:
    """Inserts messages of the old shape (no metadata), `per_s` a second, until stopped."""

    def __init__(self, collection, per_s: float = 10):
        self.collection, self.pause = collection, 1 / per_s
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="old-pods", daemon=True)

    def _write(self) -> None:
        while not self._stop.wait(self.pause):
            self.collection.insert_one({"_id": ObjectId(), "session_id": "rolling", "role": "user",
                                        "content": f"from an old pod {self.written}"})
            self.written += 1

    def __enter__(self) -> "OldPods":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.mark.parametrize("path", ["stream", "range"])
def test_a_run_beside_old_pods_exits_0_and_verify_flags_their_messages_until_a_catch_up_run(cli, db, path):
    load(db, 2_000 if path == "stream" else 1_000)  # the range path scans the collection a batch on FerretDB
    run = ("--batch-path", path, "--batch-size", "200", "--max-rate", "1000", "--progress-interval", "600")
    with OldPods(db.chat_messages) as old_pods:
        applied = cli(RUNNER, "--all", *run)
        assert applied.code == 0, applied
        assert old_pods.written >= 5  # they wrote while it ran

        verified = cli(RUNNER, "--verify")
        assert verified.code == 4, verified
        [line] = [line for line in verified.output.splitlines() if f"{NAME}: NOT in place" in line]
        assert "without_metadata=" in line and f"--migration {NAME}" in line, line

        assert cli(RUNNER, "--migration", NAME, *run).code == 0  # a catch-up run while they still write: 0 too
    old_pods.stop()  # every pod runs the new version

    assert cli(RUNNER, "--migration", NAME, *run).code == 0
    assert cli(RUNNER, "--verify").code == 0
    assert db.chat_messages.count_documents(LACKS) == 0
    assert db.chat_messages.count_documents({"session_id": "rolling"}) == old_pods.written
