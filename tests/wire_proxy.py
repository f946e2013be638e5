"""A fault-injecting proxy between the toolkit and the test server: what a replica set does to a run,
shown on machines that have only a standalone server.

It reads MongoDB's wire framing (a 16-byte header: length, requestID, responseTo, opCode; OP_MSG's
body section names the command and its collection; the framing is migrator/wire.py's, the one --chaos uses) and
passes every byte through, except for the commands a Fault matches:
    error       answer with an error document instead of forwarding (NotWritablePrimary, ...)
    drop        close the client's connection without forwarding (a connection lost on the way)
    lose_reply  forward, let the server apply it, then close the client's connection instead of replying
    delay       forward, and hold the reply back for `seconds`
    hold        hold the command itself for `seconds`, then forward it (a write held on the network: it lands late,
                even when the client gave up on it meanwhile)
    silence     forward, and never reply (the connection stays open: a reply that never comes)
    wce         forward, then add a writeConcernError (`code`) to the server's reply (the write was applied)
    patch       forward, then pass the reply's body through `patch` (e.g. shift hello's localTime)

A fault can also wait for another (`after=other`: it arms once `other` has fired), look at the command's body
(`match=lambda body: ...`), and carry error labels (`labels`; an error reply is RetryableWriteError by default).

`WireProxy(host, port, replica_set=True)` presents the server as a replica set's primary, so that the client takes
its transactional path on a server without transactions (FerretDB): `hello` says setName, isWritablePrimary and
logicalSessionTimeoutMinutes; the fields of a transaction or a retryable write that the server refuses (txnNumber,
startTransaction, autocommit, a transaction's readConcern) are stripped from what is forwarded; commitTransaction
and abortTransaction are answered by the proxy itself (a Fault still hits them first: an error with the label
`TransientTransactionError` or `UnknownTransactionCommitResult`). replSetGetStatus is answered by the proxy too, as a
healthy set of two members (itself as PRIMARY and one SECONDARY, both at the current optime): a Fault still hits it
first (error: e.g. Unauthorized, code 13, with `labels=()`; patch: applied to that answer, e.g. `lagging(14)`, a
secondary 14 s behind, for the first `times` asks). `proxy.bodies` records every command's body as
the client sent it. It proves the protocol, not isolation: every statement is applied when it is forwarded, so an
aborted "transaction" leaves its writes; only a real replica set shows that an abort leaves nothing.
The schema's build (tests/test_schema_build.py) needs nothing more of this mode: FerretDB takes createIndexes'
`commitQuorum` and ignores it, so it is forwarded as it is; collMod (hiding an index before a drop) it refuses, and a
test patches that reply to `{"ok": 1}` (action patch), with buildInfo patched to MongoDB 7.0's, to show the protocol.

    with WireProxy("127.0.0.1", 27017) as proxy:
        proxy.add(Fault("update", "chat_messages", nth=3, times=2, action="error", code=10107))
        ... run the toolkit against proxy.url ...
        proxy.fired  # how many commands each fault hit

The proxy runs its own event loop in a thread, so that synchronous tests drive subprocesses through it.
"""

import asyncio
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from migrator.wire import HEADER, body_of, op_msg, pump_both, read_message

CODE_NAMES = {6: "HostUnreachable", 7: "HostNotFound", 13: "Unauthorized", 89: "NetworkTimeout",
              91: "ShutdownInProgress", 189: "PrimarySteppedDown", 10107: "NotWritablePrimary",
              11600: "InterruptedAtShutdown", 11602: "InterruptedDueToReplStateChange",
              13435: "NotPrimaryNoSecondaryOk", 64: "WriteConcernFailed"}


