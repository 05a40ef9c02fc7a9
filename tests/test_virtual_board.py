"""The board workflow on a virtual board (a real MicroPython unix-port process
behind a pseudo-terminal, spoken to with mpremote): build, install, provision,
boot, and talk to the node's console — next to an emulated node on the same
virtual radio medium."""
import json
import threading
import time

import pytest
import serial

from pollen_controller.board import provisioning as pv
from pollen_controller.board.build import build_bundle
from pollen_controller.board.firmware import compile_firmware
from pollen_controller.board.transport import Board, BoardError
from pollen_controller.board.virtual import VirtualBoard
from pollen_controller.emulation.medium import Medium
from pollen_controller.emulation.node_process import NodeProcess
from pollen_controller.topology import line


@pytest.fixture
def vboard(tmp_path):
    with VirtualBoard(tmp_path / "board") as vb:
        time.sleep(0.3)
        yield vb


def test_install_is_verified_and_a_second_run_skips_everything(tmp_path, vboard):
    manifest = build_bundle(None, tmp_path / "bundle")
    with Board(vboard.port) as b:
        first = pv.install_bundle(b, tmp_path / "bundle")
        assert len(first["written"]) == len(manifest["files"]) and first["skipped"] == []
        assert first["filesystem"] == "VfsPosix"   # the unix port: renames are atomic
        # a file damaged on the board (an unplug mid-write) is written again
        b.write_atomic("pollen/node.mpy", b"half a file")
        again = pv.install_bundle(b, tmp_path / "bundle")
    # main.py went first (a cut now boots to the REPL) and came back last
    assert again["written"] == ["pollen/node.mpy", "main.py"]
    on_disk = json.loads((vboard.folder / "manifest.json").read_text())
    assert on_disk == manifest


def test_provision_writes_config_atomically_and_names_bad_input(tmp_path, vboard):
    net = pv.create_network("village", "EU868", "ShortFast")
    with Board(vboard.port) as b:
        cfg = pv.provision(b, net, "alice", 0x1234, {"kind": "udp", "port": 47001})
        with pytest.raises(ValueError, match="name: expected at most 16 bytes"):
            pv.provision(b, net, "a name far too long for a node", 0x1235)
    got = json.loads((vboard.folder / "config.json").read_text())
    assert got == cfg and got["node_id"] == "00001234" and got["network_key"] == net["key"]
    assert not list(vboard.folder.glob("*.tmp"))
    # re-provisioned onto a new network: id, name, radio and its own settings kept
    (vboard.folder / "config.json").write_text(json.dumps({**got, "hop_limit": 3}))
    net2 = pv.create_network("hills", "EU868", "ShortFast")
    with Board(vboard.port) as b:
        kept = []
        again = pv.provision(b, net2, kept=kept)
        renamed = pv.provision(b, net2, name="bob")
    assert kept == ["node_id", "name", "radio", "hop_limit"]
    assert (again["node_id"], again["name"], again["radio"], again["hop_limit"]) == \
        ("00001234", "alice", {"kind": "udp", "port": 47001}, 3)
    assert again["network_key"] == net2["key"] and again["network"] == "hills"
    assert (renamed["node_id"], renamed["name"]) == ("00001234", "bob")
    # a damaged config.json: refused, unless a new identity is given in full
    (vboard.folder / "config.json").write_text("{half a fi")
    with Board(vboard.port) as b:
        with pytest.raises(BoardError, match="config.json on the board is damaged .*give "
                                             "--node-id and --name"):
            pv.provision(b, net2, name="bob")
        fresh = pv.provision(b, net2, name="bob", node_id=0x1234)
    assert fresh["node_id"] == "00001234" and "hop_limit" not in fresh


