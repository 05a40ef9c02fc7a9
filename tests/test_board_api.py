# The firmware against the boards' MicroPython, statically: mypy checks each
# name, call and keyword the firmware takes from MicroPython's modules
# (machine, time, asyncio, sys, ...) and builtins against each board's
# published stubs (micropython-esp32-stubs, micropython-rp2-stubs; `make
# install` puts them in .venv/board-stubs/<board>). A call that a board's
# MicroPython does not have fails here, not on the board. The settings and
# the reason for each exception are in pyproject.toml ([tool.mypy]).
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ("esp32", "rp2")


def _stubs(board):
    path = Path(sys.prefix) / "board-stubs" / board
    assert (path / "machine.pyi").is_file() and (path / "stdlib" / "VERSIONS").is_file(), \
        "no %s stubs in %s: run make install" % (board, path)
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # mypy's cache, a folder per board, shared by this module's tests: the
    # stubs are read once per board
    return tmp_path_factory.mktemp("mypy-cache")


def check(board, folder, targets, cache_dir):
    # mypy over targets (paths relative to folder) with one board's stubs in
    # place of CPython's: (exit status, output)
    stubs = _stubs(board)
    env = dict(os.environ)
    env["MYPYPATH"] = str(stubs)
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                        "--custom-typeshed-dir", str(stubs), "--cache-dir", str(cache_dir / board),
                        "--no-error-summary", "--hide-error-context"] + targets,
                       cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("board", BOARDS)
def test_the_firmware_uses_only_what_the_board_s_micropython_has(board, cache_dir):
    status, out = check(board, ROOT / "firmware", ["main.py", "pollen", "pollen_io"], cache_dir)
    assert status == 0 and out == "", out


# A wrong call of each kind, as the check sees it in the firmware
WRONG = """\
import time
import asyncio
from machine import Pin, I2C


async def wrong(pin):
    time.sleep_ms(1, 2)
    Pin(pin, Pin.IN, pul=Pin.PULL_UP)
    I2C(0, sda=Pin(1), scl=Pin(2), frequency=400000)
    await asyncio.sleep_msec(5)
    time.monotonic()
"""


@pytest.mark.parametrize("board", BOARDS)
def test_the_check_fails_on_what_the_board_lacks(tmp_path, board, cache_dir):
    (tmp_path / "wrong.py").write_text(WRONG)
    status, out = check(board, tmp_path, ["wrong.py"], cache_dir)
    assert status == 1, out
    errors = sorted(set(int(line.split(":")[1]) for line in out.splitlines()
                        if line.startswith("wrong.py:") and ": error: " in line))
    assert errors == [7, 8, 9, 10, 11], out   # each wrong line, and only those
    assert 'Too many arguments for "sleep_ms"' in out and '"pul"' in out and '"frequency"' in out
    assert '"sleep_msec"' in out and '"monotonic"' in out
