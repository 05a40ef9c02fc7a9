"""`pollen share`, `pollen catalog` and `pollen fetch` as a user runs them:
through a virtual board's serial port (a real MicroPython node behind a
pseudo-terminal), next to an emulated node on the same virtual radio medium."""
import json
import os
import random
import time

import pytest
import serial
from click.testing import CliRunner

from pollen import files
from pollen_controller.board import provisioning as pv
from pollen_controller.board.build import build_bundle
from pollen_controller.board.firmware import compile_firmware
from pollen_controller.board.transport import Board
from pollen_controller.board.virtual import VirtualBoard
from pollen_controller.cli.main import main
from pollen_controller.emulation.medium import Medium
from pollen_controller.emulation.node_process import NodeProcess
from pollen_controller.node import files_client
from pollen_controller.node.link import ProcessLink, SerialLink
from pollen_controller.topology import line


def _boot(port):
    # Ctrl-D at the REPL: the board reboots into main.py; wait for "started"
    s = serial.Serial(port, 115200, timeout=0.2)
    s.write(b"\r\x04")
    buf = b""
    deadline = time.monotonic() + 10
    while b'"started"' not in buf and time.monotonic() < deadline:
        try:
            buf += s.read(256)
        except serial.SerialException:
            time.sleep(0.05)
    s.close()
    assert b'"started"' in buf, buf[-300:]


@pytest.fixture(scope="module")
def board_and_neighbour(tmp_path_factory):
    # one board and neighbour for the module's tests (booting them is most of
    # a test's time); the bad-input test runs after the share and fetch
    tmp_path = tmp_path_factory.mktemp("board")
    net = pv.create_network("village", "EU868", "ShortFast")
    with Medium(line(2)) as medium, VirtualBoard(tmp_path / "board") as vb:
        time.sleep(0.3)
        build_bundle(None, tmp_path / "bundle")
        with Board(vb.port) as b:
            pv.install_bundle(b, tmp_path / "bundle")
            pv.provision(b, net, "board", 1, {"kind": "udp", "port": medium.port})
        compile_firmware(tmp_path / "fw")
        other = NodeProcess(2, tmp_path / "n2", {
            "node_id": "00000002", "name": "emulated", "network_key": net["key"],
            "region": "EU868", "preset": "ShortFast", "beacon_interval_ms": 2000,
            "radio": {"kind": "udp", "port": medium.port}}, tmp_path / "fw")
        other.start()
        try:
            _boot(vb.port)
            time.sleep(3)  # beacons: each hears the other
            yield vb.port, ProcessLink(other)
        finally:
            other.stop(hard=True)


