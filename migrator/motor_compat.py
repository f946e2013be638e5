"""Lets migration code written for Motor run unchanged on PyMongo's async API.

Motor returned the cursors of `aggregate`, `list_indexes` and `watch` at once (to iterate with
`async for` or `to_list`); PyMongo's async API returns a coroutine to await first. Motor took
`to_list(0)` for "all"; PyMongo wants `to_list(None)`. Everything else is passed through.
The PyMongo object stays reachable as `.delegate`, as in Motor.
"""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection


class _Cursor:
    def __init__(self, delegate):
        self.delegate = delegate

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.delegate, name)
        # find().sort(...).limit(...) chains return the cursor itself: keep the wrapper.
        if callable(attribute) and name in {"sort", "limit", "skip", "batch_size", "max_time_ms", "hint", "project"}:
            return lambda *a, **k: (attribute(*a, **k), self)[1]
        return attribute

    def __aiter__(self):
        return self.delegate.__aiter__()

    async def to_list(self, length: int | None = None):
        return await self.delegate.to_list(length or None)


class _PendingCursor:
    """A cursor to be opened by a coroutine: awaitable (PyMongo style) and iterable (Motor style)."""

    def __init__(self, opener):
        self._opener = opener
        self._cursor = None

    async def _open(self) -> _Cursor:
        if self._cursor is None:
            self._cursor = _Cursor(await self._opener())
        return self._cursor

    def __await__(self):
        return self._open().__await__()

    async def __aiter__(self):
        async for document in await self._open():
            yield document

    async def to_list(self, length: int | None = None):
        return await (await self._open()).to_list(length)

    async def __aenter__(self):
        return await self._open()

    async def __aexit__(self, *exc):
        if self._cursor is not None:
            await self._cursor.delegate.close()


_DEFERRED = {"aggregate", "list_indexes", "watch", "aggregate_raw_batches"}


class _Wrapper:
    def __init__(self, delegate):
        self.delegate = delegate

    def __getitem__(self, name: str) -> "MotorStyleCollection":
        return MotorStyleCollection(self.delegate[name])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attribute = getattr(self.delegate, name)
        if isinstance(attribute, AsyncCollection):  # db.chat_messages, or a sub-collection
            return MotorStyleCollection(attribute)
        if name in _DEFERRED:
            return lambda *a, **k: _PendingCursor(lambda: attribute(*a, **k))
        if name in {"find", "find_raw_batches"}:
            return lambda *a, **k: _Cursor(attribute(*a, **k))
        if name == "get_collection":
            return lambda *a, **k: MotorStyleCollection(attribute(*a, **k))
        return attribute

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.delegate!r})"


class MotorStyleCollection(_Wrapper):
    pass


class MotorStyleDatabase(_Wrapper):
    pass
