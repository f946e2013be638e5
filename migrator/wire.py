"""Faults on the wire, in this process: what --selftest --chaos does to a migration's run (migrator.chaos).

`FaultProxy(server)` listens on 127.0.0.1 (a port of its own, on the running event loop) and passes every byte
between a client and the server, reading MongoDB's wire framing: a 16-byte header (length, requestID,
responseTo, opCode), then, in an OP_MSG, a body that names the command and its collection. It records the write
commands it passes (`writes`) and acts on the one that `arm(point)` names:
    cut         the connection is closed before the command reaches the server (it is not applied)
    lost_reply  the command is applied, then the connection is closed instead of replying
    kill        the command is applied, then every connection is cut and new ones are refused until `revive()`,
                as if the process had been killed right after it: `on_kill` is called (the caller cancels the run)
A write to a collection outside `only` (the scratch copies' prefix) is answered with an error, never forwarded.
The client connects with `directConnection=true`: to a replica set's primary, as the driver had found it, so that
the driver's own retries (a retryable write sent again after a lost reply) are what they would be in production.
TLS to the server is the client's own (its SSL context); between the client and the proxy, in this process, none.
"""

import asyncio
import ssl
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

import bson

OP_MSG = 2013
HEADER = struct.Struct("<iiii")
CUT, LOST_REPLY, KILL = "cut", "lost_reply", "kill"
KINDS = (CUT, LOST_REPLY, KILL)
WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify", "findandmodify", "create",
                            "drop", "createIndexes", "dropIndexes", "collMod", "renameCollection"})
NEVER = frozenset({"dropDatabase", "applyOps", "createUser", "updateUser", "dropUser", "dropAllUsersFromDatabase",
                   "grantRolesToUser", "createRole", "dropRole", "mapReduce"})  # refused whatever they name
REFUSED = 13  # Unauthorized: what a write outside the scratch copies is answered with


@dataclass(frozen=True)
class Write:
    """One write command as the proxy saw it: its name, its collection and its rank among the same (1-based)."""
    command: str
    collection: str
    nth: int


@dataclass(frozen=True)
class Point:
    """A fault at one write command."""
    write: Write
    kind: str


def body_of(op_code: int, payload: bytes) -> dict | None:
    """The body section of an OP_MSG (its command, or a reply's document); None for anything else."""
    if op_code != OP_MSG or len(payload) < 5 or payload[4] != 0:  # flagBits, then a kind-0 body section
        return None
    length = struct.unpack_from("<i", payload, 5)[0]
    return bson.decode(payload[5:5 + length])


def op_msg(request_id: int, response_to: int, document: dict, rest: bytes = b"", flags: int = 0) -> bytes:
    """An OP_MSG whose body section is `document`, followed by `rest` (its other sections, as they came)."""
    payload = struct.pack("<I", flags) + b"\x00" + bson.encode(document) + rest
    return HEADER.pack(HEADER.size + len(payload), request_id, response_to, OP_MSG) + payload


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, int, int, int]:
    """(the whole message, requestID, responseTo, opCode)."""
    header = await reader.readexactly(HEADER.size)
    length, request_id, response_to, op_code = HEADER.unpack(header)
    return header + await reader.readexactly(length - HEADER.size), request_id, response_to, op_code


def written(body: dict | None) -> tuple[str, str] | None:
    """(command, collection) of a command that writes; None for a read (or what is not a command)."""
    if not body:
        return None
    name = next(iter(body))
    target = body.get(name)
    if name == "renameCollection" and isinstance(target, str):
        return name, target.partition(".")[2]
    if name == "bulkWrite":  # a client's: its namespaces are in a section of their own, so it cannot be told where
        return name, "(the collections of a client bulkWrite)"
    if name == "aggregate" and any(isinstance(stage, dict) and ({"$out", "$merge"} & stage.keys())
                                   for stage in body.get("pipeline", [])):
        return name, str(target)
    return (name, target) if name in WRITE_COMMANDS and isinstance(target, str) else None


