"""`pollen console`: a node's newline-JSON console over its serial port. What
the node prints is shown with control, escape and bidi characters escaped
(untrusted.py); what is typed goes to the node as UTF-8."""
from __future__ import annotations

import json
import sys
import threading

from pollen_controller.errors import BoardError
from pollen_controller.node.events import tidy_line
from pollen_controller.node.lines import command_line, read_lines
from pollen_controller.untrusted import safe_text


def _typed(line: str) -> bytes:
    # a typed command as the node reads it: a JSON object written again as
    # UTF-8 (a typed "\\ud83c\\udf3b" becomes the emoji, which MicroPython's
    # json would not join); anything else as typed, for the node to answer
    line = line.rstrip("\r\n")
    try:
        cmd = json.loads(line)
    except ValueError:
        cmd = None
    if isinstance(cmd, dict):
        return command_line(cmd)
    return line.encode("utf-8", errors="backslashreplace") + b"\n"


def attach(port: str, baudrate: int = 115200, out=None, lines_in=None,
           listen_after_input: bool = False):
    """Show the node's lines on out and send it what comes from lines_in,
    until lines_in ends (or, with listen_after_input, until Ctrl-C or the
    port going away: input from a pipe or /dev/null ends at once, and the
    answers, the events, come after). out and lines_in default to
    sys.stdout and sys.stdin as they are at the call."""
    out = sys.stdout if out is None else out
    lines_in = sys.stdin if lines_in is None else lines_in
    import serial

    from pollen_controller.port_lock import open_locked

    try:  # held exclusively: a second command is told this console has the port
        s, lock = open_locked(port, baudrate, timeout=0.2)
    except (OSError, ValueError) as e:
        raise BoardError(f"{port}: cannot open the port ({e})") from None
    stop = threading.Event()

    def reader():
        def on_line(line):
            # the node's lines quote names and texts from the air: shown safely
            out.write(safe_text(tidy_line(line)) + "\n")
            out.flush()

        try:
            read_lines(lambda: s.read(256), on_line, stop)
        except (serial.SerialException, OSError):
            out.write(f"{port}: the port went away\n")
            stop.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        for line in lines_in:
            if stop.is_set():
                break
            s.write(_typed(line))
        while listen_after_input and not stop.is_set():
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        t.join(1)
        s.close()
        lock.release()
