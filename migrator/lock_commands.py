"""The commands on the lock document, built for the server's clock or for a time read from it (pure functions).

With `now` None the server decides expiry on its own clock, atomically (`$$NOW` in an `$expr` filter and in
pipeline updates: MongoDB). With `now` (the server's time read by `hello`: FerretDB, which has neither), the
filters compare with it, and a margin keeps a renewal and a takeover built from clock reads one round trip apart
from both matching: a renewal needs more than `margin_s` left on the lease, a takeover waits `margin_s` past its
end. Each function returns (filter, update) for update_one / find_one_and_update on `migrations_lock`.
"""

import os
import secrets
from datetime import datetime, timedelta

from migrator.clock import as_utc
from migrator.liveness import HOST, PID_SPACE

LOCK_ID = "lock"
THE_LOCK = {"_id": LOCK_ID}


def new_owner() -> str:
    """This runner's id: host, pid and a random part, so that its writes are recognised as its own."""
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def describe(lock: dict) -> str:
    return f"{lock['owner']} since {as_utc(lock['acquired_at']):%Y-%m-%d %H:%M:%S} UTC"


def last_renewed(lock: dict) -> datetime:
    """When its holder last renewed the lease (taking it, for one not renewed yet or of the previous version)."""
    return as_utc(lock.get("renewed_at") or lock["acquired_at"])


def is_free(lock: dict | None, now: datetime, margin_s: float = 0.0) -> bool:
    """Released, or its lease ran out (`margin_s` ago) by the server's time `now`."""
    return lock is None or lock.get("released_at") is not None or (
        as_utc(lock["expires_at"]) <= as_utc(now) - timedelta(seconds=margin_s))


def _live(now: datetime | None, margin_s: float = 0.0) -> dict:
    """The lease has more than `margin_s` left."""
    if now is None:
        return {"$expr": {"$gt": ["$expires_at", "$$NOW"]}}
    return {"expires_at": {"$gt": now + timedelta(seconds=margin_s)}}


def _free(now: datetime | None, margin_s: float = 0.0) -> dict:
    """Released, or its lease ran out at least `margin_s` ago."""
    if now is None:
        ran_out: dict = {"$expr": {"$lte": ["$expires_at", "$$NOW"]}}
    else:
        ran_out = {"expires_at": {"$lte": now - timedelta(seconds=margin_s)}}
    return {"$or": [{"released_at": {"$ne": None}}, ran_out]}


def _set(now: datetime | None, fields: dict, lease_s: float | None = None, times: tuple[str, ...] = ()) -> dict | list:
    """An update setting `fields`, `times` to now and, with `lease_s`, expires_at to now + lease."""
    if now is None:
        stage: dict = {key: {"$literal": value} for key, value in fields.items()}
        stage.update({key: "$$NOW" for key in times})
        if lease_s is not None:
            stage["expires_at"] = {"$add": ["$$NOW", round(lease_s * 1000)]}
        return [{"$set": stage}]
    values = {**fields, **{key: now for key in times}}
    if lease_s is not None:
        values["expires_at"] = now + timedelta(seconds=lease_s)
    return {"$set": values}


def held_by(epoch: int, owner: str) -> dict:
    return {"_id": LOCK_ID, "epoch": epoch, "owner": owner, "released_at": None}


def new_lock(owner: str, lease_s: float, now: datetime, took_over: str | None = None) -> dict:
    """Epoch 1, inserted when there is no lock document: a duplicate key means another runner was first."""
    return {"_id": LOCK_ID, "epoch": 1, "owner": owner, "acquired_at": now,
            "expires_at": now + timedelta(seconds=lease_s), "released_at": None, "seq": 0, "took_over": took_over,
            "pid_space": PID_SPACE}


def takeover(read: dict, owner: str, lease_s: float, now: datetime | None, margin_s: float) -> tuple[dict, dict | list]:
    """Take the lock as read (its epoch), if it is still released or expired: epoch + 1, this owner."""
    took_over = read.get("owner") if read.get("released_at") is None else None
    fields = {"epoch": read["epoch"] + 1, "owner": owner, "released_at": None, "took_over": took_over,
              "pid_space": PID_SPACE}
    return ({"_id": LOCK_ID, "epoch": read["epoch"], **_free(now, margin_s)},
            _set(now, fields, lease_s, times=("acquired_at",)))


def renewal(epoch: int, owner: str, lease_s: float, now: datetime | None, margin_s: float) -> tuple[dict, dict | list]:
    """Extend this holder's lease, if it is still this holder's and not (nearly) run out."""
    return {**held_by(epoch, owner), **_live(now, margin_s)}, _set(now, {}, lease_s, times=("renewed_at",))


def stamp(epoch: int, owner: str, now: datetime | None, margin_s: float = 0.0) -> tuple[dict, dict]:
    """The next number of the database's sequence, for a changelog entry of this live holder (with, where the
    clock is read by `hello`, the renewal's margin left: a takeover cannot match meanwhile)."""
    return {**held_by(epoch, owner), **_live(now, margin_s)}, {"$inc": {"seq": 1}}


def touch(epoch: int, owner: str, now: datetime | None) -> tuple[dict, dict]:
    """A write to the lock document inside a transaction: it conflicts with any takeover."""
    return {**held_by(epoch, owner), **_live(now)}, {"$inc": {"touches": 1}}


def release(epoch: int, owner: str, now: datetime | None) -> tuple[dict, dict | list]:
    return held_by(epoch, owner), _set(now, {}, times=("released_at",))


def force_unlock(epoch: int, by: str, now: datetime | None) -> tuple[dict, dict | list]:
    """Free the lock of this epoch, whoever holds it: the epoch moves on, so its holder's renewals fail."""
    return ({"_id": LOCK_ID, "epoch": epoch},
            _set(now, {"epoch": epoch + 1, "owner": f"force-unlock by {by}", "took_over": None},
                 times=("acquired_at", "expires_at", "released_at")))
