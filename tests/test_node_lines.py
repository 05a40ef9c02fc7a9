"""The one console line reader (controller/node/lines.py), fed byte chunks as a
serial port or a pipe gives them."""
import threading

import pytest

from pollen_controller.node.lines import MAX_LINE_BYTES, read_lines


def _lines(chunks):
    feed = iter(list(chunks) + [None])
    got = []
    read_lines(lambda: next(feed), got.append)
    return got


@pytest.mark.parametrize("chunks, lines", [
    ([b'{"event": "started"}\n'], ['{"event": "started"}']),
    ([b"one\ntw", b"", b"o\nthr", b"ee\n"], ["one", "two", "three"]),   # b"": a read timed out
    ([b"crlf\r\n", b"\r\n"], ["crlf", ""]),
    ([b"bad \xff byte\n"], ["bad \ufffd byte"]),
    ([b"last line, no end"], ["last line, no end"]),                   # the stream ended
    ([], []),
])
def test_chunks_become_lines(chunks, lines):
    assert _lines(chunks) == lines


def test_a_line_longer_than_the_bound_comes_in_pieces():
    got = _lines([b"x" * (2 * MAX_LINE_BYTES + 5), b"\n"])
    assert [len(g) for g in got] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 5]


def test_it_stops_when_told_and_leaves_reading_errors_to_the_caller():
    stop = threading.Event()
    got = []

    def read():
        stop.set()
        return b"a\nb"

    read_lines(read, got.append, stop)
    assert got == ["a"]  # the part line is dropped with the stop

    def broken():
        raise OSError("the port went away")

    with pytest.raises(OSError):
        read_lines(broken, got.append)
