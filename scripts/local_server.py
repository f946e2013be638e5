"""Our FerretDB on a free loopback port with its own data folder: for the tests and the benchmarks.

    server = LocalServer(build_local_server(), data_dir); server.start(); ...; server.stop()
"""

import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_local_server() -> str:
    """The path of the localdb binary, built (cached) by scripts/local-db.sh; RuntimeError if Go fails."""
    built = subprocess.run(["bash", str(REPO / "scripts" / "local-db.sh"), "build"], capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"could not build the local FerretDB server:\n{built.stderr}")
    return built.stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"FerretDB exited at start:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"FerretDB did not listen on {port} within 30 s:\n{log.read_text()}")


class LocalServer:
    """Our FerretDB, started and stopped by its user (a test session, a benchmark)."""

    def __init__(self, binary: str, data: Path, port: int | None = None):
        self.binary, self.data = binary, data
        self.port = port or _free_port()
        self.log = data.parent / f"ferretdb-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = process = subprocess.Popen(
                [self.binary, "-listen", f"127.0.0.1:{self.port}", "-data", str(self.data)],
                stdout=log, stderr=subprocess.STDOUT)
        _wait_listening(self.port, process, self.log)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # a server wedged by a killed client ignores SIGTERM
                self.process.kill()
                self.process.wait()
