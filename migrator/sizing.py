"""Adaptive batches (migrator.batches): each batch sized so that it takes about --target-batch-ms.

A batch holds the server (and, with transactions, its locks) for as long as it takes; under live traffic a
fixed --batch-size is either too small on a quiet server or too long on a busy one. The size starts at
--batch-size (the largest allowed: a quick server keeps it), shrinks at once when a batch is slow (scaled by
target / duration, at least halved) or had to be sent again (a transient error, a write-concern timeout: the
server is struggling), and grows back, doubling, while batches take under half the target: the band between
half and the whole target is left alone, so that a size that fits does not oscillate. It stays within
[--min-batch-size, --batch-size]. --target-batch-ms 0 keeps --batch-size throughout.

Only the number of documents per batch changes: each batch is still checkpointed whole (its last `_id` and
counts), so a run resumed at another size goes on from the same place. The server's limit of statements per bulk
(profile.max_bulk, FerretDB's 50) is kept by the bulks within a batch (migrator.batch_paths), whatever its size.

A walk whose batches each cost a scan of the collection whatever their size (FerretDB's range path, and its
batches that check the filter again) keeps --batch-size: smaller batches would only mean more scans.
"""

DEFAULT_TARGET_MS = 500
DEFAULT_MIN_SIZE = 50
GROWTH = 2  # at most, per quick batch


class BatchSizer:
    """`size`: the documents the next batch takes; `after(duration_s, resent)` once each batch is done."""

    def __init__(self, largest: int, smallest: int = DEFAULT_MIN_SIZE, target_ms: float = DEFAULT_TARGET_MS):
        self.largest = largest
        self.smallest = min(smallest, largest)
        self.target_s = target_ms / 1000
        self.size = largest
        self.scales = True  # a batch's time grows with its size

    @property
    def adapts(self) -> bool:
        return self.target_s > 0 and self.smallest < self.largest and self.scales

    def walk(self, scales: bool) -> None:
        """A walk starts; `scales`: False when its batches take as long whatever their size (they keep the largest)."""
        self.scales = scales
        if not scales:
            self.size = self.largest

    def after(self, duration_s: float, resent: bool = False) -> int:
        """The size of the next batch, given how long this one took and whether it was sent again."""
        if not self.adapts:
            return self.size
        if resent:
            wanted = self.size / 2
        elif duration_s > self.target_s:
            wanted = min(self.size / 2, self.size * self.target_s / duration_s)
        elif duration_s < self.target_s / GROWTH:
            wanted = self.size * GROWTH
        else:
            wanted = self.size
        self.size = max(self.smallest, min(self.largest, int(wanted)))
        return self.size