@dataclass
class Fault:
    command: str  # the command's name, e.g. "update", "insert", "find", "hello"
    collection: str | None = None  # the collection it names; None: any
    nth: int = 1  # the first matching command it hits (1 = the next one)
    times: int = 1  # how many matching commands in a row it hits
    action: str = "error"  # error, drop, lose_reply, delay
    code: int = 10107
    seconds: float = 0.0  # for delay and hold
    labels: tuple[str, ...] = ("RetryableWriteError",)  # of an error reply
    patch: Callable[[dict], dict] | None = None  # for patch
    after: "Fault | None" = None  # armed once this one has fired
    match: Callable[[dict], bool] | None = None  # and the command's body passes this
    matches: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def hits(self, command: str, collection, body: dict | None = None) -> bool:
        if command != self.command or (self.collection is not None and collection != self.collection):
            return False
        if self.after is not None and not self.after.fired:
            return False
        if self.match is not None and not self.match(body or {}):
            return False
        self.matches += 1
        if self.nth <= self.matches < self.nth + self.times:
            self.fired += 1
            return True
        return False


def _command_of(op_code: int, payload: bytes) -> tuple[str, object]:
    """(command name, collection) of an OP_MSG; ("", None) for anything else."""
    body = body_of(op_code, payload)
    if body is None:
        return "", None
    name = next(iter(body), "")
    return name, body.get(name)


def _error_reply(request_id: int, fault: "Fault") -> bytes:
    code = fault.code
    document = {"ok": 0.0, "errmsg": f"injected by the test proxy: {CODE_NAMES.get(code, 'error')}", "code": code,
                "codeName": CODE_NAMES.get(code, "Error"), "errorLabels": list(fault.labels)}
    return op_msg(0, request_id, document)


def _patched_reply(message: bytes, fault: "Fault") -> bytes:
    """The server's reply with its body changed by the fault (wce: a writeConcernError added; patch: fault.patch)."""
    _, request_id, response_to, op_code = HEADER.unpack_from(message)
    body = body_of(op_code, message[HEADER.size:])
    if body is None:
        return message
    if fault.action == "wce":
        body["writeConcernError"] = {"code": fault.code, "codeName": CODE_NAMES.get(fault.code, "Error"),
                                     "errmsg": "injected by the test proxy: waiting for replication timed out",
                                     "errInfo": {"wtimeout": True}}
        if fault.labels:
            body["errorLabels"] = list(fault.labels)
    elif fault.patch is not None:
        body = fault.patch(body)
    return op_msg(request_id, response_to, body)


TRANSACTION_FIELDS = ("txnNumber", "startTransaction", "autocommit")
ANSWERED = ("commitTransaction", "abortTransaction", "replSetGetStatus")  # by the proxy itself in replica_set mode
HELLO = ("hello", "isMaster", "ismaster")


def lagging(seconds: float) -> Callable[[dict], dict]:
    """A patch of the proxy's replSetGetStatus answer: its secondaries `seconds` behind the primary."""
    def patch(status: dict) -> dict:
        for member in status["members"]:
            if member["stateStr"] == "SECONDARY":
                member["optimeDate"] -= timedelta(seconds=seconds)
        return status
    return patch


def _stripped(message: bytes, body: dict) -> bytes:
    """The command without what a server without transactions refuses (its other sections kept as they are)."""
    _, request_id, response_to, _ = HEADER.unpack_from(message)
    payload = message[HEADER.size:]
    flags, length = struct.unpack_from("<Ixi", payload)  # flagBits, the body section's kind, its length
    in_transaction = "autocommit" in body
    kept = {key: value for key, value in body.items()
            if key not in TRANSACTION_FIELDS and not (in_transaction and key == "readConcern")}
    return op_msg(request_id, response_to, kept, payload[5 + length:], flags=flags)


