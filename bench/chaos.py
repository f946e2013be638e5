"""What --chaos costs on top of the self-test: `--selftest add_metadata_to_chat_messages`, without and with faults.

    python bench/chaos.py [--docs N] [--faults K] [--json]

Loads chat messages shaped like real ones (bench/backfill.py's, 10% already holding metadata) into a fresh
database, enough that N of them (default 2,000) are ones the migration changes, then measures on the same
server, one after the other, as whole processes (start-up, sampling, scratch copies and their removal included):
  (a) `python migrations/run_migrations.py --selftest add_metadata_to_chat_messages --sample N`;
  (b) the same with `--chaos --faults K` (default 20), whose JSON report says its fault points and its own time.
It prints both times, (b)/(a), the seconds each fault point adds ((b) - (a), over the points) and whether (b) is
under a minute: issue 25's target, a 2,000-document sample with 20 fault points on the local server.

The server is MONGODB_URL when set, else a fresh local FerretDB on a free port (as bench/backfill.py starts one).
"""

import argparse
import json
import math
import os
import signal
import sys
import uuid

from backfill import REPO, bench_server, load, machine, say, timed_process
from pymongo import MongoClient

MIGRATION = "add_metadata_to_chat_messages"
TARGET_S = 60.0
WITH_METADATA_EVERY = 10  # bench/backfill.py's load: every 10th message holds metadata already


def selftest(url: str, name: str, sample: int, faults: int | None) -> tuple[float, dict | None]:
    """The self-test as a whole process: its wall time, and with faults its JSON report."""
    env = {**os.environ, "MONGODB_URL": url, "MONGODB_DATABASE_NAME": name}
    chaos = ["--chaos", "--faults", str(faults), "--json"] if faults else []
    command = [sys.executable, str(REPO / "migrations" / "run_migrations.py"), "--selftest", MIGRATION,
               "--sample", str(sample), *chaos]
    seconds, _, output = timed_process(command, env)
    if not faults:
        return seconds, None
    report = json.loads(output[output.index("{"):output.rindex("}") + 1])  # the log lines around it are not JSON
    return seconds, report


def main() -> int:
    parser = argparse.ArgumentParser(description="Time --selftest with and without --chaos on a sample of N.")
    parser.add_argument("--docs", type=int, default=2000, help="the sample: messages the migration changes "
                        "(default: 2,000)")
    parser.add_argument("--faults", type=int, default=20, help="fault points of --chaos (default: 20)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    if args.docs < 1 or args.faults < 1:
        parser.error("--docs and --faults must be positive")

    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # drop the database on the way out
    with bench_server() as (url, client, server_label):
        results = measure(args, url, client, server_label)

    if args.json:
        print(json.dumps(results))
    else:
        print_table(results)
    return 0


def measure(args: argparse.Namespace, url: str, client: MongoClient, server_label: str) -> dict:
    name = f"benchchaos{uuid.uuid4().hex[:6]}"
    loaded = math.ceil(args.docs * WITH_METADATA_EVERY / (WITH_METADATA_EVERY - 1)) + 1  # N lacking metadata
    results: dict = {"docs": args.docs, "loaded": loaded, "faults": args.faults, "server": server_label,
                     "machine": machine()}
    try:
        say(f"bench: {loaded:,} messages ({args.docs:,} to change) on {server_label} ...")
        load(client, name, loaded)
        load_before = os.getloadavg()[0]
        say("bench: (a) --selftest ...")
        plain, _ = selftest(url, name, args.docs, None)
        say(f"bench: (a) {plain:.2f} s; (b) --selftest --chaos --faults {args.faults} ...")
        chaotic, report = selftest(url, name, args.docs, args.faults)
        assert report is not None  # asked with --json
        found = report["chaos"]
        points = len(found["points"])
        results.update({
            "a_seconds": round(plain, 3), "b_seconds": round(chaotic, 3), "b_over_a": round(chaotic / plain, 2),
            "points": points, "passed": found["passed"], "batch_size": found["batch_size"], "writes": found["writes"],
            "chaos_seconds": found["seconds"],
            "seconds_per_point": round((chaotic - plain) / points, 3) if points else None,
            "under_target": chaotic < TARGET_S,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
    finally:
        client.drop_database(name)
    return results


def print_table(results: dict) -> None:
    print(f"{results['docs']:,}-message sample ({results['loaded']:,} loaded), {results['server']}; "
          f"{results['machine']}")
    print(f"  (a) --selftest {MIGRATION} --sample {results['docs']}: {results['a_seconds']:>8.2f} s")
    print(f"  (b) the same with --chaos --faults {results['faults']}: {results['b_seconds']:>8.2f} s "
          f"({results['points']} fault points, {'all passed' if results['passed'] else 'SOME FAILED'}; "
          f"batches of {results['batch_size']}, writes {results['writes']}; "
          f"the drill's own {results['chaos_seconds']} s)")
    per_point = results["seconds_per_point"]
    print(f"  (b)/(a) = {results['b_over_a']}x; {per_point if per_point is not None else '-'} s per fault point "
          "((b) - (a), over the points)")
    verdict = "under" if results["under_target"] else "NOT under"
    print(f"  (b) is {verdict} {TARGET_S:.0f} s (issue 25's target); load average {results['load_average'][0]} "
          f"then {results['load_average'][1]}")


if __name__ == "__main__":
    sys.exit(main())
