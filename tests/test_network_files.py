"""Network files and the strings that pass them on (board/network_files.py,
`pollen network create|share|import|info`): a typo is refused naming where,
the key fingerprint is shown everywhere, import does not replace another key."""
import base64
import json

import pytest
from click.testing import CliRunner

from pollen_controller.board import network_files as nf
from pollen_controller.cli.main import main


def _typo(s, pos):  # change the 1-based character pos
    return s[:pos - 1] + ("A" if s[pos - 1] != "A" else "B") + s[pos:]


# a fixed network, so the characters around each typo below are always the same
NET = nf.check_network({"version": 1, "name": "village", "region": "EU868", "preset": "LongFast",
                        "key": bytes(range(32)).hex()}, "test")


def test_a_string_round_trips_and_a_typo_anywhere_is_refused_naming_where():
    net = NET
    s = nf.share_string(net)
    assert s.startswith("pollen2:") and nf.parse_share_string(s) == net
    assert nf.parse_share_string(s[:40] + "\n  " + s[40:]) == net   # wrapped over lines
    for pos in [*range(9, len(s), 9), len(s) - 1, len(s)]:   # after the prefix, to the end
        with pytest.raises(nf.NetworkError, match="checksum does not match"):
            nf.parse_share_string(_typo(s, pos))
    with pytest.raises(nf.NetworkError, match=r"character 80 \('A'\) looks mistyped"):
        nf.parse_share_string(_typo(s, 80))
    with pytest.raises(nf.NetworkError, match=r"character 100 \('x'\) looks added"):
        nf.parse_share_string(s[:99] + "x" + s[99:])
    with pytest.raises(nf.NetworkError, match="checksum does not match"):
        nf.parse_share_string(s[:-10])                     # cut short
    with pytest.raises(nf.NetworkError, match=r"character 31 \('!'\) cannot be in one"):
        nf.parse_share_string(s[:30] + "!" + s[31:])
    with pytest.raises(nf.NetworkError, match="start with 'pollen2:'"):
        nf.parse_share_string("garbage")


def test_old_pollen1_strings_still_import():
    # as share_string wrote them before the checksum (organisers have passed these on)
    net = nf.create_network("old", "EU433", "LongFast")
    body = json.dumps([net["name"], net["region"], net["preset"], net["key"]],
                      separators=(",", ":")).encode()
    old = "pollen1:" + base64.urlsafe_b64encode(body).decode().rstrip("=")
    assert nf.parse_share_string(old) == net and not nf.has_checksum(old)
    with pytest.raises(nf.NetworkError, match="damaged"):
        nf.parse_share_string("pollen1:abc")


def test_the_fingerprint_is_short_stable_and_tells_keys_apart():
    fp = nf.key_fingerprint("00" * 32)
    assert fp == nf.key_fingerprint("00" * 32) and len(fp) == 19 and fp.count("-") == 3
    assert fp != nf.key_fingerprint("00" * 31 + "01")
    assert "00" * 8 not in fp   # a hash, not the key


def test_cli_create_share_import_info_show_the_fingerprint_and_guard_the_file(tmp_path,
                                                                            monkeypatch):
    run = CliRunner().invoke
    monkeypatch.chdir(tmp_path)
    r = run(main, ["network", "create", "village"])
    assert r.exit_code == 0, r.output
    net = nf.load_network("village.pollen-network.json")
    fp = nf.key_fingerprint(net["key"])
    assert f"key fingerprint: {fp}" in r.stdout
    r = run(main, ["network", "share", "village.pollen-network.json"])
    s = r.stdout.splitlines()[0]
    assert r.stdout.splitlines()[1] == f"key fingerprint: {fp}"
    r = run(main, ["network", "info", "village.pollen-network.json"])
    assert fp in r.stdout and net["key"] not in r.stdout
    assert "EU868 (868.1 MHz, duty cycle 1 %), preset LongFast" in r.stdout
    r = run(main, ["network", "info", s, "--json"])
    assert json.loads(r.stdout)["key_fingerprint"] == fp
    r = run(main, ["network", "import", s])                  # same key: fine, says so
    assert r.exit_code == 0 and "unchanged" in r.stdout and fp in r.stdout
    run(main, ["network", "create", "other", "-o", "other.json"])
    other = nf.load_network("other.json")
    r = run(main, ["network", "import", s, "-o", "other.json"])
    assert r.exit_code == 1 and "holds network 'other' with another key" in r.stderr
    assert fp in r.stderr and nf.load_network("other.json") == other   # untouched
    r = run(main, ["network", "import", s, "-o", "other.json", "--force"])
    assert r.exit_code == 0 and nf.load_network("other.json") == net
    r = run(main, ["network", "import", _typo(s, 120), "-o", "typo.json"])
    assert r.exit_code == 1 and "character 120" in r.stderr
    r = run(main, ["network", "create", "x", "--region", "XX"])
    assert r.exit_code == 2 and "EU868" in r.stderr and "AS923" in r.stderr


def test_cli_import_of_an_old_string_warns_and_same_key_updates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = nf.create_network("old", "EU868", "LongFast")
    nf.save_network({**net, "preset": "ShortFast"}, tmp_path / "old.pollen-network.json")
    body = json.dumps([net["name"], net["region"], net["preset"], net["key"]],
                      separators=(",", ":")).encode()
    old = "pollen1:" + base64.urlsafe_b64encode(body).decode().rstrip("=")
    r = CliRunner().invoke(main, ["network", "import", old])
    assert r.exit_code == 0 and "same key; updated preset" in r.stdout
    assert "a pollen1: string has no checksum" in r.stderr
    assert nf.load_network("old.pollen-network.json") == net


def test_a_shared_name_is_never_a_path_elsewhere_nor_control_characters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(("../../evil", "a/b", ".hidden")):
        s = nf.share_string({**nf.create_network("x"), "name": name})
        r = CliRunner().invoke(main, ["network", "import", s])
        assert r.exit_code == 1 and "cannot be a file name here" in r.stderr
        assert "-o FILE" in r.stderr
        r = CliRunner().invoke(main, ["network", "import", s, "-o", f"ok{i}.json"])
        assert r.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok0.json", "ok1.json", "ok2.json"]
    for name in ("red\x1b[31m", "a\nb", "   "):
        with pytest.raises(nf.NetworkError, match="field 'name': expected printable text"):
            nf.parse_share_string(nf.share_string({**nf.create_network("x"), "name": name}))


def test_the_typo_search_is_bounded():
    import time

    t0 = time.monotonic()
    with pytest.raises(nf.NetworkError, match=r"checksum does not match \(characters changed"):
        nf.parse_share_string("pollen2:" + "A" * 100_000)
    assert time.monotonic() - t0 < 2