def test_a_node_re_provisioned_after_a_rotation_keeps_its_identity(tmp_path, vboard, monkeypatch):
    """pollen network rotate, then pollen provision with the new file (the
    admin's steps when a node is lost): the node keeps its id, name, radio and
    settings, and has the new key; the old file is as it was."""
    from click.testing import CliRunner

    from pollen_controller.board.network_files import load_network
    from pollen_controller.cli.main import main

    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    build_bundle(None, tmp_path / "bundle")
    with Board(vboard.port) as b:
        pv.install_bundle(b, tmp_path / "bundle")
    assert run(main, ["network", "create", "village", "--preset", "ShortFast"]).exit_code == 0
    old = load_network("village.pollen-network.json")
    r = run(main, ["provision", "--port", vboard.port, "--network", "village.pollen-network.json",
                   "--name", "alice", "--node-id", "1234", "--radio", "udp:47001"])
    assert r.exit_code == 0, r.output
    (vboard.folder / "config.json").write_text(   # a setting of its own, as a node may have
        json.dumps({**json.loads((vboard.folder / "config.json").read_text()), "hop_limit": 3}))
    r = run(main, ["network", "rotate", "village.pollen-network.json", "-o", "new.json"])
    assert r.exit_code == 0, r.output
    new = load_network("new.json")
    r = run(main, ["provision", "--port", vboard.port, "--network", "new.json"])
    assert r.exit_code == 0, r.output
    assert "kept from the board's config.json: node_id, name, radio, hop_limit" in r.stdout
    cfg = json.loads((vboard.folder / "config.json").read_text())
    assert (cfg["node_id"], cfg["name"], cfg["radio"], cfg["hop_limit"]) == \
        ("00001234", "alice", {"kind": "udp", "port": 47001}, 3)
    assert cfg["network"] == "village" and cfg["network_key"] == new["key"] != old["key"]
    assert load_network("village.pollen-network.json") == old


def test_missing_port_and_silent_board_give_clear_errors(tmp_path):
    with pytest.raises(BoardError, match="cannot open the port"):
        Board(str(tmp_path / "ttyNOPE"))


def test_provisioned_virtual_board_boots_and_talks_to_an_emulated_neighbour(tmp_path, vboard):
    key_net = pv.create_network("village", "EU868", "ShortFast")
    topo = line(2)  # nodes 1 and 2
    with Medium(topo) as medium:
        build_bundle(None, tmp_path / "bundle")
        with Board(vboard.port) as b:
            pv.install_bundle(b, tmp_path / "bundle")
            pv.provision(b, key_net, "virtual", 1, {"kind": "udp", "port": medium.port})
        fw = tmp_path / "fw"
        compile_firmware(fw)
        other = NodeProcess(2, tmp_path / "n2", {
            "node_id": "00000002", "name": "emulated", "network_key": key_net["key"],
            "region": "EU868", "preset": "ShortFast", "beacon_interval_ms": 2000,
            "radio": {"kind": "udp", "port": medium.port}}, fw)
        other.start()
        try:
            port = serial.Serial(vboard.port, 115200, timeout=0.2)
            lines = []
            stop = threading.Event()

            def read():
                buf = b""
                while not stop.is_set():
                    try:
                        buf += port.read(256)
                    except serial.SerialException:  # the board rebooting: read on
                        time.sleep(0.05)
                        continue
                    while b"\n" in buf:
                        line_, buf = buf.split(b"\n", 1)
                        lines.append(line_.decode(errors="replace").strip())

            t = threading.Thread(target=read, daemon=True)
            t.start()
            port.write(b"\r\x04")  # Ctrl-D at the REPL: the board reboots into main.py
            deadline = time.monotonic() + 10
            while not any('"started"' in l for l in lines) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert any('"started"' in l for l in lines), lines[-5:]
            time.sleep(3)  # beacons
            port.write(b'{"cmd": "send", "to": "00000002", "text": "from the virtual board"}\n')
            deadline = time.monotonic() + 15
            got = None
            while got is None and time.monotonic() < deadline:
                try:
                    ev = other.events.get(timeout=0.2)
                except Exception:
                    continue
                if ev.get("event") == "received":
                    got = ev
            assert got and got["text"] == "from the virtual board" and got["from"] == "00000001"
            deadline = time.monotonic() + 10
            while not any('"delivered"' in l for l in lines) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert any('"delivered"' in l for l in lines)
            stop.set()
            t.join(2)
            port.close()
        finally:
            other.stop(hard=True)


def test_a_busy_port_and_a_silent_device_are_named(tmp_path, vboard):
    import os
    import pty

    with Board(vboard.port):
        with pytest.raises(BoardError, match=f"{vboard.port} is in use by .* \\(pid {os.getpid()}\\)"):
            Board(vboard.port)  # a console or mpremote already has it
    master, slave = pty.openpty()  # a serial device with no MicroPython behind it
    try:
        with pytest.raises(BoardError, match="no MicroPython REPL answers Ctrl-C and Ctrl-A "
                                             "within 9 s .it said nothing.; is MicroPython installed"):
            Board(os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)


