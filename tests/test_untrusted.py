"""untrusted.py: text from the air made safe to show and to name a file by."""
import unicodedata

import pytest
from hypothesis import given, strategies as st

from pollen_controller.untrusted import MAX_FILE_NAME_BYTES, safe_file_name, safe_text

HOSTILE = "red\x1b[31mX\nnewline\x07"


@pytest.mark.parametrize("raw, shown", [
    (HOSTILE, "red\\x1b[31mX\\nnewline\\x07"),
    ("a\r\tb\x00\x7f\x9b", "a\\r\\tb\\x00\\x7f\\x9b"),           # C0, DEL, C1 (CSI)
    ("abc\u202edef\u2066x\u2069", "abc\\u202edef\\u2066x\\u2069"),  # bidi override, isolate
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),        # other format characters
    ("tag\U000e0041", "tag\\U000e0041"),                         # tag characters hide text
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("half \ud83c pair", "half \\ud83c pair"),                   # a lone surrogate
    # kept: emoji (with joiner and variation selector), combining marks, RTL, the bridge mark
    ("sunflower \U0001f33b caf\u00e9 cafe\u0301", "sunflower \U0001f33b caf\u00e9 cafe\u0301"),
    ("\U0001f468\u200d\U0001f469\u200d\U0001f467 \u2764\ufe0f", "\U0001f468\u200d\U0001f469\u200d\U0001f467 \u2764\ufe0f"),
    ("\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627"),
    ("\u21c40000000c-17 hi", "\u21c40000000c-17 hi"),
    (None, ""),
    (42, "42"),
])
def test_safe_text(raw, shown):
    assert safe_text(raw) == shown


def test_safe_text_cuts_to_its_limit():
    assert safe_text("abcdef", 4) == "abc\u2026"
    assert safe_text("abcd", 4) == "abcd"
    assert safe_text("\x1b\x1b", 5) == "\\x1b\u2026"   # the escapes count


@given(st.text())
def test_nothing_unsafe_survives(s):
    out = safe_text(s)
    for c in out:
        cat = unicodedata.category(c)
        assert cat not in ("Cc", "Cs", "Zl", "Zp"), repr(c)
        assert cat != "Cf" or c in "\u200c\u200d", repr(c)
    out.encode("utf-8")   # printable on any UTF-8 terminal (no lone surrogates)
    assert safe_text(out) == out   # already safe: unchanged


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))))
def test_safe_text_keeps_what_is_safe(s):
    assert safe_text(s) == s


@pytest.mark.parametrize("raw, name", [
    (HOSTILE, "red_[31mX_newline_"),
    ("../../etc/passwd", "_.._etc_passwd"),
    ("..", "CID"),
    (".bashrc", "bashrc"),
    ("-rf", "rf"),
    ("  . -x.txt. ", "x.txt"),
    ("a\\b:c*?<>|\"d", "a_b_c______d"),
    ("\u202etxt.exe", "_txt.exe"),
    ("", "CID"),
    (None, "CID"),
    ("well map.png", "well map.png"),
    ("sunflower \U0001f33b caf\u00e9.txt", "sunflower \U0001f33b caf\u00e9.txt"),
    ("cafe\u0301", "caf\u00e9"),   # NFC
])
def test_safe_file_name(raw, name):
    assert safe_file_name(raw, "CID") == name


def test_a_long_name_is_cut_keeping_its_extension():
    out = safe_file_name("\u00e9" * 200 + ".tar.gz", "CID")
    assert out.endswith(".gz") and len(out.encode()) <= MAX_FILE_NAME_BYTES
    assert set(out[:-3]) == {"\u00e9"}   # cut at a character, not inside one


@given(st.text(max_size=300))
def test_any_name_is_one_safe_file_in_this_folder(s):
    out = safe_file_name(s, "fallback")
    assert out and len(out.encode()) <= MAX_FILE_NAME_BYTES
    assert "/" not in out and "\\" not in out and "\0" not in out
    assert out not in (".", "..") and out[0] not in ".- "
    assert all(unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp") for c in out)
    assert safe_text(out) == out


def test_pollen_console_prints_what_the_node_says_safely(tmp_path):
    # a node's line quoting a name from the air raw (MicroPython's json lets
    # C1 and bidi characters through; a traceback prints anything)
    import io
    import os
    import time

    from fakes.fake_console_node import FakeConsoleNode
    from pollen_controller.node.console import attach

    node = FakeConsoleNode(tmp_path).plug()
    raw = ('{"event": "received", "text": "sunflower \U0001f33b \u202eevil \x9b2J"}\n'
           '{"event": "status", "duty_headroom_pct": 99.90000000000001}\n')
    out = io.StringIO()

    def typed():
        yield '{"cmd": "send", "to": "all", "text": "caf\u00e9 \U0001f33b"}\n'
        yield '{"cmd": "send", "to": "all", "text": "typed as \\ud83c\\udf3b"}\n'
        yield "not json \U0001f33b\n"
        os.write(node._master, raw.encode() + b"Traceback: name 'red\x1b[31mX'\n")
        time.sleep(0.5)

    try:
        attach(node.path, out=out, lines_in=typed())
    finally:
        node.unplug()
    assert node.commands.get(timeout=2)["text"] == "caf\u00e9 \U0001f33b"   # typed: sent as UTF-8
    assert node.commands.get(timeout=2)["text"] == "typed as \U0001f33b"    # escapes joined
    shown = out.getvalue()
    assert "\x1b" not in shown and "\u202e" not in shown and "\x9b" not in shown
    assert '"text": "sunflower \U0001f33b \\u202eevil \\x9b2J"' in shown
    assert "Traceback: name 'red\\x1b[31mX'" in shown
    assert '{"event": "status", "duty_headroom_pct": 99.9}' in shown   # the float the node meant


def test_console_with_piped_input_shows_the_answers_after_the_input_ends(tmp_path):
    # `echo '{"cmd": "status"}' | pollen console --port P` (or stdin /dev/null,
    # to log a node's events): the input ends at once, the answers come after;
    # it went on only while there was input, and so printed nothing
    import threading
    import time

    from click.testing import CliRunner

    from fakes.fake_console_node import FakeConsoleNode
    from pollen_controller.cli.main import main

    node = FakeConsoleNode(tmp_path).plug()
    threading.Timer(1.5, lambda: node.emit({"event": "received", "text": "later"})).start()
    t0 = time.monotonic()
    try:
        r = CliRunner().invoke(main, ["console", "--port", node.path],
                               input='{"cmd": "status", "ref": 7}\n')
    finally:
        node.unplug()
    # shown until the node was 2 s silent (after "later"), then it ends by itself
    assert 3.4 <= time.monotonic() - t0 < 9, r.output
    assert r.exit_code == 0, r.output
    assert '"event": "status"' in r.output and '"text": "later"' in r.output, r.output
