"""How fast the toolkit backfills `metadata`, against the server's own limit and the usual alternatives.

    python bench/backfill.py --docs N [--json] [--skip c,d] [--paths range,stream]

Loads N chat messages shaped like real ones (content 20 to 2,000 characters, 10% already holding
metadata) into identical databases, then measures on the same server, one after the other:
  (a) the toolkit: `python migrations/run_migrations.py --all`, as a whole process (start-up,
      lock, changelog, batches, checkpoints, verification included), and its peak RSS; once per
      batch path of --paths (default: the server's own, stream on FerretDB, range on MongoDB);
  (b) one bare `update_many` from PyMongo: the server's limit;
  (c) a per-document loop that finds and saves each message through Beanie, as Beanie's iterative
      migrations and naive scripts do;
  (d) migrate-mongo (npm) running the same updateMany, if npm can install it (cached in bench/.cache).
Then `run_migrations.py --status` on the migrated database, timed.

For (a), (b) and (c) it also counts, with PyMongo's command monitoring, the round trips per 1,000
documents and the bytes sent and received per document: what a remote server would make each of them
pay, whatever this server's speed. The toolkit runs under bench/command_totals.py, which registers a
listener before the toolkit opens its client and writes the totals at exit: the toolkit itself has no
hook for it. (d) runs in Node and is one updateMany, as (b).

The server is MONGODB_URL when set, else a fresh local FerretDB on a free port. Ratios, not
absolute times, are the point: the machine and the server are printed with them.
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts"), str(REPO / "bench")]

from command_totals import OUTPUT, Totals  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from local_server import LocalServer, build_local_server  # noqa: E402
from sample_messages import generate_messages  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
MIGRATE_MONGO = "migrate-mongo@14.0.7"
MONGODB_NODE_DRIVER = "mongodb@6.20.0"
LACKS = {"metadata": {"$exists": False}}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def bench_server() -> Iterator[tuple[str, MongoClient, str]]:
    """(URL, client, label) of MONGODB_URL's server, else of a fresh local FerretDB on a free port, stopped and
    removed at the end."""
    server: LocalServer | None = None
    scratch: str | None = None
    url = os.environ.get("MONGODB_URL")
    if not url:
        scratch = tempfile.mkdtemp(prefix="bench-ferretdb-")
        (Path(scratch) / "data").mkdir()
        server = LocalServer(build_local_server(), Path(scratch) / "data")
        server.start()
        url = server.url
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    try:
        build = client.admin.command("buildInfo")
        label = f"MongoDB {build.get('version')}"
        if "ferretdbVersion" in build:  # the embedded package reports "unknown": take it from our go.mod
            version = build["ferretdbVersion"] if server is None else ferretdb_version()
            label = f"FerretDB {version} ({'our localdb, SQLite' if server else 'FerretDB'})"
        yield url, client, label
    finally:
        client.close()
        if server and scratch:  # both or neither
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)


def load(client: MongoClient, name: str, docs: int) -> None:
    collection = client[name].chat_messages
    batch = []
    for message in generate_messages(docs, with_metadata_every=10):
        batch.append(message)
        if len(batch) == 5000:
            collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        collection.insert_many(batch, ordered=False)


def copy_database(client: MongoClient, source: str, target: str) -> None:
    """An identical copy, _ids included, read in pages so memory stays small."""
    batch = []
    for document in client[source].chat_messages.find({}, batch_size=5000):
        batch.append(document)
        if len(batch) == 5000:
            client[target].chat_messages.insert_many(batch, ordered=False)
            batch = []
    if batch:
        client[target].chat_messages.insert_many(batch, ordered=False)


def check_migrated(client: MongoClient, name: str, docs: int) -> None:
    database = client[name]
    left = database.chat_messages.count_documents(LACKS)
    total = database.chat_messages.count_documents({})
    if left or total != docs:
        raise SystemExit(f"bench: {name} is not migrated ({left} left, {total} of {docs} documents)")


def timed_process(command: list[str], env: dict, cwd: Path = REPO) -> tuple[float, int, str]:
    """Run a command; its wall time, its peak RSS in bytes (Linux/macOS), and its output."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None  # stdout=PIPE
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed (exit {process.returncode}):\n{text}")
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return seconds, rss, text


def toolkit(url: str, name: str, path: str | None) -> tuple[float, int, dict]:
    """The toolkit's whole run: its wall time, peak RSS and command totals (bench/command_totals.py)."""
    with tempfile.TemporaryDirectory() as work:
        totals_file = Path(work) / "totals.json"
        env = {**os.environ, "MONGODB_URL": url, "MONGODB_DATABASE_NAME": name, OUTPUT: str(totals_file)}
        command = [sys.executable, str(REPO / "bench" / "command_totals.py"),
                   str(REPO / "migrations" / "run_migrations.py"), "--all", *(["--batch-path", path] if path else [])]
        seconds, rss, _ = timed_process(command, env)
        return seconds, rss, json.loads(totals_file.read_text())


