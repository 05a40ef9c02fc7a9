"""`pollen share`, `pollen catalog` and `pollen fetch` as a user runs them:
through a virtual board's serial port (a real MicroPython node behind a
pseudo-terminal), next to an emulated node on the same virtual radio medium."""
import json
import random
import time

import pytest
import serial
from click.testing import CliRunner

from pollen_controller.board import provisioning as pv
from pollen_controller.board.build import build_bundle
from pollen_controller.board.firmware import compile_firmware
from pollen_controller.board.transport import Board
from pollen_controller.board.virtual import VirtualBoard
from pollen_controller.cli.main import main
from pollen_controller.emulation.medium import Medium
from pollen_controller.emulation.node_process import NodeProcess
from pollen_controller.node import files_client
from pollen_controller.node.link import ProcessLink
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
    got = json.loads(r.output)
    assert got["verified"] and got["name"] == "well map.png" and got["media_type"] == "image/png"
    assert out.read_bytes() == data
    # fetching again is immediate: the board holds it now
    r = run(main, ["fetch", theirs["cid"], "--port", port, "-o", str(tmp_path / "again")])
    assert r.exit_code == 0 and (tmp_path / "again").read_bytes() == data


def test_bad_input_is_named(tmp_path, board_and_neighbour):
    port, _ = board_and_neighbour
    run = CliRunner().invoke
    r = run(main, ["fetch", "not-a-content-id", "--port", port])
    assert r.exit_code == 1 and "content id" in r.output and "26" in r.output
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(70000))
    r = run(main, ["share", str(big), "--port", port])
    assert r.exit_code == 1 and "70000 bytes" in r.output and "max_file_bytes" in r.output
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
    assert (st["id"], st["name"]) == ("00000001", "board") and "config" not in json.loads(r.output)
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
    r = run(main, ["info", "--port", port, "--config", "--json"])
    cfg = json.loads(r.output)["config"]
    assert (cfg["hop_limit"], cfg["name"], cfg["network_key"]) == (5, "board", "(hidden)")
    r = run(main, ["reboot", "--port", port])
    assert r.exit_code == 0 and "00000001 'board' restarted" in r.output
    r = run(main, ["info", "--port", port, "--json"])
    assert json.loads(r.output)["status"]["uptime_s"] < 10
