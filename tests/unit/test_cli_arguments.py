"""What the command lines refuse, or answer, at parsing: exit 2 with one line naming the flag, or --help. This
happens before any setting is read or any server is reached, so it runs here, in this process, with no server
(these were subprocesses of the server tests). What a refused command leaves in a database (nothing, a lock
left alone) stays proven against the server in tests/."""

from pathlib import Path

import pytest

from migrator.cli import runner_main, standalone_main

SCRIPT = Path(__file__).resolve().parents[2] / "migrations" / "add_metadata_to_chat_messages.py"
EXISTING = "add_metadata_to_chat_messages"


@pytest.fixture(autouse=True)
def wide_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # as the server tests ran it: --help's lines are not folded


def parsed(main, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a command line that ends at parsing: argparse's SystemExit, nothing run."""
    with pytest.raises(SystemExit) as caught:
        main()
    out, err = capsys.readouterr()
    return caught.value.code, out, err


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error" in line.lower()]


def test_bad_flags_exit_2(capsys):
    assert parsed(lambda: runner_main([]), capsys)[0] == 2
    assert parsed(lambda: runner_main(["--all", "--list"]), capsys)[0] == 2
    assert parsed(lambda: runner_main(["--list", "--dry-run"]), capsys)[0] == 2


def test_help_explains_commands_and_exit_codes(capsys):
    code, out, _ = parsed(lambda: runner_main(["--help"]), capsys)
    assert code == 0
    for text in ("--all", "--migration NAME", "--dry-run", "--rollback NAME", "exit codes:", "cannot reach"):
        assert text in out


def test_help_lists_restore_under_exit_code_4(capsys):
    _, out, _ = parsed(lambda: runner_main(["--help"]), capsys)
    line = next(line for line in out.splitlines() if line.strip().startswith("3  lock held"))
    assert "4  verification failed (--verify, --mark-applied, --restore, --selftest)" in line


@pytest.mark.parametrize("flag, value", [("--server-timeout", "0"), ("--server-timeout", "-1"),
                                         ("--server-timeout", "inf"), ("--server-timeout", "nan"),
                                         ("--lock-timeout", "-1"), ("--lock-timeout", "nan"),
                                         ("--lock-timeout", "inf"), ("--batch-size", "0")])
def test_a_timeout_that_is_not_a_finite_positive_number_is_exit_2_naming_the_flag(capsys, flag, value):
    code, out, err = parsed(lambda: runner_main(["--all", f"{flag}={value}"]), capsys)
    assert code == 2, err
    [line] = error_lines(out + err)
    assert flag in line and value in line


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size: must be more than 0"),
    (["--max-rate", "fast"], "--max-rate: not a number"),
    (["--write-concern", "2"], "--write-concern: invalid choice"),
])
def test_bad_batch_options_are_one_line_and_exit_2(capsys, flags, message):
    code, out, err = parsed(lambda: standalone_main(str(SCRIPT), flags), capsys)
    assert code == 2 and message in out + err, err


def test_sample_and_json_go_with_their_commands_only(capsys):
    assert "--sample goes with --selftest or --preview" in parsed(
        lambda: runner_main(["--all", "--sample", "3"]), capsys)[2]
    assert parsed(lambda: runner_main(["--selftest", EXISTING, "--sample", "0"]), capsys)[0] == 2


def test_backup_and_no_backup_together_are_refused_and_either_alone_is_taken(capsys):
    for argv in (["--all", "--backup", "--no-backup"], ["--rollback-last", "--no-backup", "--backup"]):
        code, _, err = parsed(lambda argv=argv: runner_main(argv), capsys)
        assert code == 2 and "--backup and --no-backup contradict each other" in err, err
    code, _, err = parsed(lambda: standalone_main(str(SCRIPT), ["--backup", "--no-backup"]), capsys)
    assert code == 2 and "contradict" in err
    code, out, _ = parsed(lambda: runner_main(["--all", "--backup", "--backup", "--help"]), capsys)
    assert code == 0 and "--no-backup" in out
