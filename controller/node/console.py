"""`pollen console`: a node's newline-JSON console over its serial port. What
the node prints is shown with control, escape and bidi characters escaped
(untrusted.py); what is typed goes to the node as UTF-8."""
from __future__ import annotations

import json
import sys
import threading
import time

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


QUIET_AFTER_INPUT_S = 2.0    # input ended: go on until the node is this long silent
MOST_AFTER_INPUT_S = 10.0    # ... and no longer than this (a chatty node)


def attach(port: str, baudrate: int = 115200, out=None, lines_in=None,
           listen_after_input: bool = False):
    """Show the node's lines on out and send it what comes from lines_in,
    until lines_in ends, Ctrl-C or the port going away. With
    listen_after_input, the node's answers to the last lines are shown too
    (input from a pipe ends at once, the answers come after): it goes on
    until the node has been silent for QUIET_AFTER_INPUT_S, at most
    MOST_AFTER_INPUT_S. out and lines_in default to sys.stdout and sys.stdin
    as they are at the call."""
    out = sys.stdout if out is None else out
    lines_in = sys.stdin if lines_in is None else lines_in
    import serial

    from pollen_controller.port_lock import open_locked

    try:  # held exclusively: a second command is told this console has the port
        s, lock = open_locked(port, baudrate, timeout=0.2)
    except (OSError, ValueError) as e:
        raise BoardError(f"{port}: cannot open the port ({e})") from None
    stop = threading.Event()
    last_line = [time.monotonic()]

    def reader():
        def on_line(line):
            last_line[0] = time.monotonic()
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
        ended = time.monotonic()
        while (listen_after_input and not stop.is_set()
               and time.monotonic() - max(last_line[0], ended) < QUIET_AFTER_INPUT_S
               and time.monotonic() - ended < MOST_AFTER_INPUT_S):
            stop.wait(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        t.join(1)
        s.close()
        lock.release()
