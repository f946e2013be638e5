"""The argument rules (migrator/flags.py, the RUNNER and STANDALONE tables of migrator/cli.py); no server.

Each rule is checked by parsing real command lines: which modifier goes with which command (the README's
contract, written out below), empty values, exactly one command, and the options the commands get."""

from dataclasses import fields
from pathlib import Path

import pytest

from migrator import backup
from migrator.cli import RUNNER, STANDALONE, runner_parser
from migrator.engine import Options
from migrator.flags import MODIFIERS, build_parser, chosen, dest_of, engine_options

APPLY = {"dry_run", "allow_changed", "allow_out_of_order", "backup", "backup_dir", "backup_full", "batch_size",
         "max_rate", "write_concern", "batch_path", "target_batch_ms", "min_batch_size", "max_lag", "throttle_interval"}
ROLLBACK = {"purge", "allow_changed", "backup", "backup_dir", "backup_full", "batch_size", "max_rate", "write_concern",
            "batch_path", "target_batch_ms", "min_batch_size", "max_lag", "throttle_interval"}
RUNNER_ACCEPTS = {
    "--all": APPLY, "--migration": APPLY, "--status": {"json"}, "--history": {"json"}, "--list": set(),
    "--check": set(), "--plan": {"json"}, "--verify": set(), "--rollback": ROLLBACK, "--rollback-last": ROLLBACK,
    "--rollback-to": ROLLBACK, "--mark-applied": {"force"}, "--mark-applied-all": {"force"}, "--pause": set(),
    "--resume": set(), "--cancel": set(), "--force-unlock": set(),
    "--restore": {"force"}, "--new": set(), "--selftest": {"sample", "chaos", "faults", "json"},
    "--preview": {"sample", "json"},
}
STANDALONE_ACCEPTS = {None: APPLY - {"dry_run"}, "--verify": set(), "--rollback": ROLLBACK, "--dry-run": set()}
VALUES = {"--backup-dir": "some/dir", "--batch-size": "10", "--max-rate": "5", "--write-concern": "majority",
          "--batch-path": "stream", "--sample": "5", "--target-batch-ms": "500", "--min-batch-size": "50",
          "--max-lag": "2", "--throttle-interval": "0.5", "--faults": "5"}


def standalone_parser():
    return build_parser("one.py", "a migration on its own", STANDALONE)


def command_line(command) -> list[str]:
    if command.flag is None:
        return []
    return [command.flag, "a_name"] if command.metavar else [command.flag]


def modifier_line(modifier) -> list[str]:
    return [modifier.flag] if "action" in modifier.options else [modifier.flag, VALUES[modifier.flag]]


def refusal(parser, argv, capsys) -> str:
    """The one line a parser prints when it refuses argv, with exit 2."""
    with pytest.raises(SystemExit) as caught:
        chosen(parser, parser.parse_args(argv), RUNNER if parser.prog == "run_migrations.py" else STANDALONE)
    assert caught.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{parser.prog}: error: ") and line.endswith(" (see --help)")
    return line.removeprefix(f"{parser.prog}: error: ").removesuffix(" (see --help)")


def test_the_tables_name_every_command_the_readme_documents():
    assert {command.flag: set(command.accepts) for command in RUNNER} == RUNNER_ACCEPTS
    assert {command.flag: set(command.accepts) for command in STANDALONE} == STANDALONE_ACCEPTS
    known = {dest_of(modifier.flag) for modifier in MODIFIERS}
    assert all(set(command.accepts) <= known for command in RUNNER + STANDALONE)
    assert all((command.run is None) != (command.offline is None) for command in RUNNER + STANDALONE)


@pytest.mark.parametrize("table, parser, accepts", [
    (RUNNER, runner_parser, RUNNER_ACCEPTS), (STANDALONE, standalone_parser, STANDALONE_ACCEPTS)],
    ids=["runner", "standalone"])
def test_every_modifier_goes_only_with_the_commands_that_take_it(table, parser, accepts, capsys):
    offered = set().union(*accepts.values())
    checked = 0
    for command in table:
        for modifier in MODIFIERS:
            dest = dest_of(modifier.flag)
            if dest not in offered:
                continue
            argv = command_line(command) + modifier_line(modifier)
            if dest in accepts[command.flag]:
                built = parser()
                argv += [modifier.needs] if modifier.needs else []  # --faults goes with --chaos
                assert chosen(built, built.parse_args(argv), table) is command, argv
            else:
                takers = " or ".join(c.flag or "a run" for c in table if dest in accepts[c.flag])
                assert refusal(parser(), argv, capsys) == f"{modifier.flag} goes with {takers}", argv
            checked += 1
    assert checked == len(table) * len(offered)


@pytest.mark.parametrize("argv, message", [
    (["--status", "--purge"], "--purge goes with --rollback or --rollback-last or --rollback-to"),
    (["--verify", "--force"], "--force goes with --mark-applied or --mark-applied-all or --restore"),
    (["--list", "--json"], "--json goes with --status or --history or --plan or --selftest or --preview"),
    (["--selftest", "x", "--faults", "5"], "--faults goes with --chaos"),
    (["--status", "--batch-size", "5"], "--batch-size goes with --all or --migration or --rollback or "
                                         "--rollback-last or --rollback-to"),
    (["--restore", "f", "--dry-run"], "--dry-run goes with --all or --migration"),
])
def test_a_modifier_without_its_command_names_the_commands_it_goes_with(argv, message, capsys):
    assert refusal(runner_parser(), argv, capsys) == message