class WireProxy:
    def __init__(self, upstream_host: str, upstream_port: int, replica_set: bool = False):
        self.upstream = (upstream_host, upstream_port)
        self.replica_set = replica_set
        self.faults: list[Fault] = []
        self.commands: list[tuple[str, object]] = []  # every command seen, in order
        self.bodies: list[dict] = []  # in replica_set mode: every command's body, as the client sent it
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, command: str, collection=None) -> int:
        with self._lock:
            return sum(1 for name, target in self.commands
                       if name == command and (collection is None or target == collection))

    def __enter__(self) -> "WireProxy":
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="wire-proxy", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the wire proxy did not start")
        return self

    def __exit__(self, *exc) -> None:
        async def shut() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _as_primary(self, body: dict) -> dict:
        me = f"127.0.0.1:{self.port}"
        return {**body, "setName": "rs-proxy", "isWritablePrimary": True, "ismaster": True, "secondary": False,
                "hosts": [me], "primary": me, "me": me, "logicalSessionTimeoutMinutes": 30}

    def _answer(self, name: str, fault: Fault | None) -> dict:
        """What the proxy answers itself in replica_set mode (ANSWERED), with a patch fault's change."""
        if name != "replSetGetStatus":
            return {"ok": 1.0}
        now = datetime.now(UTC).replace(microsecond=0)
        answer = {"set": "rs-proxy", "date": now, "myState": 1, "ok": 1.0, "members": [
            {"_id": 0, "name": f"127.0.0.1:{self.port}", "health": 1.0, "state": 1, "stateStr": "PRIMARY",
             "optimeDate": now, "self": True},
            {"_id": 1, "name": "127.0.0.1:1", "health": 1.0, "state": 2, "stateStr": "SECONDARY", "optimeDate": now}]}
        return fault.patch(answer) if fault is not None and fault.patch is not None else answer

    def _fault_for(self, op_code: int, payload: bytes) -> Fault | None:
        command, collection = _command_of(op_code, payload)
        wanted = self.replica_set or any(f.match for f in self.faults)
        body = body_of(op_code, payload) if wanted else None
        with self._lock:
            self.commands.append((command, collection))
            if self.replica_set and body is not None:
                self.bodies.append(body)
            hit = [fault for fault in self.faults if fault.hits(command, collection, body)]  # each counts every command
            return hit[0] if hit else None

    async def _client(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        pending: dict[int, Fault] = {}  # requestID -> the fault that acts on its reply
        hellos: set[int] = set()  # requestIDs of hello commands, whose replies say "primary" in replica_set mode

        async def to_server() -> None:
            while True:
                message, request_id, _, op_code = await read_message(client_reader)
                fault = self._fault_for(op_code, message[HEADER.size:])
                body = body_of(op_code, message[HEADER.size:]) if self.replica_set else None
                if body is not None:
                    name = next(iter(body), "")
                    if name in ANSWERED and (fault is None or fault.action == "patch"):
                        client_writer.write(op_msg(0, request_id, self._answer(name, fault)))
                        continue
                    if name in HELLO:
                        hellos.add(request_id)
                    if any(key in body for key in TRANSACTION_FIELDS):
                        message = _stripped(message, body)
                if fault is None:
                    server_writer.write(message)
                elif fault.action == "error":
                    client_writer.write(_error_reply(request_id, fault))
                elif fault.action == "drop":
                    raise ConnectionResetError("dropped by the test proxy")
                elif fault.action == "hold":  # this connection's later commands wait behind it, as on TCP
                    await asyncio.sleep(fault.seconds)
                    server_writer.write(message)
                else:  # lose_reply, delay, silence, wce, patch: act when the reply comes
                    pending[request_id] = fault
                    server_writer.write(message)

        async def to_client() -> None:
            while True:
                message, _, response_to, _ = await read_message(server_reader)
                fault = pending.pop(response_to, None)
                if fault is not None and fault.action == "lose_reply":
                    raise ConnectionResetError("reply lost by the test proxy")
                if fault is not None and fault.action == "silence":
                    continue
                if fault is not None and fault.action == "delay":
                    await asyncio.sleep(fault.seconds)
                if fault is not None and fault.action in ("wce", "patch"):
                    message = _patched_reply(message, fault)
                if response_to in hellos:
                    hellos.discard(response_to)
                    message = _patched_reply(message, Fault("hello", action="patch", patch=self._as_primary))
                client_writer.write(message)

        await pump_both(to_server(), to_client(), client_writer, server_writer)