def wire_cost(totals: dict, docs: int) -> dict:
    return {"round_trips_per_1000_docs": round(totals["commands"] * 1000 / docs, 2),
            "bytes_sent_per_doc": round(totals["sent"] / docs, 2),
            "bytes_received_per_doc": round(totals["received"] / docs, 2),
            "commands": {name: row["count"] for name, row in sorted(totals["by_command"].items())}}


def status_seconds(url: str, name: str) -> float:
    env = {**os.environ, "MONGODB_URL": url, "MONGODB_DATABASE_NAME": name}
    seconds, _, output = timed_process([sys.executable, str(REPO / "migrations" / "run_migrations.py"), "--status"],
                                       env)
    if "1 applied" not in output:
        raise SystemExit(f"bench: --status does not show the migration applied:\n{output}")
    return seconds


def bare_update_many(url: str, name: str) -> tuple[float, dict]:
    totals = Totals()
    client: MongoClient[dict[str, Any]]
    with MongoClient(url, tz_aware=True, event_listeners=[totals]) as client:
        client[name].command("ping")  # the connection opened before the clock starts, as for (c)
        started = time.perf_counter()
        client[name].chat_messages.update_many(LACKS, {"$set": {"metadata": None}})
        seconds = time.perf_counter() - started
    return seconds, totals.as_dict()


def beanie_loop(url: str, name: str) -> tuple[float, dict]:
    from beanie import init_beanie
    from pymongo import AsyncMongoClient

    from app.models.chat_message import ChatMessage

    totals = Totals()

    async def loop() -> float:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True, event_listeners=[totals])
        await init_beanie(database=client[name], document_models=[ChatMessage])
        started = time.perf_counter()
        async for message in ChatMessage.find(LACKS):
            message.metadata = None
            await message.save()
        seconds = time.perf_counter() - started
        await client.close()
        return seconds

    return asyncio.run(loop()), totals.as_dict()


def migrate_mongo(url: str, name: str) -> float | None:
    """None when npm cannot install it here."""
    if not shutil.which("npm") or not shutil.which("node"):
        say("(d) skipped: node and npm are not on PATH")
        return None
    project = CACHE / "migrate-mongo"
    binary = project / "node_modules" / ".bin" / "migrate-mongo"
    if not binary.exists():
        project.mkdir(parents=True, exist_ok=True)
        say(f"(d) installing {MIGRATE_MONGO} with npm into {project} ...")
        installed = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(project),
                                    MIGRATE_MONGO, MONGODB_NODE_DRIVER], capture_output=True, text=True)
        if installed.returncode != 0 or not binary.exists():
            say(f"(d) skipped: npm could not install {MIGRATE_MONGO}: {installed.stderr.strip()[-300:]}")
            return None
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        (work / "migrations").mkdir()
        (work / "migrate-mongo-config.js").write_text(
            "module.exports = { mongodb: { url: process.env.BENCH_URL, databaseName: process.env.BENCH_DB },\n"
            "  migrationsDir: 'migrations', changelogCollectionName: 'changelog', migrationFileExtension: '.js',\n"
            "  useFileHash: false, moduleSystem: 'commonjs' };\n")
        (work / "migrations" / "20250715000000-add-metadata.js").write_text(
            "module.exports = {\n"
            "  async up(db) { await db.collection('chat_messages').updateMany("
            "{ metadata: { $exists: false } }, { $set: { metadata: null } }); },\n"
            "  async down() {},\n};\n")
        env = {**os.environ, "BENCH_URL": url, "BENCH_DB": name}
        seconds, _, _ = timed_process([str(binary), "up"], env, cwd=work)
    return seconds


def ferretdb_version() -> str:
    for line in (REPO / "localdb" / "go.mod").read_text().splitlines():
        if "github.com/FerretDB/FerretDB " in line:
            return line.split()[-1]
    return "?"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}){memory}, "
            f"Python {platform.python_version()}")


PATHS = ("range", "stream")