def test_a_migration_on_its_own_refuses_what_only_a_rollback_or_a_run_takes(capsys):
    assert refusal(standalone_parser(), ["--purge"], capsys) == "--purge goes with --rollback"
    assert refusal(standalone_parser(), ["--verify", "--allow-changed"], capsys) == \
        "--allow-changed goes with a run or --rollback"
    assert refusal(standalone_parser(), ["--dry-run", "--backup"], capsys) == "--backup goes with a run or --rollback"


@pytest.mark.parametrize("flag, what", [
    ("--migration", "a migration name"), ("--history", "a migration name"), ("--rollback", "a migration name"),
    ("--rollback-to", "a migration name"), ("--mark-applied", "a migration name"),
    ("--mark-applied-all", "a migration name"), ("--new", "a migration name"), ("--restore", "a backup file"),
    ("--backup-dir", "a folder"), ("--migrations-dir", "a folder"), ("--env-file", "a file name"),
])
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_value_is_refused_naming_the_flag(flag, what, empty, capsys):
    assert refusal(runner_parser(), [flag, empty], capsys) == f"argument {flag}: needs {what}, got an empty value"


def test_exactly_one_command(capsys):
    assert refusal(runner_parser(), [], capsys).startswith("one of the arguments --all --migration --status")
    assert refusal(runner_parser(), ["--all", "--status"], capsys) == \
        "argument --status: not allowed with argument --all"
    assert refusal(standalone_parser(), ["--verify", "--rollback"], capsys) == \
        "argument --rollback: not allowed with argument --verify"
    parser = standalone_parser()
    assert chosen(parser, parser.parse_args([]), STANDALONE) is STANDALONE[0]  # on its own: apply it


def test_history_takes_a_name_or_nothing():
    parser = runner_parser()
    assert parser.parse_args(["--history"]).history is True
    assert parser.parse_args(["--history", "one"]).history == "one"


@pytest.mark.parametrize("argv, message", [
    (["--all", "--batch-size", "0"], "argument --batch-size: must be more than 0: '0'"),
    (["--all", "--batch-size", "1.5"], "argument --batch-size: not a number: '1.5'"),
    (["--all", "--max-rate", "fast"], "argument --max-rate: not a number: 'fast'"),
    (["--all", "--lock-timeout", "-1"], "argument --lock-timeout: must be at least 0: '-1'"),
    (["--all", "--lock-timeout", "nan"], "argument --lock-timeout: must be a finite number: 'nan'"),
    (["--all", "--retry-for", "inf"], "argument --retry-for: must be a finite number: 'inf'"),
    (["--all", "--write-concern", "2"], "argument --write-concern: invalid choice: '2' (choose from "),
])
def test_a_bad_number_or_choice_is_refused_naming_the_flag(argv, message, capsys):
    assert refusal(runner_parser(), argv, capsys).startswith(message)  # argparse's quoting of choices varies


def test_every_option_the_engine_reads_comes_from_its_flag(monkeypatch):
    monkeypatch.delenv("MIGRATIONS_BACKUP_DIR", raising=False)
    lines = (["--rollback", "x", "--purge", "--allow-changed", "--backup", "--backup-dir", "d", "--backup-full",
              "--lock-timeout", "7"], ["--all", "--allow-out-of-order", "--progress-interval", "2"],
             ["--restore", "f", "--force"])
    chosen_options = [engine_options(runner_parser().parse_args(line)) for line in lines]
    unset = [field.name for field in fields(Options)
             if all(getattr(options, field.name) == field.default for options in chosen_options)]
    assert unset == [], "an Options field no flag sets: give it its line in flags.engine_options"


def test_engine_options_from_a_real_command_line(monkeypatch):
    monkeypatch.delenv("MIGRATIONS_BACKUP_DIR", raising=False)
    args = runner_parser().parse_args(["--rollback", "x", "--purge", "--allow-changed", "--backup-full", "--yes",
                                       "--lock-timeout", "7", "--no-backup"])
    assert engine_options(args) == Options(purge=True, allow_changed=True, backup_full=True, lock_timeout_s=7.0,
                                           backup=False, backup_dir=backup.DEFAULT_DIR)
    assert args.yes is True  # the command line's own choice: the commands' argument, not the engine's
    assert runner_parser().parse_args(["--status", "--json"]).json is True


def test_a_flag_the_parser_does_not_have_keeps_the_default():
    assert engine_options(standalone_parser().parse_args(["--verify"])) == Options(backup_dir=backup.DEFAULT_DIR)


def test_the_backup_folder_is_the_flag_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.setenv("MIGRATIONS_BACKUP_DIR", "/from/env")
    assert engine_options(runner_parser().parse_args(["--all", "--backup-dir", "flag"])).backup_dir == Path("flag")
    assert engine_options(runner_parser().parse_args(["--all"])).backup_dir == Path("/from/env")
    monkeypatch.delenv("MIGRATIONS_BACKUP_DIR")
    assert engine_options(runner_parser().parse_args(["--all"])).backup_dir == backup.DEFAULT_DIR
