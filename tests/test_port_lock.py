"""One user of a node's port at a time (controller/port_lock.py): a second
command is told who holds the port and exits 1; a lock left by a dead
process is taken over; another program holding the port exclusively is
named too. The port is a pseudo-terminal, as a virtual board's is."""
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from pollen_controller.errors import BoardError, LinkError, PortBusyError
from pollen_controller.node.link import SerialLink
from pollen_controller.port_lock import PortLock, lock_path, read_holder

POLLEN = str(Path(sys.executable).with_name("pollen"))


@pytest.fixture
def port():
    master, slave = pty.openpty()  # a serial device; nothing needs to answer
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def _pollen(*args, cwd=None):
    return subprocess.run([POLLEN, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def _wait_for_holder(port, pid, timeout_s=10):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if (read_holder(port) or {}).get("pid") == pid:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never took {port}: {read_holder(port)}")


def test_a_second_command_is_told_who_holds_the_port(port, tmp_path):
    console = subprocess.Popen([POLLEN, "console", "--port", port], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_holder(port, console.pid)
        said = f"pollen: {port} is in use by `pollen console` (pid {console.pid}); close it first\n"
        _pollen("network", "create", "v", "-o", "v.json", cwd=tmp_path)
        for args in (["provision", "--port", port, "--network", "v.json", "--name", "n"],
                     ["catalog", "--port", port],
                     ["monitor", "--port", port, "--once"]):
            r = _pollen(*args, cwd=tmp_path)
            assert (r.returncode, r.stderr) == (1, said), args
        # in this process too: as a BoardError (flash, provision) and a LinkError (links)
        with pytest.raises(BoardError, match="in use by `pollen console`"):
            PortLock(port)
        with pytest.raises(LinkError, match="in use by `pollen console`"):
            SerialLink(port)
    finally:
        console.stdin.close()
        console.wait(10)
    with PortLock(port, "test") as lock:  # released when the console ended
        assert read_holder(port) == {"pid": os.getpid(), "command": "test"}
        assert lock.path == lock_path(port)


def test_a_lock_left_by_a_dead_process_is_taken_over(port):
    console = subprocess.Popen([POLLEN, "console", "--port", port], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_holder(port, console.pid)
    console.send_signal(signal.SIGKILL)  # no chance to clean up
    console.wait(10)
    assert read_holder(port)["pid"] == console.pid  # its record is still there
    link = SerialLink(port)
    try:
        assert read_holder(port)["pid"] == os.getpid()
    finally:
        link.close()


def test_a_link_to_the_port_and_its_real_path_share_one_lock(port, tmp_path):
    alias = tmp_path / "ttyBOARD"  # as /dev/serial/by-id/... is to /dev/ttyUSB0
    alias.symlink_to(port)
    with PortLock(str(alias), "pollen gateway"):
        with pytest.raises(PortBusyError) as e:
            PortLock(port)
    assert str(e.value).startswith(f"{port} is in use by `pollen gateway`")
    with PortLock(port):
        with pytest.raises(PortBusyError, match=f"{alias} .{port}. is in use"):
            PortLock(str(alias))


def test_another_program_holding_the_port_exclusively_is_named(port):
    other = serial.Serial(port, exclusive=True)  # as mpremote and esptool open it
    try:
        with pytest.raises(PortBusyError, match=f"{port} is in use by another program"):
            SerialLink(port)
        PortLock(port).release()  # and the lock file was given back
    finally:
        other.close()


def test_a_damaged_holder_record_still_refuses(port):
    with PortLock(port):
        lock_path(port).write_text("{not json")
        with pytest.raises(PortBusyError, match="in use by another pollen command"):
            PortLock(port)
