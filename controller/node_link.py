"""A conversation with one node's JSON console (docs/console.md): commands
out, events in. Two kinds of link, one interface:

  SerialLink(port)        a board or virtual board on a serial port
  ProcessLink(node)       an emulated node (emulation.NodeProcess)

    link.command({"cmd": "status"})
    ev = link.wait(lambda e: e.get("event") == "status", timeout_s=5)
"""
from __future__ import annotations

import json
import queue
import threading
import time


class LinkError(RuntimeError):
    pass


class Link:
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
        (LinkError when none comes in time or the node is gone)."""
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise LinkError(f"the node did not answer within {timeout_s:.0f} s")
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

    def close(self):
        pass


def parse_line(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None  # boot chatter, a REPL banner: not an event
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    return ev if isinstance(ev, dict) else None


class SerialLink(Link):
    """A node on a serial port (USB on a board; a pty for a virtual board)."""

    def __init__(self, port: str, baudrate: int = 115200):
        super().__init__()
        import serial

        try:
            self.serial = serial.Serial(port, baudrate, timeout=0.2)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"{port}: cannot open the port ({e})") from None
        self.port = port
        self.gone = None
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        import serial

        buf = b""
        while not self._stop.is_set():
            try:
                buf += self.serial.read(512)
            except (serial.SerialException, OSError) as e:
                self.gone = str(e)
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                ev = parse_line(line.decode(errors="replace"))
                if ev is not None:
                    self.events.put(ev)

    def command(self, cmd: dict):
        import serial

        try:
            self.serial.write(json.dumps(cmd).encode() + b"\n")
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"{self.port}: the port went away ({e})") from None

    def _check_alive(self):
        if self.gone is not None:
            raise LinkError(f"{self.port}: the port went away ({self.gone})")

    def close(self):
        self._stop.set()
        self._reader.join(1)
        self.serial.close()


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
