"""`pollen console`: a node's newline-JSON console over its serial port."""
from __future__ import annotations

import sys
import threading

from pollen_controller.board.transport import BoardError


def attach(port: str, baudrate: int = 115200, out=sys.stdout, lines_in=sys.stdin):
    import serial

    try:
        s = serial.Serial(port, baudrate, timeout=0.2)
    except (serial.SerialException, OSError) as e:
        raise BoardError(f"{port}: cannot open the port ({e})") from None
    stop = threading.Event()

    def reader():
        buf = b""
        while not stop.is_set():
            try:
                chunk = s.read(256)
            except (serial.SerialException, OSError):
                out.write(f"{port}: the port went away\n")
                stop.set()
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                out.write(line.decode(errors="replace").rstrip("\r") + "\n")
                out.flush()

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
