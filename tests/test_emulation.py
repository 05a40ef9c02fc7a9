"""End to end: real MicroPython unix-port processes running firmware/main.py
(compiled to .mpy) on the virtual radio medium."""
import json
import socket
import time

import pytest

from pollen_controller.board.firmware import compile_firmware
from pollen_controller.emulation.mesh import Emulation
from pollen_controller.emulation.node_process import NodeProcess
from pollen_controller.topology import ladder, line

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
FAST = {"beacon_interval_ms": 1500, "neighbour_expiry_ms": 20000}


def wait_event(node, pred, timeout_s=20.0):
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ev = node.events.get(timeout=0.05)
        except Exception:
            continue
        seen.append(ev)
        if pred(ev):
            return ev
    raise AssertionError(f"event not seen; got {seen[-10:]}")


def status(node):
    node.command({"cmd": "status", "ref": "t"})
    try:
        return wait_event(node, lambda e: e.get("event") == "status" and e.get("ref") == "t", 5)
    except AssertionError as e:  # say why: a node that died leaves its reason on stderr
        raise AssertionError(f"{e}; running={node.running}, stderr={node.stderr_lines[-6:]}")


@pytest.fixture
def mesh(tmp_path):
    topo = line(4)
    with Emulation(topo, tmp_path, KEY, node_settings=FAST) as emu:
        assert emu.wait_started() == []
        time.sleep(3.5)  # neighbour discovery
        yield emu, sorted(topo.node_ids)


def test_unicast_and_post_cross_three_hops_of_real_micropython_nodes(mesh):
    emu, ids = mesh
    a, d = emu.nodes[ids[0]], emu.nodes[ids[-1]]
    a.command({"cmd": "send", "to": f"{ids[-1]:08x}", "text": "over three hops"})
    sent = wait_event(a, lambda e: e.get("event") == "sent")
    got = wait_event(d, lambda e: e.get("event") == "received" and e["kind"] == "msg")
    assert got["text"] == "over three hops" and got["id"] == sent["id"]
    assert got["from"] == f"{ids[0]:08x}" and got["hops"] == 2  # two relays in between
    ack = wait_event(a, lambda e: e.get("event") == "delivered")
    assert ack["id"] == sent["id"]
    d.command({"cmd": "send", "to": "all", "text": "hello everyone"})
    for i in ids[:-1]:
        ev = wait_event(emu.nodes[i], lambda e: e.get("event") == "received" and e["kind"] == "post")
        assert ev["text"] == "hello everyone"
    st = status(a)
    assert st["runtime"].startswith("micropython")
    assert 0 < st["peak_heap_bytes"] < 128 * 1024
    assert any(n["id"] == f"{ids[1]:08x}" for n in st["neighbours"])


def test_the_config_command_tells_the_config_without_the_key(mesh):
    emu, ids = mesh
    n = emu.nodes[ids[0]]
    n.command({"cmd": "config", "ref": "c1"})
    got = wait_event(n, lambda e: e.get("ref") == "c1")
    assert got["event"] == "config", got
    on_disk = json.loads((n.folder / "config.json").read_text())
    assert got["config"] == dict(on_disk, network_key="(hidden)")
    assert on_disk["network_key"] not in json.dumps(got)
    # with the key's fingerprint, as pollen network info shows it: a node
    # provisioned from another network file is told apart without the key
    from pollen_controller.board.network_files import key_fingerprint
    assert got["key_fingerprint"] == key_fingerprint(on_disk["network_key"])
    # the node's identity secret neither (the command reads the file as it is now)
    secret = "5e" * 64
    (n.folder / "config.json").write_text(json.dumps(dict(on_disk, identity_key=secret)))
    n.command({"cmd": "config", "ref": "c2"})
    got = wait_event(n, lambda e: e.get("ref") == "c2")
    assert got["config"]["identity_key"] == "(hidden)" and secret not in json.dumps(got)


