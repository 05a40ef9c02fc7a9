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


def test_rotate_keeps_every_field_but_the_key():
    net = {**NET, "note": "a field a later version may add"}
    new = nf.rotate_network(net)
    assert new["key"] != net["key"] and nf.check_network(new, "test") == new
    assert {k: v for k, v in new.items() if k != "key"} == {k: v for k, v in net.items() if k != "key"}
    assert nf.key_fingerprint(new["key"]) != nf.key_fingerprint(net["key"])
    assert nf.rotate_network(net)["key"] != new["key"]   # a fresh random key each time


def test_a_rotated_network_goes_beside_the_old_file_dated():
    import datetime
    day = datetime.date(2026, 12, 8)
    assert str(nf.rotated_path("v/village.pollen-network.json", day)) == \
        "v/village-2026-12-08.pollen-network.json"
    # rotated again later: the date is replaced, not added to
    assert str(nf.rotated_path("village-2026-11-30.pollen-network.json", day)) == \
        "village-2026-12-08.pollen-network.json"
    assert str(nf.rotated_path("net.json", day)) == "net-2026-12-08.json"


def test_cli_rotate_writes_a_new_file_and_never_the_old_one_unasked(tmp_path, monkeypatch):
    run = CliRunner().invoke
    monkeypatch.chdir(tmp_path)
    nf.save_network(NET, tmp_path / "village.pollen-network.json")
    before = (tmp_path / "village.pollen-network.json").read_bytes()
    r = run(main, ["network", "rotate", "village.pollen-network.json"])
    assert r.exit_code == 0, r.output
    new_path = nf.rotated_path(tmp_path / "village.pollen-network.json")
    new = nf.load_network(new_path)
    assert (tmp_path / "village.pollen-network.json").read_bytes() == before   # untouched
    assert {**new, "key": NET["key"]} == NET and new["key"] != NET["key"]
    old_fp, new_fp = nf.key_fingerprint(NET["key"]), nf.key_fingerprint(new["key"])
    assert f"old key fingerprint {old_fp} (file left as it was)" in r.stdout
    assert f"new key, fingerprint {new_fp}" in r.stdout
    assert f"pollen provision --port PORT --network {new_path.name}" in r.stdout
    assert NET["key"] not in r.stdout and new["key"] not in r.stdout
    assert (new_path.stat().st_mode & 0o777) == 0o600   # it holds a key
    # the same day again: the dated file exists, and is not replaced
    r = run(main, ["network", "rotate", "village.pollen-network.json"])
    assert r.exit_code == 1 and "exists; choose another --out" in r.stderr
    assert nf.load_network(new_path) == new
    # --out; --json for scripts (no key in it)
    r = run(main, ["network", "rotate", "village.pollen-network.json", "-o", "b.json", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    b = nf.load_network(tmp_path / "b.json")
    assert out["old"] == {"file": "village.pollen-network.json", "key_fingerprint": old_fp,
                          "kept": True}
    assert out["new"] == {"file": "b.json", "key_fingerprint": nf.key_fingerprint(b["key"])}
    assert b["key"] not in r.stdout
    # over FILE itself only with --force, and then it says the old key is gone
    r = run(main, ["network", "rotate", "b.json", "-o", "b.json"])
    assert r.exit_code == 1 and "b.json exists (it is FILE)" in r.stderr
    assert nf.load_network(tmp_path / "b.json") == b
    r = run(main, ["network", "rotate", "b.json", "-o", "b.json", "--force"])
    assert r.exit_code == 0 and "(file replaced: that key is gone)" in r.stdout
    assert nf.load_network(tmp_path / "b.json")["key"] != b["key"]
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_rotate_refuses_a_bad_file_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    for field, value in (("key", "zz"), ("region", "XX868"), ("name", ""), ("version", 2)):
        (tmp_path / "bad.json").write_text(json.dumps({**NET, field: value}))
        r = run(main, ["network", "rotate", "bad.json"])
        assert r.exit_code == 1 and f"network file bad.json: field '{field}'" in r.stderr, r.output
        assert NET["key"] not in r.stderr
    (tmp_path / "half.json").write_text('{"version": 1, "na')
    r = run(main, ["network", "rotate", "half.json"])
    assert r.exit_code == 1 and "corrupt (not JSON)" in r.stderr
    r = run(main, ["network", "rotate", "none.json"])
    assert r.exit_code == 1 and "none.json: cannot be read" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "half.json"]   # nothing written


def test_rotate_help_says_what_it_does_and_what_comes_next():
    r = CliRunner().invoke(main, ["network", "rotate", "--help"])
    assert r.exit_code == 0 and "Usage: main network rotate [OPTIONS] FILE" in r.output
    text = " ".join(r.output.split())
    assert "new random key, keeping its name, region and preset" in text
    assert "FILE is left as it is" in text and "pollen provision --port PORT --network NEWFILE" in text
    assert "--force" in text and "--json" in text
