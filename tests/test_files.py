"""The one writer, the JSON readers, one-line errors and terminal safety (covseg.files, covseg.terminal)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import torch

from covseg.checkpoint import save_checkpoint
from covseg.core.errors import CovsegError
from covseg.files import (
    TEMPORARY_SUFFIX,
    atomic_write,
    child_path,
    one_line,
    read_json_lines,
    read_json_object,
    remove_stale_temporaries,
    safe_file_name,
    write_json,
    write_text,
)
from covseg.terminal import SafeConsole, clean_text


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(TEMPORARY_SUFFIX))


def test_full_disk_is_one_line_naming_the_file_and_leaves_nothing(full_disk):
    target = full_disk / "summary.json"
    with pytest.raises(CovsegError, match="no space left") as error:
        write_json(target, {"values": list(range(5000))})
    assert str(target) in str(error.value) and "\n" not in str(error.value)
    assert not target.exists() and leftovers(full_disk) == []


def test_full_disk_inside_torch_save_is_one_line(full_disk):
    target = full_disk / "last.pt"
    with pytest.raises(CovsegError, match=f"cannot write {target}: no space left"):
        save_checkpoint({"state_dict": {"weight": torch.zeros(50_000)}}, target)
    assert not target.exists() and leftovers(full_disk) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = write_text(tmp_path / "a.txt", "old")

    def explode(handle):
        handle.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_read_only_folder(read_only_folder):
    with pytest.raises(CovsegError, match=f"cannot write {read_only_folder / 'x.txt'}: "
                       "(Read-only file system|Permission denied)"):
        write_text(read_only_folder / "x.txt", "x")


def test_a_folder_where_the_file_should_be(tmp_path):
    (tmp_path / "report.json").mkdir()
    with pytest.raises(CovsegError, match="is a folder"):
        write_json(tmp_path / "report.json", {})


def test_new_files_get_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write_text(tmp_path / "atomic.txt", "x")
    assert written.stat().st_mode == plain.stat().st_mode


def test_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    from covseg.files import _HOST

    stale = tmp_path / f".best.pt.{_HOST}-{dead.stdout.strip()}.0badc0de{TEMPORARY_SUFFIX}"
    alive = tmp_path / f".last.pt.{_HOST}-{os.getpid()}.0badc0de{TEMPORARY_SUFFIX}"
    stale.write_bytes(b"x")
    alive.write_bytes(b"x")
    write_text(tmp_path / "config.json", "{}")
    assert not stale.exists() and alive.exists()
    os.utime(alive, (0, 0))  # a day old: whoever wrote it is long gone
    assert remove_stale_temporaries(tmp_path) == [alive]


@pytest.mark.parametrize(("content", "message"), [
    ("{cut", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object, not list"),
    ('{"a": NaN}', "is not valid JSON"),
    ("\udcff", "is not UTF-8"),
])
def test_json_objects_one_wording(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(CovsegError, match=message) as error:
        read_json_object(path)
    assert str(path) in str(error.value)


def test_json_lines_name_the_damaged_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2, "miou": 0.\n')
    with pytest.raises(CovsegError, match=r"metrics.jsonl line 2 is not valid JSON"):
        read_json_lines(path)


def test_non_finite_values_are_written_as_null(tmp_path):
    path = write_json(tmp_path / "m.json", {"miou": float("nan"), "x": [float("inf"), 1.0]})
    assert read_json_object(path) == {"miou": None, "x": [None, 1.0]}


def test_one_line():
    assert one_line(CovsegError("bad\n  input")) == "bad input"
    assert one_line(ValueError("x" * 1000), limit=20) == "ValueError: " + "x" * 19 + "…"
    assert one_line(KeyError()) == "KeyError"


@pytest.mark.parametrize(("name", "safe"), [
    ("...nii.gz", "nii.gz"),
    ("../../etc/passwd", "_.._etc_passwd"),
    ("..", "case"),
    ("", "case"),
    ("scan [2020]:a\x1b", "scan_2020_a_"),
    ("a" * 300, "a" * 120),
])
def test_safe_file_names_stay_inside(tmp_path, name, safe):
    assert safe_file_name(name) == safe
    child = child_path(tmp_path, safe_file_name(name))
    assert child.parent == tmp_path


def test_child_path_refuses_an_escape(tmp_path):
    with pytest.raises(CovsegError, match="outside"):
        child_path(tmp_path, "../elsewhere")


def test_terminal_text_is_never_markup_or_control_codes():
    console = SafeConsole(record=True, width=200)
    console.print("scans[/2020] [bold]x[/] \x1b[31mred\r")
    shown = console.export_text()
    assert "scans[/2020] [bold]x[/] \\x1b[31mred\\x0d" in shown
    assert clean_text("y" * 5000, limit=10).startswith("yyyyyyyyyy… (4,990 more")


def test_an_os_error_at_the_cli_boundary_is_one_line(tmp_path, capsys):
    import typer

    from covseg.commands._common import user_errors

    @user_errors
    def command():
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "x"))

    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == 2
    assert capsys.readouterr().err == f"error: cannot use {tmp_path / 'x'}: Read-only file system\n"


def test_an_interrupt_during_a_write_waits_for_the_whole_file(tmp_path, request):
    """Ctrl-C inside torch.save used to break its zip writer into a RuntimeError and a broken file."""
    import signal

    # A suite started in the background (`pytest &`, nohup) inherits SIGINT ignored, and the
    # deferred interrupt is then rightly ignored too: give this test Python's own Ctrl-C handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    target = tmp_path / "last.pt"

    def interrupted_save(handle):
        signal.raise_signal(signal.SIGINT)  # arrives mid-write
        torch.save({"weight": torch.zeros(1000)}, handle)

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted_save)
    assert torch.load(target, weights_only=True)["weight"].shape == (1000,)
    assert leftovers(tmp_path) == []
