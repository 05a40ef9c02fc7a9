"""Talking to a board (real or virtual) over its serial port, built on
mpremote's Python API (SerialTransport: raw REPL exec and file operations).

Device errors become host errors here, naming the port and what failed.
Writes are atomic on the board: a temporary file renamed over the target, so
an unplug in the middle leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import errno
import hashlib
import time

from mpremote.transport import TransportError as _MpError
from mpremote.transport import TransportExecError as _MpExecError

from pollen_controller.errors import BoardError

CHUNK_BYTES = 1024
_MISSING = (errno.ENOENT,)
_EXISTS = (errno.EEXIST,)


class Board:
    """An open connection to a board in raw REPL mode (use as a context manager)."""

    def __init__(self, port: str, baudrate: int = 115200):
        from mpremote.transport_serial import SerialTransport

        self.port = port
        try:
            # a read timeout, or waiting for a silent device (a pty) never ends
            # (3 s: a virtual board on a loaded machine can answer the raw-paste
            # request later than 1 s, and mpremote then fails the command)
            self.t = SerialTransport(port, baudrate=baudrate, timeout=3)
        except (_MpError, OSError) as e:
            raise BoardError(f"{port}: cannot open the port ({e}); is the board plugged in, "
                             "and is another program (a console, mpremote) using it?") from None
        for attempt in (1, 2):
            # twice: a board busy starting (or a REPL still setting up its
            # terminal) can drop the first Ctrl-C/Ctrl-A and answer the next
            try:
                self.t.enter_raw_repl(soft_reset=False, timeout_overall=5 if attempt == 1 else 3)
                if attempt == 2:
                    self._drain_late_answers()
                break
            except (_MpError, OSError) as e:
                if attempt == 2:
                    self.t.close()
                    raise BoardError(f"{port}: the board does not answer the raw REPL ({e}); "
                                     "is MicroPython installed (pollen flash --micropython IMAGE)?"
                                     ) from None

    def _drain_late_answers(self, quiet_s: float = 0.5, most_s: float = 3.0):
        """Throw away what a slow board still says to the first attempt.

        A board that answers late answers both attempts: the second banner
        would then be read as the answer to the next command (mpremote saw
        "could not exec command (response: b'R\\x01')"). Read until the line
        has been quiet for quiet_s (at most most_s), then ask for the raw
        REPL once more: its prompt is what the next command waits for."""
        ser = self.t.serial
        timeout, ser.timeout = ser.timeout, quiet_s
        try:
            end = time.monotonic() + most_s
            while time.monotonic() < end and ser.read(max(1, ser.in_waiting)):
                pass
        finally:
            ser.timeout = timeout
        self.t.enter_raw_repl(soft_reset=False, timeout_overall=3)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.t is None:
            return
        try:
            self.t.exit_raw_repl()
        except Exception:  # closing anyway
            pass
        self.t.close()
        self.t = None

    def reset(self):
        """Soft-reset the board (it boots main.py) and close the connection."""
        try:
            self.t.exit_raw_repl()
            self.t.serial.write(b"\x04")  # Ctrl-D at the friendly REPL: soft reset
            self.t.serial.flush()
        except OSError as e:
            raise BoardError(f"{self.port}: lost the connection while resetting ({e})") from None
        self.t.close()
        self.t = None

    # ---- primitives ---------------------------------------------------------

    def exec(self, code: str) -> str:
        try:
            return self.t.exec(code).decode(errors="replace")
        except _MpExecError as e:
            raise BoardError(f"{self.port}: the board failed running {code.splitlines()[0]!r}: "
                             f"{e.error_output.strip().splitlines()[-1] if e.error_output else e}") from None
        except (_MpError, OSError) as e:
            raise BoardError(f"{self.port}: lost the connection ({e}); plug it in and run again") from None

    def eval(self, expr: str):
        out = self.exec(f"print(repr({expr}))").strip()
        import ast

        return ast.literal_eval(out)

    # ---- files --------------------------------------------------------------

    def _fs(self, what: str, path: str, op, *args, missing=_MISSING):
        """Run one of mpremote's file operations; board errors become BoardError."""
        try:
            return op(path, *args)
        except OSError as e:
            if e.errno in missing:
                return None
            raise BoardError(f"{self.port}: {what} {path} failed ({e.strerror or e})") from None
        except _MpError as e:
            raise BoardError(f"{self.port}: lost the connection ({e}); plug it in and run again") from None

    def sha256(self, path: str) -> str | None:
        """Hex SHA-256 of a file on the board (hashed there), or None if it is not there."""
        digest = self._fs("hashing", path, self.t.fs_hashfile, "sha256", 512)
        return None if digest is None else digest.hex()

    def makedirs(self, path: str):
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            self._fs("making folder", "/".join(parts[:i]), self.t.fs_mkdir, missing=_EXISTS)

    def write_atomic(self, path: str, data: bytes, progress=None):
        """Write data to path on the board: temporary file, then rename."""
        if "/" in path:
            self.makedirs(path.rsplit("/", 1)[0])
        tmp = path + ".tmp"
        self._fs("writing", tmp, self.t.fs_writefile, data, CHUNK_BYTES,
                 (lambda done, total: progress(done)) if progress else None, missing=())
        self.exec(f"import os\nos.rename({tmp!r},{path!r})")
        got = self.sha256(path)
        want = hashlib.sha256(data).hexdigest()
        if got != want:
            raise BoardError(f"{self.port}: {path} reads back with another hash ({got} != {want}); "
                             "run again")

    def read(self, path: str) -> bytes | None:
        return self._fs("reading", path, self.t.fs_readfile)

    def remove(self, path: str):
        self._fs("removing", path, self.t.fs_rmfile)

    def version(self) -> tuple[str, tuple[int, int]]:
        """(MicroPython version 'x.y.z', .mpy version (major, minor)) of the board."""
        v = self.eval("tuple(__import__('sys').implementation.version[:3])")
        mpy = self.eval("getattr(__import__('sys').implementation, '_mpy', 0)")
        # _mpy: version | sub-version << 8 | native arch << 10
        return "%d.%d.%d" % tuple(v[:3]), ((mpy & 0xFF), (mpy >> 8) & 0x03)
