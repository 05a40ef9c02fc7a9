"""`pollen console`: a node's newline-JSON console over its serial port."""
from __future__ import annotations

import sys
import threading

from pollen_controller.errors import BoardError
from pollen_controller.node.lines import read_lines


def attach(port: str, baudrate: int = 115200, out=sys.stdout, lines_in=sys.stdin):
    import serial

    from pollen_controller.port_lock import open_locked

    try:  # held exclusively: a second command is told this console has the port
        s, lock = open_locked(port, baudrate, timeout=0.2)
    except (OSError, ValueError) as e:
        raise BoardError(f"{port}: cannot open the port ({e})") from None
    stop = threading.Event()

    def reader():
        def on_line(line):
            out.write(line + "\n")
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
            s.write(line.rstrip("\n").encode() + b"\n")
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        t.join(1)
        s.close()
        lock.release()