def test_a_board_that_answers_late_answers_both_attempts_and_still_works(vboard):
    """A board too busy to answer the first raw-REPL request within its 5 s
    (a loaded machine: the process is stopped here for 6.5 s) later answers
    it and the second one: the extra banner must not be taken for the answer
    to the first command (mpremote failed with "could not exec command
    (response: b'R\\x01')")."""
    import os
    import signal

    os.kill(vboard.proc.pid, signal.SIGSTOP)
    wake = threading.Timer(6.5, os.kill, (vboard.proc.pid, signal.SIGCONT))
    wake.start()
    try:
        with Board(vboard.port) as b:
            assert b.eval("1 + 1") == 2 and b.eval("'x' * 3") == "xxx"
    finally:
        wake.join()


def test_micropython_too_old_for_the_bundle(tmp_path, vboard):
    manifest = build_bundle(None, tmp_path / "bundle")
    major, minor = (int(x) for x in manifest["mpy_version"].split("."))
    manifest["mpy_version"] = f"{major + 1}.0"  # a bundle for a newer MicroPython
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps(manifest))
    with Board(vboard.port) as b:
        with pytest.raises(BoardError, match="flash a newer MicroPython"):
            pv.install_bundle(b, tmp_path / "bundle")
    assert not (vboard.folder / "manifest.json").exists()  # nothing half-installed


def test_network_files_corrupt_or_damaged_strings_are_refused(tmp_path):
    net = pv.create_network("village")
    path = tmp_path / "village.json"
    pv.save_network(net, path)
    assert pv.load_network(path) == net
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds the key
    path.write_text(path.read_text()[:40])
    with pytest.raises(pv.NetworkError, match="corrupt"):
        pv.load_network(path)
    s = pv.share_string(net)
    assert pv.parse_share_string(s) == net
    with pytest.raises(pv.NetworkError, match="checksum does not match"):
        pv.parse_share_string(s[:-10])
    with pytest.raises(pv.NetworkError, match="'preset'"):
        pv.create_network("us", "US915", "LongSlow")


def test_console_sends_commands_and_prints_events(tmp_path, vboard):
    import io

    from pollen_controller.node.console import attach

    net = pv.create_network("village", "EU868", "ShortFast")
    with Medium(line(2)) as medium:
        build_bundle(None, tmp_path / "bundle")
        with Board(vboard.port) as b:
            pv.install_bundle(b, tmp_path / "bundle")
            pv.provision(b, net, "vb", 1, {"kind": "udp", "port": medium.port})

        def typed():
            yield "\r\x04"  # Ctrl-D: reboot into the node
            time.sleep(2)
            yield '{"cmd": "status", "ref": 5}'
            time.sleep(2)

        out = io.StringIO()
        attach(vboard.port, out=out, lines_in=typed())
    events = [json.loads(l) for l in out.getvalue().splitlines() if l.startswith("{")]
    assert any(e.get("event") == "started" for e in events)
    st = [e for e in events if e.get("event") == "status"]
    assert st and st[0]["id"] == "00000001" and st[0]["ref"] == 5


def test_a_network_for_another_band_than_the_boards_radio_is_refused(tmp_path, vboard):
    vboard.folder.joinpath("board.json").write_text(json.dumps(
        {"id": "some-433-board", "radio": {"chip": "sx1278"}}))
    with Board(vboard.port) as b:
        with pytest.raises(pv.NetworkError, match=r"EU868 \(868.1 MHz\), but this board's sx1278 "
                                                  "works in 137-525 MHz"):
            pv.provision(b, pv.create_network("village", "EU868"), "n", 0x101)
        cfg = pv.provision(b, pv.create_network("hills", "EU433"), "n", 0x101)
        assert cfg["board"] == "some-433-board" and cfg["radio"] == {"kind": "lora"}
        # a board flashed before profiles stated their band: the host's profile of its id
        vboard.folder.joinpath("board.json").write_text(json.dumps(
            {"id": "heltec-wifi-lora-32-v3", "radio": {"chip": "sx1262"}}))
        with pytest.raises(pv.NetworkError, match=r"network 'hills' is for EU433 \(433.175 MHz\), "
                                                  "but board heltec-wifi-lora-32-v3 works in "
                                                  "863-928 MHz"):
            pv.provision(b, pv.create_network("hills", "EU433"), "n", 0x101)


def test_a_board_with_a_fat_filesystem_is_refused_by_name():
    # FAT renames over a file as delete-then-rename: a power cut between the
    # two loses the record, so pollen refuses it (docs/boards.md)
    class Fat:
        port = "/dev/ttyFAT"

        def exec(self, code):
            assert "vfs.mount()" in code
            return "VfsFat\r\n"
    with pytest.raises(pv.BoardError, match="filesystem is FAT; pollen needs LittleFS"):
        pv.check_filesystem(Fat())
