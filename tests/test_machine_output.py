"""A run told to machines, against the real server: --log-format json on stderr, --metrics-file read with
prometheus_client's parser during and after the run, --notify to a webhook receiver on localhost."""

import json
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import MIGRATIONS, NAME, RUNNER, SCRIPT, load, run, write_migration

DOCUMENTED = {"ts", "level", "event", "message"}
PASSWORD = "Hunter2secret"


def test_every_json_line_parses_with_the_documented_fields_and_no_password(db, env, server_url, is_ferretdb):
    load(db, 200)
    if is_ferretdb:  # it accepts any password with PLAIN: the run carries one
        env = {**env, "MONGODB_URL": f"mongodb://migrator:{PASSWORD}@{urlsplit(server_url).netloc}/?authMechanism=PLAIN"}
    result = run(SCRIPT, "--log-format", "json", "--batch-size", "50", env=env)
    assert result.code == 0, result
    assert PASSWORD not in result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    for line in lines:
        assert line.keys() >= DOCUMENTED, line
        assert datetime.fromisoformat(line["ts"]).utcoffset().total_seconds() == 0
        assert line["level"] in {"info", "warning", "error"}
    by_event = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)
    assert {"run_started", "applying", "progress_made", "walk_done", "migration_applied", "run_finished"} <= set(
        by_event), sorted(by_event)
    assert by_event["log"][0]["message"].startswith(f"database {env['MONGODB_DATABASE_NAME']} at ")
    assert by_event["applying"][0]["migration"] == NAME
    assert {line["migration"] for line in by_event["progress_made"]} == {NAME}
    assert by_event["walk_done"][0]["done"] == 180  # those without metadata
    applied = by_event["migration_applied"][0]
    assert applied["migration"] == NAME and applied["result"]["outcome"]["modified"] == 180
    assert "modified 180 documents" in applied["message"]
    assert by_event["run_finished"][-1]["exit_code"] == 0 and lines[-1]["event"] == "run_finished"


def test_the_metrics_file_parses_during_the_run_and_after_it(db, env, tmp_path):
    load(db, 300)
    path = tmp_path / "migrations.prom"
    process = subprocess.Popen([sys.executable, str(MIGRATIONS / SCRIPT), "--metrics-file", str(path),
                                "--batch-size", "20", "--max-rate", "200", "--progress-interval", "0.1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    during = []
    while process.poll() is None:
        if path.exists():
            samples = _samples(path.read_text())
            if samples.get("migration_state", {}).get("state") == "running":
                during.append(samples)
        time.sleep(0.05)
    output = process.communicate()[0]
    assert process.returncode == 0, output
    midway = [s for s in during if 0 < s["migration_documents_done"]["value"] < 270]  # those without metadata
    assert midway, during
    assert midway[-1]["migration_documents_total"]["value"] == 270
    assert midway[-1]["migration_rate_per_second"]["value"] > 0
    assert midway[-1]["migration_eta_seconds"]["value"] > 0
    after = _samples(path.read_text())
    assert after["migration_documents_done"]["value"] == 270
    assert after["migration_state"] == {"migration": NAME, "database": env["MONGODB_DATABASE_NAME"],
                                        "state": "applied", "value": 1.0}
    assert after["migration_retries_total"]["value"] == 0
    assert not list(tmp_path.glob(".*.tmp"))


def _samples(text: str) -> dict[str, dict]:
    """{sample name: its labels and value}: the one migration's."""
    return {sample.name: {**sample.labels, "value": sample.value}
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def receiver():
    """A webhook receiver on localhost: the JSON bodies POSTed to it, and its URL (with a token in its path)."""
    bodies: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/T0-token-xyz", bodies
    server.shutdown()
    server.server_close()


def test_a_webhook_gets_start_and_success_then_failure_when_up_raises(db, env, tmp_path, receiver):
    url, bodies = receiver
    db.chat_messages.insert_many([{"n": n} for n in range(20)])
    folder = tmp_path / "migrations"
    folder.mkdir()
    write_migration(folder, "sets_a", "2025-08-01")
    result = run(RUNNER, "--all", "--migrations-dir", str(folder), "--notify", url, env=env)
    assert result.code == 0, result
    assert [body["event"] for body in bodies] == ["start", "success"]
    assert bodies[0]["database"] == env["MONGODB_DATABASE_NAME"] and bodies[1]["exit_code"] == 0

    bodies.clear()
    write_migration(folder, "breaks", "2025-08-02", body='''
        async def up(db):
            raise RuntimeError("the up of breaks failed on purpose")

        async def verify(db):
            return False
        ''')
    result = run(RUNNER, "--all", "--migrations-dir", str(folder), "--notify", url, env=env)
    assert result.code == 1, result
    assert [body["event"] for body in bodies] == ["start", "failure"]
    assert bodies[1]["exit_code"] == 1 and bodies[1]["migration"] == "breaks"
    assert "failed on purpose" in bodies[1]["message"]
    assert "T0-token-xyz" not in result.output


def test_a_notify_url_that_refuses_connections_is_one_warning_and_the_run_succeeds(db, env, tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once closed
    db.chat_messages.insert_many([{"n": n} for n in range(20)])
    folder = tmp_path / "migrations"
    folder.mkdir()
    write_migration(folder, "sets_a", "2025-08-01")
    started = time.monotonic()
    result = run(RUNNER, "--all", "--migrations-dir", str(folder), "--notify", f"http://127.0.0.1:{port}/hook/T0-tok",
                 env=env)
    assert result.code == 0, result
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"http://127.0.0.1:{port}/**** could not be reached" in warnings[0], result
    assert "T0-tok" not in result.output
    assert time.monotonic() - started < 20


def test_a_run_without_progress_for_stall_minutes_is_a_stall_notification(db, env, tmp_path, receiver):
    url, bodies = receiver
    folder = tmp_path / "migrations"
    folder.mkdir()
    write_migration(folder, "slow", "2025-08-01", body='''
        import asyncio

        async def up(db):
            await asyncio.sleep(2)

        async def verify(db):
            return True
        ''')
    result = run(RUNNER, "--all", "--migrations-dir", str(folder), "--notify", url, "--stall-minutes", "0.01",
                 env=env)
    assert result.code == 0, result
    assert [body["event"] for body in bodies] == ["start", "stall", "success"]
    assert bodies[1]["migration"] == "slow" and bodies[1]["seconds_without_progress"] >= 0