def test_bad_console_commands_get_error_events_and_node_keeps_running(mesh):
    emu, ids = mesh
    n = emu.nodes[ids[0]]
    n.proc.stdin.write(b"this is not json\n")
    n.proc.stdin.flush()
    assert "not valid JSON" in wait_event(n, lambda e: e.get("event") == "error")["error"]
    n.command({"cmd": "launch"})
    assert "unknown cmd 'launch'" in wait_event(n, lambda e: e.get("event") == "error")["error"]
    n.command({"cmd": "send", "to": "nobody", "text": "x"})
    assert "'to'" in wait_event(n, lambda e: e.get("event") == "error")["error"]
    n.command({"cmd": "send", "to": "all", "text": "x" * 300})
    assert "at most 231" in wait_event(n, lambda e: e.get("event") == "error")["error"]
    # files: a malformed content id, a bad chunk index, too many fetches at once
    n.command({"cmd": "fetch", "cid": "abc", "ref": 1})
    assert "'cid'" in wait_event(n, lambda e: e.get("ref") == 1)["error"]
    n.command({"cmd": "get", "cid": "a" * 26, "index": True, "ref": 2})
    assert "no chunk True" in wait_event(n, lambda e: e.get("ref") == 2)["error"]
    for k in range(5):
        n.command({"cmd": "fetch", "cid": "%sa" % (chr(ord("a") + k) * 25), "ref": 10 + k})
    answers = [wait_event(n, lambda e, r=10 + k: e.get("ref") == r)["event"] for k in range(5)]
    assert answers == ["fetch_started"] * 4 + ["error"]
    assert n.running and status(n)["id"] == f"{ids[0]:08x}"


def test_garbage_and_forged_frames_are_dropped_counted_and_visible_in_status(mesh):
    emu, ids = mesh
    # a rogue transmitter next to node 1: it says hello as node 2 from a new
    # address (so the medium carries its frames over node 2's links)
    rogue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    medium = ("127.0.0.1", emu.medium.port)
    rogue.sendto(b"H" + ids[1].to_bytes(4, "big"), medium)
    forged = bytes([0x12, 0x30]) + bytes(range(30))  # right version, wrong tag
    # each three times: node 1 may be transmitting (half-duplex) when one arrives
    for frame in (b"\x01\x02", forged, b"\x22" + bytes(40), bytes(255)) * 3:
        rogue.sendto(b"T" + frame, medium)
        time.sleep(0.15)
    time.sleep(0.5)
    st = status(emu.nodes[ids[0]])
    assert st["dropped"].get("short", 0) >= 1
    assert st["dropped"].get("tag", 0) >= 1      # the forged frame
    assert st["dropped"].get("version", 0) >= 1  # version 2 and version 0
    assert emu.nodes[ids[0]].running
    rogue.close()


@pytest.mark.parametrize("config, field", [
    ({"node_id": "zz", "network_key": KEY}, "node_id"),
    ({"node_id": "00000101", "network_key": "abc"}, "network_key"),
    ({"node_id": "00000101", "network_key": KEY, "hop_limit": 9}, "hop_limit"),
    ({"node_id": "00000101", "network_key": KEY, "region": "MARS"}, "region"),
    ({"node_id": "00000101", "network_key": KEY, "radio": {"kind": "smoke"}}, "radio"),
    ({"node_id": "00000101", "network_key": KEY, "hop_limt": 3}, "hop_limt"),
    ({"node_id": "00000101", "network_key": KEY, "region": "US915", "preset": "LongFast"}, "preset"),
    ({"node_id": "00000101", "network_key": KEY, "radio": {"kind": "udp", "port": True}}, "radio.port"),
    ({"node_id": "00000101", "network_key": KEY, "radio": {"kind": "udp", "host": "no.such.host.invalid"}},
     "radio.host"),
    ({"node_id": "00000101", "network_key": KEY, "storage_dir": "/proc/self"}, "storage_dir"),
])
def test_malformed_config_exits_non_zero_naming_the_field(tmp_path, config, field):
    fw = tmp_path / "fw"
    compile_firmware(fw)
    node = NodeProcess(0x101, tmp_path / "node", config, fw)
    node.start()
    rc = node.proc.wait(10)
    time.sleep(0.1)
    assert rc == 2
    err = "\n".join(node.stderr_lines)
    assert f"'{field}'" in err
    assert "expected" in err or "unknown" in err
    assert err.count("\n") == 0  # one clear line, no traceback