def _no_rss(seconds: float, totals: dict) -> tuple[float, None, dict]:
    return seconds, None, totals  # measured in this process, whose RSS holds the loaded copies too


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the toolkit's backfill against one bare update_many, "
                                     "a Beanie loop and migrate-mongo, on fresh identical copies.")
    parser.add_argument("--docs", type=int, default=100_000, help="messages per copy (default: 100,000)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--skip", default="", help="comma-separated measurements to skip, of a,b,c,d")
    parser.add_argument("--paths", default="", help="the toolkit's batch paths to measure, comma-separated, of "
                        "range, stream; each on a copy of its own (default: the server's own)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    paths = list(dict.fromkeys(filter(None, args.paths.split(","))))
    if args.docs < 1 or not skip <= set("abcd") or not set(paths) <= set(PATHS):
        parser.error("--docs must be positive, --skip a list of a, b, c, d and --paths a list of range, stream")

    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # drop the copies on the way out
    with bench_server() as (url, client, server_label):
        build = client.admin.command("buildInfo")
        own_path = "stream" if "ferretdbVersion" in build else "range"
        # (a) with the first path; a_<path> with each other one
        toolkit_runs = {"a": paths[0] if paths else None, **{f"a_{path}": path for path in paths[1:]}}
        keys = [key for key in ["a", *toolkit_runs, "b", "c", "d"] if key[0] not in skip]
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        names = {key: f"{prefix}_{key}" for key in dict.fromkeys(keys)}
        results: dict = {"docs": args.docs, "server": server_label, "machine": machine()}
        try:
            say(f"bench: {args.docs:,} messages per copy on {server_label}; loading {len(names)} copies ...")
            source = next(iter(names.values()))
            load(client, source, args.docs)
            for name in list(names.values())[1:]:
                copy_database(client, source, name)

            def run_toolkit(key: str):  # each measure: (seconds, peak RSS or None, command totals or None)
                return lambda: toolkit(url, names[key], toolkit_runs[key])

            measures = {
                **{key: (f"toolkit run_migrations.py --all, {path or own_path} path", run_toolkit(key))
                   for key, path in toolkit_runs.items()},
                "b": ("bare update_many", lambda: _no_rss(*bare_update_many(url, names["b"]))),
                "c": ("Beanie find-and-save loop", lambda: _no_rss(*beanie_loop(url, names["c"]))),
                "d": ("migrate-mongo up (updateMany)", lambda: (migrate_mongo(url, names["d"]), None, None)),
            }
            for key, name in names.items():
                label, measure = measures[key]
                say(f"bench: ({key}) {label} ...")
                load_before = os.getloadavg()[0]
                seconds, rss, totals = measure()
                if seconds is None:
                    continue
                check_migrated(client, name, args.docs)
                results[key] = row = {"what": label, "seconds": round(seconds, 3),
                                      "docs_per_s": round(args.docs / seconds),
                                      "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
                if key in toolkit_runs:
                    row["path"] = toolkit_runs[key] or own_path
                if rss:
                    row["peak_rss_mb"] = round(rss / 2**20, 1)
                if totals:
                    row.update(wire_cost(totals, args.docs))
                say(f"bench: ({key}) {json.dumps(row)}")  # as it comes: a run stopped later still leaves it
            if "a" in names:
                results["status_seconds"] = round(status_seconds(url, names["a"]), 3)
            if "a" in results and "b" in results:
                results["a_over_b"] = round(results["a"]["seconds"] / results["b"]["seconds"], 2)
            if "a" in results and "c" in results:
                results["c_over_a"] = round(results["c"]["seconds"] / results["a"]["seconds"], 2)
        finally:
            for name in names.values():
                client.drop_database(name)

    if args.json:
        print(json.dumps(results))
    else:
        print_table(results)
    return 0


def print_table(results: dict) -> None:
    print(f"{results['docs']:,} chat messages, {results['server']}; {results['machine']}")
    rows = [key for key in results if isinstance(results[key], dict)]
    for key in rows:
        row = results[key]
        rss = f", peak RSS {row['peak_rss_mb']} MB" if "peak_rss_mb" in row else ""
        load = "load average {} then {}".format(*row["load_average"])
        print(f"  {'(' + key + ')':<10}{row['what']:<44} {row['seconds']:>9.2f} s {row['docs_per_s']:>9,} docs/s"
              f"{rss}; {load}")
    if "a_over_b" in results:
        print(f"  (a)/(b) = {results['a_over_b']}x the time of one bare update_many")
    if "c_over_a" in results:
        print(f"  (c)/(a) = {results['c_over_a']}x: how much slower the Beanie loop is than the toolkit")
    if "status_seconds" in results:
        print(f"  run_migrations.py --status: {results['status_seconds']:.2f} s")
    print("  on the wire (PyMongo command monitoring):")
    for key in rows:
        row = results[key]
        if "round_trips_per_1000_docs" in row:
            print(f"  {'(' + key + ')':<10}{row['round_trips_per_1000_docs']:>9,.2f} round trips per 1,000 documents, "
                  f"{row['bytes_sent_per_doc']:,.2f} bytes sent and {row['bytes_received_per_doc']:,.2f} received "
                  "per document")


if __name__ == "__main__":
    sys.exit(main())
