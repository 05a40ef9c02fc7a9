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


_RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
# (seconds to wait for the REPL's prompt after Ctrl-C, then for the raw REPL
# after Ctrl-A) per attempt: a board busy starting, or an app stopping, can
# drop the first Ctrl-C/Ctrl-A and answer the next
_RAW_REPL_ATTEMPTS = ((1.0, 2.0), (1.0, 2.0), (1.0, 2.0))
# the friendly REPL's banner: printed when a program (main.py) has ended,
# not by a Ctrl-C at the REPL's prompt
_BANNER = b'Type "help()"'
_APP_LOADED = "'pollen_io.app' in __import__('sys').modules"


class Board:
    """An open connection to a board in raw REPL mode (use as a context manager).

    The port is held exclusively while open (port_lock.py). A running program
    (the pollen app) is stopped with Ctrl-C, as mpremote does; stopped_app
    says whether the pollen app was running (reset() starts it again)."""

    def __init__(self, port: str, baudrate: int = 115200):
        from mpremote.transport_serial import SerialTransport

        from pollen_controller.port_lock import PortLock

        self.port = port
        self.t = None
        self.stopped_app = False
        self._lock = PortLock(port)  # PortBusyError names the command that has it
        try:
            try:
                # a read timeout, or waiting for a silent device (a pty) never ends
                # (3 s: a virtual board on a loaded machine can answer the raw-paste
                # request later than 1 s, and mpremote then fails the command)
                self.t = SerialTransport(port, baudrate=baudrate, timeout=3)
            except (_MpError, OSError):
                raise BoardError(f"{port}: cannot open the port ({_why_not_open(port)}); "
                                 "is the board plugged in?") from None
            program_ended = self._enter_raw_repl()
            # the app was running when our Ctrl-C ended a program that had loaded it
            self.stopped_app = program_ended and self.eval(_APP_LOADED) is True
        except BaseException:
            self.close()
            raise

    def _enter_raw_repl(self):
        """Ctrl-C (stop a running program), wait for the REPL's prompt, Ctrl-A
        (raw REPL), with retries; BoardError naming the port and what it
        said when no MicroPython REPL answers. True when a program ended
        (the REPL printed its banner)."""
        heard, ended = b"", False
        ser = self.t.serial
        try:
            while ser.in_waiting:  # what an earlier session left unread is not an answer
                ser.read(ser.in_waiting)
        except OSError as e:
            raise BoardError(f"{self.port}: lost the connection ({e}); plug it in and run again") from None
        for attempt, (prompt_s, raw_s) in enumerate(_RAW_REPL_ATTEMPTS):
            # mpremote reads a pty a byte at a time with the port's timeout
            # (3 s): short here, or a silent device takes twice the time
            read_timeout, ser.timeout = ser.timeout, 0.1
            try:
                ser.write(b"\r\x03\x03")
                data = self.t.read_until(1, b">>> ", timeout=prompt_s, timeout_overall=prompt_s)
                ser.write(b"\r\x01")
                data += self.t.read_until(1, _RAW_BANNER, timeout=raw_s, timeout_overall=raw_s)
            except (_MpError, OSError) as e:
                raise BoardError(f"{self.port}: lost the connection ({e}); plug it in and run "
                                 "again") from None
            finally:
                ser.timeout = read_timeout
            ended = ended or _BANNER in data
            heard = (heard + data)[-400:]
            if data.endswith(_RAW_BANNER):
                self.t.in_raw_repl = True
                if attempt:
                    self._drain_late_answers()
                return ended
        said = heard.decode(errors="replace").strip()
        said = "".join(c if c.isprintable() else " " for c in said)[-80:]
        total_s = sum(a + b for a, b in _RAW_REPL_ATTEMPTS)
        raise BoardError(f"{self.port}: no MicroPython REPL answers Ctrl-C and Ctrl-A within "
                         f"{total_s:.0f} s ({'it said: ' + repr(said) if said else 'it said nothing'}); "
                         "is MicroPython installed (pollen flash --micropython IMAGE), and is "
                         "this the board's port?")

    def _drain_late_answers(self, quiet_s: float = 0.5, most_s: float = 3.0):
        """Throw away what a slow board still says to the earlier attempts.

        A board that answers late answers every attempt: the second banner
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
            ser.write(b"\r\x01")
            data = self.t.read_until(1, _RAW_BANNER, timeout=3, timeout_overall=3)
        finally:
            ser.timeout = timeout
        if not data.endswith(_RAW_BANNER):
            raise BoardError(f"{self.port}: the board stopped answering the raw REPL; run again")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.t is not None:
            try:
                self.t.exit_raw_repl()
                self.t.close()
            except Exception:  # closing anyway
                pass
            self.t = None
        self._lock.release()

    def reset(self):
        """Soft-reset the board (it boots main.py) and close the connection."""
        try:
            self.t.exit_raw_repl()
            self.t.serial.write(b"\x04")  # Ctrl-D at the friendly REPL: soft reset
            self.t.serial.flush()
        except OSError as e:
            self.close()
            raise BoardError(f"{self.port}: lost the connection while resetting ({e})") from None
        self.t.close()
        self.t = None
        self._lock.release()

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


def _why_not_open(port: str) -> str:
    """Why mpremote could not open the port (it says only "failed to access"):
    opened again here for pyserial's reason; PortBusyError when another
    program holds it exclusively."""
    from pollen_controller.port_lock import open_serial

    try:
        open_serial(port).close()
    except OSError as e:
        return e.strerror or str(e)
    return "it failed, then opened"