def test_store_and_forward_to_a_node_switched_off_and_on(tmp_path):
    topo = ladder(3)
    ids = sorted(topo.node_ids)
    settings = dict(FAST, lifetime_ms=120000)
    with Emulation(topo, tmp_path, KEY, node_settings=settings) as emu:
        assert emu.wait_started() == []
        time.sleep(3.5)
        src, dst = emu.nodes[ids[0]], emu.nodes[ids[-1]]
        dst.stop(hard=True)  # a power cut
        src.command({"cmd": "send", "to": f"{ids[-1]:08x}", "text": "while you were away"})
        time.sleep(8)
        dst.start()
        got = wait_event(dst, lambda e: e.get("event") == "received" and e["kind"] == "msg", 30)
        assert got["text"] == "while you were away"
        wait_event(src, lambda e: e.get("event") == "delivered", 20)


def test_sender_power_cut_loses_nothing_it_accepted(tmp_path):
    topo = line(2)
    a, b = sorted(topo.node_ids)
    with Emulation(topo, tmp_path, KEY, node_settings=dict(FAST, lifetime_ms=120000)) as emu:
        assert emu.wait_started() == []
        time.sleep(2)
        emu.nodes[b].stop(hard=True)
        emu.nodes[a].command({"cmd": "send", "to": f"{b:08x}", "text": "accepted before the cut"})
        wait_event(emu.nodes[a], lambda e: e.get("event") == "sent")
        time.sleep(1)
        emu.nodes[a].stop(hard=True)  # power cut at the only node holding it
        emu.nodes[a].start()
        wait_event(emu.nodes[a], lambda e: e.get("event") == "started")
        emu.nodes[b].start()
        got = wait_event(emu.nodes[b], lambda e: e.get("event") == "received", 30)
        assert got["text"] == "accepted before the cut"
        wait_event(emu.nodes[a], lambda e: e.get("event") == "delivered", 20)


def test_node_processes_are_gone_after_close(tmp_path):
    topo = line(2)
    with Emulation(topo, tmp_path, KEY) as emu:
        emu.wait_started()
        procs = [n.proc for n in emu.nodes.values()]
    for p in procs:
        assert p.poll() is not None


def test_the_demo_counts_identity_adverts_apart_from_the_data_frames():
    # the demo's frames per delivery are data frames (posts, messages, acks);
    # a node's key flooded at start (--private) is counted as an advert
    from pollen import wire
    from pollen.crypto import NetworkKey
    from pollen_controller.emulation.demo import _Log
    key = NetworkKey(bytes(32))
    log = _Log(None)
    for ftype, payload in ((wire.IDENT, bytes(40)), (wire.POST, b"hi"), (wire.BEACON, b"")):
        f = wire.Frame(ftype, 0, 6, 0, 0x0A0B0C01, wire.BROADCAST, 7, 0, 1, payload)
        log.on_transmit(0x0A0B0C01, wire.pack(f, key), 0.0)
    assert (log.tx_adverts, log.tx_data, log.tx_beacons) == (1, 1, 1)
    assert log.air_us["adverts"] > 0 and log.air_us["data"] > 0


def test_the_demo_lists_what_did_not_arrive():
    from pollen_controller.emulation.demo import _Log, _summarise
    log = _Log(None)
    for ev in ({"event": "received", "id": 5, "_node": 2}, {"event": "delivered", "id": 5, "_node": 1},
               {"event": "delivered", "id": 6, "_node": 1},   # acked, never seen received
               {"event": "received", "id": 9, "_node": 2}):
        log.on_event(ev["_node"], dict(ev, _t=1.0))
    s = {"unicasts": [(1, 2, 5, 0.0)], "stored": (1, 3, 6, 0.0), "posts": [(1, 9, 0.0)]}
    r = _summarise(s, {}, log, [1, 2, 3], "micropython", 0.0, {}, 1.0)
    assert r["unicast"] == {"sent": 2, "delivered": 1}
    assert r["missed"] == [{"from": "00000001", "to": "00000003", "id": 6, "acked": True},
                           {"post_from": "00000001", "id": 9, "not_at": ["00000003"]}]
