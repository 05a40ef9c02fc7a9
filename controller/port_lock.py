"""One user of a node's serial port at a time.

Every command that opens a port (console, monitor, gateway, share, catalog,
fetch, flash, provision) first takes its lock file, then opens the port with
pyserial's `exclusive=True` (a flock on the device itself, which also keeps
out mpremote and esptool, which take it the same way). Both are flock(2)
locks: the kernel drops them when their process dies, so a lock left by a
dead command is simply taken over, and they hold for root as for anyone.

The lock file is keyed by the port's real path (a /dev/serial/by-id/ link
and /dev/ttyUSB0 are one port; a virtual board's /dev/pts/N too) and holds
who has it, so a second command can say "/dev/ttyUSB0 is in use by `pollen
console` (pid 1234)". It lives in /run/lock (world-writable on Linux, so
root and users see each other's locks), else in the temporary folder.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path

from pollen_controller.errors import PortBusyError

_HOLDER_MAX_BYTES = 512


def lock_dir() -> Path:
    """/run/lock where every user can write it (sticky and world-writable), else
    the temporary folder: root and users then choose the same folder."""
    run = Path("/run/lock")
    try:
        if run.stat().st_mode & 0o1002 == 0o1002:
            return run
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def lock_path(port: str) -> Path:
    real = os.path.realpath(port)
    return lock_dir() / ("pollen-" + real.strip("/").replace("/", "-") + ".lock")


def _who() -> str:
    """The command taking the port: `pollen console` in the CLI."""
    click = sys.modules.get("click")
    ctx = click.get_current_context(silent=True) if click else None
    if ctx is not None:
        return ctx.command_path
    return os.path.basename(sys.argv[0]) or "python"


def _open(path: Path) -> tuple[int, bool]:
    """(fd, writable) of the lock file, created if missing. No O_CREAT on a
    file that is there: in a sticky folder Linux refuses it (even to root,
    fs.protected_regular) on another user's file."""
    while True:
        for flags, writable in ((os.O_RDWR, True), (os.O_RDONLY, False)):
            try:
                return os.open(path, flags | os.O_CLOEXEC), writable
            except FileNotFoundError:
                break
            except PermissionError:
                continue  # another user's file: a read-only fd takes a flock too
        else:
            raise PortBusyError(f"{path}: cannot open the port's lock file (permission denied)")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue  # another command made it just now: open theirs
        os.fchmod(fd, 0o666)  # whatever the umask: another user can record itself in it
        return fd, True


def describe_holder(port: str, holder: dict | None) -> str:
    real = os.path.realpath(port)
    name = port if real == port else f"{port} ({real})"
    if holder and isinstance(holder.get("pid"), int) and isinstance(holder.get("command"), str):
        who = "".join(c if c.isprintable() else "?" for c in holder["command"])[:60]
        return f"{name} is in use by `{who}` (pid {holder['pid']}); close it first"
    return f"{name} is in use by another pollen command; close it first"


def read_holder(port: str) -> dict | None:
    """What the lock file of a port says about its holder (None: nothing readable)."""
    try:
        with open(lock_path(port), "rb") as f:
            return json.loads(f.read(_HOLDER_MAX_BYTES) or b"null")
    except (OSError, ValueError):
        return None


class PortLock:
    """The lock on one port, held until release() (or the process ends)."""

    def __init__(self, port: str, command: str | None = None):
        self.port = port
        self.path = lock_path(port)
        fd, writable = _open(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PortBusyError(describe_holder(port, read_holder(port))) from None
        self._fd = fd
        if writable:
            record = json.dumps({"pid": os.getpid(), "command": command or _who()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record[:_HOLDER_MAX_BYTES], 0)

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # drops the flock; the file stays for the next one
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def open_serial(port: str, baudrate: int = 115200, **kwargs):
    """pyserial's Serial on port, opened exclusively (flock on the device);
    PortBusyError when another program holds it, OSError for the rest."""
    import serial

    try:
        return serial.Serial(port, baudrate, exclusive=True, **kwargs)
    except serial.SerialException as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise PortBusyError(f"{port} is in use by another program (it holds the port "
                                "exclusively: mpremote, esptool, another pollen)") from None
        raise OSError(e.errno, e.strerror or str(e)) from None


def open_locked(port: str, baudrate: int = 115200, **kwargs):
    """(serial, lock): the port's lock taken, then the port opened exclusively;
    the caller closes the one and releases the other. PortBusyError names who
    has it; OSError (or ValueError) for a port that cannot be opened."""
    lock = PortLock(port)
    try:
        return open_serial(port, baudrate, **kwargs), lock
    except BaseException:
        lock.release()
        raise
