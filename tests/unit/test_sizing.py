"""Adaptive batches (migrator/sizing.py): the size of the next batch, from how long the last one took."""

from migrator.sizing import BatchSizer


def test_it_starts_at_the_largest_size_and_keeps_it_while_batches_are_quick():
    sizer = BatchSizer(1000, 50, target_ms=500)
    assert sizer.size == 1000
    assert sizer.after(0.01) == 1000  # clamped to --batch-size


def test_a_slow_batch_shrinks_it_at_once_by_target_over_duration_at_least_by_half():
    sizer = BatchSizer(1000, 50, target_ms=500)
    assert sizer.after(0.6) == 500  # a little slow: halved
    assert sizer.after(2.5) == 100  # five times the target: a fifth
    assert sizer.after(60) == 50  # never below --min-batch-size


def test_a_resent_batch_halves_it_however_quick_it_was():
    sizer = BatchSizer(1000, 50, target_ms=500)
    assert sizer.after(0.01, resent=True) == 500
    assert sizer.after(0.01, resent=True) == 250


def test_quick_batches_grow_it_back_doubling_and_a_fitting_one_keeps_it():
    sizer = BatchSizer(1000, 50, target_ms=500)
    sizer.after(10)
    assert sizer.size == 50
    assert [sizer.after(0.1) for _ in range(6)] == [100, 200, 400, 800, 1000, 1000]
    sizer.after(0.6)
    assert [sizer.after(0.3) for _ in range(3)] == [500, 500, 500]  # between half the target and the target


def test_off_with_a_target_of_0_or_no_room_between_the_bounds():
    off = BatchSizer(1000, 50, target_ms=0)
    assert [off.after(30), off.after(0.01, resent=True)] == [1000, 1000]
    fixed = BatchSizer(20, 50, target_ms=500)  # --batch-size under the default --min-batch-size: that size
    assert (fixed.smallest, fixed.after(30), fixed.adapts) == (20, 20, False)



def test_a_walk_whose_batches_each_scan_the_collection_keeps_the_largest_size():
    sizer = BatchSizer(1000, 50, target_ms=500)
    sizer.after(5)
    sizer.walk(scales=False)
    assert (sizer.size, sizer.after(5), sizer.adapts) == (1000, 1000, False)
    sizer.walk(scales=True)
    assert sizer.after(5) == 100
