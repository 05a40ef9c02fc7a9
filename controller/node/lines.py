"""A node's console read a line at a time: the one reader behind every console
the host reads (a serial port: node/link.py and node/console.py; an emulated
node's stdout: emulation/node_process.py). Each caller runs it in its own
thread and handles the errors of its own `read`. And the one writer of JSON
for a node (command_line, node_json): UTF-8 as it is, never \\ud83c\\udf3b
surrogate escapes, which MicroPython's json does not join into one character."""
from __future__ import annotations

import json

MAX_LINE_BYTES = 65536   # a longer line (none is: a node's heap is smaller) is passed on in pieces


def read_lines(read, on_line, stop=None):
    """Call read() for the next bytes and on_line(text) for each whole line in
    them (decoded, bad bytes replaced; without its line end), until stop (a
    threading.Event) is set or read() returns None: the end of the stream,
    where a last line without its end is passed on too. read() may return b""
    (nothing came in its timeout); what it raises goes to the caller, and a
    line cut short by it is dropped."""
    buf = b""
    while stop is None or not stop.is_set():
        chunk = read()
        if chunk is None:
            if buf:
                on_line(_text(buf))
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            on_line(_text(line))
        while len(buf) > MAX_LINE_BYTES:
            on_line(_text(buf[:MAX_LINE_BYTES]))
            buf = buf[MAX_LINE_BYTES:]


def _text(line: bytes) -> str:
    return line.decode(errors="replace").rstrip("\r")


def node_json(value, indent: int | None = None) -> str:
    """JSON as a node reads it (a command, config.json): characters beyond
    ASCII as themselves, not as \\u escapes (MicroPython's json.loads turns
    an escaped surrogate pair into two broken characters: emoji garbled)."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def command_line(cmd: dict) -> bytes:
    """A console command as the line written to a node: UTF-8 JSON and a
    newline. A lone surrogate (not encodable) is written as its JSON escape."""
    return node_json(cmd).encode("utf-8", errors="backslashreplace") + b"\n"
