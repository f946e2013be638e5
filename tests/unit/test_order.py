"""The order migrations run in (migrator/order.py), and the `Date:` it is read from; no server."""

from datetime import datetime

import pytest

from conftest import a_migration, names
from migrator.commands.authoring import date_to_write
from migrator.errors import MigrationError
from migrator.migration import parse_date
from migrator.order import order_migrations

m = a_migration


def in_order(migrations, broken=()) -> list[str]:
    """The names in order_migrations's order, when every migration has its place in it."""
    ordered, unplaced = order_migrations(migrations, broken)
    assert not unplaced
    return names(ordered)


def test_order_is_by_date_then_name():
    ordered = in_order([m("b", "2025-02-01"), m("c"), m("a", "2025-03-01"), m("aa")])
    assert ordered == ["aa", "c", "b", "a"]


def test_a_dependency_moves_a_migration_after_what_it_needs():
    ordered = in_order([m("early", "2025-01-01", ["late"]), m("late", "2025-06-01"), m("mid", "2025-03-01")])
    assert ordered == ["mid", "late", "early"]


CYCLE = "migrations depend on each other in a cycle: a, b"


@pytest.mark.parametrize("migrations, why, ordered", [
    ([m("a"), m("a")], {"a": "two migrations are named 'a'"}, ["a"]),
    ([m("a", depends_on=["ghost"]), m("b", depends_on=["a"])], {"a": "depends on ghost, which does not exist"}, ["b"]),
    ([m("a", depends_on=["b"]), m("b", depends_on=["a"]), m("c")], {"a": CYCLE, "b": CYCLE}, ["c"]),
])
def test_what_cannot_be_ordered_is_set_aside_with_why_and_the_rest_is_ordered(migrations, why, ordered):
    placed, unplaced = order_migrations(migrations)
    assert {migration.name: reason for migration, reason in unplaced} == why
    assert names(placed) == ordered


def test_a_dependency_on_a_broken_file_is_left_out_of_the_order():
    assert in_order([m("needs_broken", "2025-01-01", ["broken"]), m("b", "2025-02-01")], broken={"broken"}) == [
        "needs_broken", "b"]


def test_parse_date_takes_a_date_or_a_date_and_time():
    assert parse_date("2026-11-27") == datetime(2026, 11, 27)
    assert parse_date("2026-11-27 14:05") == parse_date("2026-11-27T14:05") == datetime(2026, 11, 27, 14, 5)
    assert parse_date("2026-11-27 14:05:09") == parse_date("2026-11-27T14:05:09") == datetime(2026, 11, 27, 14, 5, 9)
    for bad in ("2026-13-45", "2026-11-27 14:05:60", "2026-11-27 14:05:0", "2026-11-27 14", " 2026-11-27",
                "20261127", "2026-W48-5"):
        assert parse_date(bad) is None, bad


def test_migrations_written_in_the_same_minute_run_in_the_order_they_were_written():
    """`--new` writes the time to the second; within one second, a second after the latest: never by name."""
    written: list = []
    now = datetime(2026, 12, 5, 3, 30, 20)
    for name, second in (("zz_first", 0), ("mm_second", 0), ("aa_third", 0), ("bb_fourth", 25)):
        date = date_to_write(now.replace(second=now.second + second), written)
        written.append(m(name, f"{date:%Y-%m-%d %H:%M:%S}"))
    assert [w.date for w in written] == ["2026-12-05 03:30:20", "2026-12-05 03:30:21", "2026-12-05 03:30:22",
                                         "2026-12-05 03:30:45"]
    assert in_order([*written, m("old_same_minute", "2026-12-05 03:30")]) == [
        "old_same_minute", "zz_first", "mm_second", "aa_third", "bb_fourth"]


def test_a_migration_dated_far_ahead_by_hand_does_not_move_new_ones():
    now = datetime(2026, 12, 5, 3, 30, 20)
    assert date_to_write(now, [m("future", "2030-01-01")]) == now


def test_a_plain_date_is_the_start_of_its_day_and_times_order_within_it():
    ordered = in_order([m("a_afternoon", "2026-11-27 14:05"), m("z_plain", "2026-11-27"),
                                m("c_iso_noon", "2026-11-27T12:00"), m("b_morning", "2026-11-27 09:30"),
                                m("y_next_day", "2026-11-28"), m("x_late_eve", "2026-11-26 23:59")])
    assert ordered == ["x_late_eve", "z_plain", "b_morning", "c_iso_noon", "a_afternoon", "y_next_day"]


def test_the_same_time_written_two_ways_falls_back_to_the_name():
    assert in_order([m("b", "2026-01-01T08:00"), m("a", "2026-01-01 08:00")]) == ["a", "b"]


def test_dependencies_chain_across_dates_and_the_rest_keep_date_order():
    ordered = in_order([m("c", "2025-01-01", ["b"]), m("b", "2025-01-02", ["a"]), m("a", "2025-12-31"),
                                m("d", "2025-06-01"), m("e", "2026-01-01")])
    assert ordered == ["d", "a", "b", "c", "e"]


def test_a_migration_with_two_dependencies_waits_for_both():
    ordered = in_order([m("both", "2025-01-01", ["x", "y"]), m("x", "2025-03-01"), m("y", "2025-02-01")])
    assert ordered == ["y", "x", "both"]


@pytest.mark.parametrize("migrations, cycle", [
    ([m("a", depends_on=["a"])], "a"),
    ([m("a", depends_on=["c"]), m("b", depends_on=["a"]), m("c", depends_on=["b"]), m("free")], "a, b, c"),
    ([m("a", depends_on=["b"]), m("b", depends_on=["a"]), m("after", depends_on=["a"])], "a, after, b"),
])
def test_a_cycle_names_every_migration_it_holds_back(migrations, cycle):
    ordered, unplaced = order_migrations(migrations)
    assert {why for _, why in unplaced} == {f"migrations depend on each other in a cycle: {cycle}"}
    assert sorted(names(m for m, _ in unplaced)) == cycle.split(", ")
    assert names(ordered) == (["free"] if "free" in names(migrations) else [])


def test_every_missing_dependency_is_named():
    ordered, unplaced = order_migrations([m("a", depends_on=["phantom", "ghost"]), m("b")])
    assert [(m.name, why) for m, why in unplaced] == [("a", "depends on ghost, phantom, which does not exist")]
    assert names(ordered) == ["b"]


@pytest.mark.parametrize("date", ["2025-13-01", "yesterday", "2025-01-01 25:00", ""])
def test_a_date_that_is_not_a_date_is_a_usage_error_naming_the_migration(date):
    with pytest.raises(MigrationError) as caught:
        order_migrations([m("fine"), m("bad_date", date)])
    assert str(caught.value).startswith(f"bad_date: Date {date!r} is not a valid date: write YYYY-MM-DD HH:MM")
    assert caught.value.exit_code == 2
