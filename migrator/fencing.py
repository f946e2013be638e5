"""Fenced writes: a runner that lost the lock never writes again (CONTRACT, to be built).

Every write a lock holder makes to the data, its checkpoints and the changelog's final record goes through
`Fence.run(what, write)`, `write(session)` doing the work (session: None outside a transaction):
- TransactionFence (servers with transactions: replica sets, sharded clusters): one transaction that first
  touches the lock document by this runner's epoch (MigrationLock.touch), then runs `write`; the driver's
  with_transaction retries a TransientTransactionError and an UnknownTransactionCommitResult as MongoDB's
  drivers document.
- TimeFence (standalone servers, FerretDB): checks the lock, then runs `write` bounded by the time left on the
  lease (MigrationLock.remaining_s, via pymongo.timeout): fencing by time alone.
- NoFence: no lock held (the Python API's Batches): runs `write(None)`.
"""
