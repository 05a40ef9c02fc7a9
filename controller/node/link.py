"""A conversation with one node's JSON console (docs/console.md): commands
out, events in. Two kinds of link, one interface:

  SerialLink(port)        a board or virtual board on a serial port (reopen()
                          after the port went away and came back)
  ProcessLink(node)       an emulated node (emulation/node_process.py)

    link.command({"cmd": "status"})
    ev = link.wait(lambda e: e.get("event") == "status", timeout_s=5)
"""
from __future__ import annotations

import queue
import threading
import time

from pollen_controller.errors import LinkError, LinkTimeout
from pollen_controller.node.events import parse_line
from pollen_controller.node.lines import command_line, read_lines


class Link:
    where = ""   # what names the node in errors (a serial link: its port)

    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self._ref = 0

    def new_ref(self) -> str:
        self._ref += 1
        return f"h{self._ref}"

    def command(self, cmd: dict):
        raise NotImplementedError

    def wait(self, match, timeout_s: float):
        """The next event for which match(event) is true, skipping the rest
        (LinkTimeout when none comes in time, LinkError when the node is gone)."""
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise LinkTimeout(f"{self.where + ': ' if self.where else ''}the node did not "
                                  f"answer within {timeout_s:.0f} s")
            try:
                ev = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                self._check_alive()
                continue
            if match(ev):
                return ev

    def ask(self, cmd: dict, answer: str, timeout_s: float = 10.0) -> dict:
        """Send a command with a fresh ref; its `answer` event, or LinkError
        with the node's own error text."""
        ref = self.new_ref()
        self.command(dict(cmd, ref=ref))
        ev = self.wait(lambda e: e.get("ref") == ref and e.get("event") in (answer, "error"),
                       timeout_s)
        if ev["event"] == "error":
            raise LinkError(ev.get("error", "the node refused the command"))
        return ev

    def _check_alive(self):
        pass

    # a link that can open its node again after losing it (SerialLink)
    reopenable = False

    def reopen(self):
        raise LinkError("this link cannot be opened again")

    def close(self):
        pass


class SerialLink(Link):
    """A node on a serial port (USB on a board; a pty for a virtual board),
    held exclusively while open (port_lock.py: a second command is told who
    has it).
    When the port goes away (unplugged, a board whose USB resets with it),
    every call raises LinkError until reopen() opens the same path again (a
    write the node does not take within 2 s counts as the port gone)."""

    reopenable = True

    def __init__(self, port: str, baudrate: int = 115200):
        super().__init__()
        self.port = self.where = port
        self.baudrate = baudrate
        self.serial = None
        self._open()

    def _open(self):
        from pollen_controller.port_lock import open_locked

        try:  # PortBusyError (a LinkError) names who has the port
            s, lock = open_locked(self.port, self.baudrate, timeout=0.2, write_timeout=2)
        except (OSError, ValueError) as e:
            raise LinkError(f"{self.port}: cannot open the port ({e})") from None
        self.serial = s
        self._lock = lock
        self.gone = None
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(s, self._stop), daemon=True)
        self._reader.start()

    def _read(self, s, stop: threading.Event):
        import serial

        def on_line(line):
            ev = parse_line(line)
            if ev is not None:
                self.events.put(ev)

        try:
            # what has come, at once (a read of a fixed size waits out the
            # 0.2 s timeout for every line shorter than that)
            read_lines(lambda: s.read(min(max(s.in_waiting, 1), 4096)), on_line, stop)
        except (serial.SerialException, OSError, TypeError) as e:
            # TypeError: pyserial reading a port closed under it
            if not stop.is_set():
                self.gone = str(e) or type(e).__name__

    def command(self, cmd: dict):
        import serial

        self._check_alive()
        try:
            self.serial.write(command_line(cmd))
        except (serial.SerialException, OSError) as e:
            self.gone = str(e)
            raise LinkError(f"{self.port}: the port went away ({e})") from None

    def _check_alive(self):
        if self.gone is not None:
            raise LinkError(f"{self.port}: the port went away ({self.gone})")

    def reopen(self):
        """Open the port again (after it went away); LinkError if it is not
        there yet. Events already read stay in `events`; a line cut short by
        the loss is dropped."""
        self.close()
        self._open()

    def close(self):
        if self.serial is None:
            return
        self._stop.set()
        try:
            self.serial.cancel_read()
            self.serial.close()
        except OSError:
            pass
        self._reader.join(1)
        self._lock.release()
        self.serial = None
        self.gone = "closed"


class ProcessLink(Link):
    """An emulated node: reads the events its NodeProcess collects."""

    def __init__(self, node):
        super().__init__()
        self.node = node
        self.events = node.events

    def command(self, cmd: dict):
        try:
            self.node.command(cmd)
        except (RuntimeError, OSError) as e:
            raise LinkError(str(e)) from None

    def _check_alive(self):
        if not self.node.running:
            raise LinkError(f"node {self.node.node_id:08x} stopped")