def test_share_catalog_and_fetch_through_a_virtual_board(tmp_path, board_and_neighbour):
    port, neighbour = board_and_neighbour
    run = CliRunner().invoke
    # share from the board: the emulated neighbour hears of it
    notice = tmp_path / "Bus timetable.txt"
    notice.write_text("08:15 village hall\n17:40 market\n" * 40)
    r = run(main, ["share", str(notice), "--port", port, "--json"])
    assert r.exit_code == 0, r.output
    shared = json.loads(r.output)
    assert shared["size_bytes"] == notice.stat().st_size and shared["media_type"] == "text/plain"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(e["cid"] == shared["cid"] for e in files_client.catalog(neighbour)):
            break
        time.sleep(1)
    else:
        raise AssertionError("the neighbour never heard of the shared file")
    # the board's catalog: its own file, found by a search in any case
    r = run(main, ["catalog", "--port", port, "--search", "TIMETABLE", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [(x["cid"], x["held"], x["hops"]) for x in rows] == [(shared["cid"], "complete", 0)]
    r = run(main, ["catalog", "--port", port])
    assert "Bus timetable.txt" in r.output and shared["cid"] in r.output
    # fetch through the board a file the neighbour shares
    data = random.Random(4).randbytes(3500)   # 18 chunks: more than one window of 16
    theirs = files_client.share(neighbour, data, "well map.png")
    out = tmp_path / "got" / "map.png"
    r = run(main, ["fetch", theirs["cid"], "--port", port, "-o", str(out), "--timeout", "120",
                   "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)   # (stderr may say it is not in the board's catalog yet)
    assert got["verified"] and got["name"] == "well map.png" and got["media_type"] == "image/png"
    assert out.read_bytes() == data
    # fetching again is immediate: the board holds it now
    r = run(main, ["fetch", theirs["cid"], "--port", port, "-o", str(tmp_path / "again")])
    assert r.exit_code == 0 and (tmp_path / "again").read_bytes() == data


HOSTILE = "red\x1b[31mX\nnewline\x07"


def test_names_from_the_air_are_shown_and_saved_safely(tmp_path, board_and_neighbour, monkeypatch):
    # any member of the network can name a file so: the catalog and fetch
    # show it escaped, and fetch makes a safe local name of it
    port, neighbour = board_and_neighbour
    run = CliRunner().invoke
    data = b"twelve bytes"
    theirs = files_client.share(neighbour, data, HOSTILE, "text/plain")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = run(main, ["catalog", "--port", port, "--json"])
        rows = [x for x in json.loads(r.output) if x["cid"] == theirs["cid"]]
        if rows:
            break
        time.sleep(1)
    else:
        raise AssertionError("the board never heard of the file")
    assert rows[0]["name"] == HOSTILE and rows[0]["held"] is None   # JSON: as it came
    assert (rows[0]["size_bytes"], rows[0]["size_exact"]) == (1024, False)   # KiB, rounded up
    r = run(main, ["catalog", "--port", port])
    assert r.exit_code == 0 and "\x1b" not in r.output and "\x07" not in r.output
    line, = [x for x in r.output.splitlines() if theirs["cid"] in x]
    # shown escaped on its own line; only heard of: its size is a bound (KiB, rounded up)
    assert "red\\x1b[31mX\\nnewline\\x07" in line and "\u22641K" in line
    monkeypatch.chdir(tmp_path)
    r = run(main, ["fetch", theirs["cid"], "--port", port, "--timeout", "60"])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert os.listdir(tmp_path) == ["red_[31mX_newline_"]
    saved = tmp_path / "red_[31mX_newline_"
    assert saved.read_bytes() == data
    # held now: its exact size
    r = run(main, ["catalog", "--port", port, "--search", "newline"])
    assert " 12 " in r.output
    # an existing file is not replaced without --force
    saved.write_bytes(b"mine")
    r = run(main, ["fetch", theirs["cid"], "--port", port])
    assert r.exit_code == 1 and "red_[31mX_newline_: a file of that name exists" in r.output
    assert "--force" in r.output and saved.read_bytes() == b"mine"
    out = tmp_path / "given.txt"
    out.write_bytes(b"mine")
    r = run(main, ["fetch", theirs["cid"], "--port", port, "-o", str(out)])
    assert r.exit_code == 1 and "given.txt: a file of that name exists" in r.output
    r = run(main, ["fetch", theirs["cid"], "--port", port, "--force"])
    assert r.exit_code == 0 and saved.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["given.txt", "red_[31mX_newline_"]


def test_text_beyond_ascii_arrives_intact_both_ways(board_and_neighbour):
    # the host writes UTF-8 to the node, not \\ud83c\\udf3b escapes (which
    # MicroPython's json does not join): emoji, combining marks, RTL, joiners
    port, neighbour = board_and_neighbour
    text = "sunflower \U0001f33b caf\u00e9 cafe\u0301 \u05e9\u05dc\u05d5\u05dd \U0001f468\u200d\U0001f469\u200d\U0001f467"
    link = SerialLink(port)
    try:
        link.ask({"cmd": "send", "to": "00000002", "text": text}, "sent")
        ev = neighbour.wait(lambda e: e.get("event") == "received" and e.get("from") == "00000001", 30)
        assert ev["text"] == text
        neighbour.command({"cmd": "send", "to": "00000001", "text": text + " back"})
        ev = link.wait(lambda e: e.get("event") == "received", 30)
        assert ev["text"] == text + " back"
    finally:
        link.close()


def test_bad_input_is_named(tmp_path, board_and_neighbour):
    port, _ = board_and_neighbour
    run = CliRunner().invoke
    r = run(main, ["fetch", "not-a-content-id", "--port", port])
    assert r.exit_code == 1 and "content id" in r.output and "26" in r.output
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(70000))
    r = run(main, ["share", str(big), "--port", port])
    assert r.exit_code == 1 and "70000 bytes" in r.output and "max_file_bytes" in r.output
    # the size is checked before anything is read: a device, a sparse 1 GiB file
    r = run(main, ["share", "/dev/zero", "--port", port])
    assert r.exit_code == 1 and "not a regular file" in r.output
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
    r = run(main, ["share", str(sparse), "--port", port])
    assert r.exit_code == 1 and "1073741824 bytes" in r.output and "262144" in r.output
    assert "no node takes a larger file" in r.output   # not "the limit" when the node's is 64K
    # a content id no node has: not found, not "the node did not answer"
    unknown = files.cid_str(bytes(range(16)))
    r = run(main, ["fetch", unknown, "--port", port, "--timeout", "2"])
    assert r.exit_code == 1 and "not found: no node in reach announced it" in r.output
    # ... and said before the wait, which is 10 minutes by default
    assert "is not in the node's catalog" in r.output.split("not found")[0]
    r = run(main, ["catalog", "--port", str(tmp_path / "ttyNOPE")])
    assert r.exit_code == 1 and "cannot open the port" in r.output


def test_one_shot_commands_info_send_set_config_and_reboot(tmp_path, board_and_neighbour):
    # pollen info/send/set/config/reboot on the same board (after the file
    # tests: set, import and reboot restart its node)
    port, neighbour = board_and_neighbour
    run = CliRunner().invoke
    r = run(main, ["info", "--port", port, "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)["status"]
    assert (st["id"], st["name"]) == ("00000001", "board")
    cfg = json.loads(r.output)["config"]   # the key never leaves the node by its console
    assert (cfg["node_id"], cfg["name"], cfg["network_key"]) == ("00000001", "board", "(hidden)")
    assert [(n["id"], n["name"]) for n in st["neighbours"]] == [("00000002", "emulated")]
    # by the neighbour's name, acknowledged end to end
    r = run(main, ["send", "bread at eight", "--port", port, "--to", "emulated", "--wait-ack",
                   "--json"])
    assert r.exit_code == 0, r.output
    sent = json.loads(r.output)
    assert (sent["to"], sent["state"], sent["hops"]) == ("00000002", "delivered", 1)
    got = neighbour.wait(lambda e: e.get("event") == "received", 5)
    assert (got["text"], got["from"], got["id"]) == ("bread at eight", "00000001", sent["id"])
    r = run(main, ["send", "x", "--port", port, "--to", "mill"])
    assert r.exit_code == 1 and "no neighbour is named 'mill'" in r.output
    # set: checked first (the node restarts unchanged), then written and restarted with it
    r = run(main, ["set", "hop_limit=9", "--port", port])
    assert r.exit_code == 1 and "'hop_limit': expected an integer 1..7, got 9" in r.output
    r = run(main, ["set", "name=bakery", "beacon_interval_ms=2000", "--port", port, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"changed": {"name": "bakery", "beacon_interval_ms": 2000},
                                    "id": "00000001", "name": "bakery"}
    # export without the key, edit, import: every field checked, the node's key kept
    r = run(main, ["config", "export", "--port", port])
    assert r.exit_code == 0 and "name: bakery" in r.output and "network_key:" not in r.output
    exported = tmp_path / "node.yaml"
    exported.write_text(r.output.replace("name: bakery", "name: board") + "hop_limit: 5\n")
    r = run(main, ["config", "import", str(exported), "--port", port])
    assert r.exit_code == 0 and "00000001 'board' restarted" in r.output, r.output
    boots = r.output
    r = run(main, ["info", "--port", port, "--json"])   # the config from the console
    out = json.loads(r.output)
    cfg = out["config"]
    assert (cfg["hop_limit"], cfg["name"], cfg["network_key"]) == (5, "board", "(hidden)"), boots
    again = run(main, ["config", "export", "--port", port]).output
    assert "name: board" in again and "network_key:" not in again
    r = run(main, ["info", "--port", port, "--json"])
    assert json.loads(r.output)["status"]["uptime_s"] >= out["status"]["uptime_s"]  # not restarted
    r = run(main, ["reboot", "--port", port])
    assert r.exit_code == 0 and "00000001 'board' restarted" in r.output
    r = run(main, ["info", "--port", port, "--json"])
    assert json.loads(r.output)["status"]["uptime_s"] < 10