def outside(body: dict | None, only: str) -> str | None:
    """What a command would write outside the collections named `only...` (a collection, or the command itself where
    it writes no one collection: dropDatabase, applyOps, a user); None when it writes none or only those."""
    if not body:
        return None
    name = next(iter(body))
    if name in NEVER:
        return f"({name})"
    found = written(body)
    if found is None:
        return None
    targets = [found[1]]
    if name == "renameCollection":
        targets.append(str(body.get("to", "")).partition(".")[2])
    for stage in body.get("pipeline", []) if name == "aggregate" else []:
        for key, spec in stage.items() if isinstance(stage, dict) else ():
            target = spec.get("into", spec.get("coll")) if isinstance(spec, dict) else spec
            if key in ("$out", "$merge"):
                targets.append(str(target.get("coll")) if isinstance(target, dict) else str(target))
    return next((target for target in targets if not str(target).startswith(only)), None)


async def pump_both(to_server: Coroutine, to_client: Coroutine, *writers: asyncio.StreamWriter) -> None:
    """Both directions of a proxied connection until either ends (a side closed it, or a fault), then both closed."""
    pumps = [asyncio.ensure_future(to_server), asyncio.ensure_future(to_client)]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
            pump.add_done_callback(_quietly)
        for writer in writers:
            writer.close()


def _quietly(pump: asyncio.Future) -> None:
    """A pump ends when either side closes (IncompleteReadError, ConnectionResetError): nothing to report."""
    if not pump.cancelled():
        pump.exception()


def _refusal(only: str, collection: str) -> dict:
    return {"ok": 0.0, "code": REFUSED, "codeName": "Unauthorized",
            "errmsg": f"the chaos check writes only scratch copies ({only}*), not {collection}"}


class FaultProxy:
    """`async with FaultProxy((host, port), tls=context, only=prefix) as proxy:` then clients to `proxy.address`."""

    def __init__(self, server: tuple[str, int], tls: ssl.SSLContext | None = None, only: str = "",
                 on_kill: Callable[[], object] | None = None):
        self.server, self.tls, self.only = server, tls, only
        self.on_kill = on_kill
        self.writes: list[Write] = []  # every write command passed since `arm` or `record`
        self.armed: Point | None = None
        self.fired = False
        self.killed = False
        self._ranks: dict[tuple[str, str], int] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._listener: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None
        return self._listener.sockets[0].getsockname()[:2]

    async def __aenter__(self) -> "FaultProxy":
        self._listener = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info) -> None:
        assert self._listener is not None
        self._listener.close()
        self._cut_all()
        await self._listener.wait_closed()

    def arm(self, point: Point | None) -> None:
        """Count the writes from here on, and act on `point` (None: pass everything)."""
        self.armed, self.fired, self.writes, self._ranks = point, False, [], {}

    def revive(self) -> None:
        """After a kill: take connections again (a fresh process), with no fault armed."""
        self.killed = False
        self.arm(None)

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # nothing buffered goes out after a kill

    def _seen(self, body: dict | None) -> Write | None:
        found = written(body)
        if found is None:
            return None
        self._ranks[found] = self._ranks.get(found, 0) + 1
        write = Write(*found, self._ranks[found])
        self.writes.append(write)
        return write

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.killed:
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(
                *self.server, ssl=self.tls, server_hostname=self.server[0] if self.tls else None)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, server_writer))
        waiting: dict[int, str] = {}  # requestID -> the fault that acts on its reply

        async def to_server() -> None:
            while True:
                message, request_id, _, op_code = await read_message(client_reader)
                body = body_of(op_code, message[HEADER.size:])
                write = self._seen(body)
                refused = outside(body, self.only)
                if refused is not None:
                    client_writer.write(op_msg(0, request_id, _refusal(self.only, refused)))
                    continue
                if write is not None and self.armed is not None and self.armed.write == write:
                    self.fired = True
                    if self.armed.kind == CUT:
                        client_writer.transport.abort()
                        server_writer.transport.abort()
                        return
                    waiting[request_id] = self.armed.kind
                server_writer.write(message)

        async def to_client() -> None:
            while True:
                message, _, response_to, _ = await read_message(server_reader)
                kind = waiting.pop(response_to, None)
                if kind == LOST_REPLY:
                    return
                if kind == KILL:
                    self.killed = True
                    self._cut_all()
                    if self.on_kill is not None:
                        self.on_kill()
                    return
                client_writer.write(message)

        try:
            await pump_both(to_server(), to_client(), client_writer, server_writer)
        finally:
            self._writers.difference_update((client_writer, server_writer))
