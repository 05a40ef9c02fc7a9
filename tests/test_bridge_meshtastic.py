"""pollen bridge meshtastic (controller/bridge_meshtastic/, docs/meshtastic.md):
the real `meshtastic` package's SerialInterface and TCPInterface on a fake
Meshtastic device (tests/fakes/fake_meshtastic.py), a fake pollen node's
console on a pty (tests/fakes/fake_console_node.py), and the pure relay
decisions with byte vectors."""
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pollen_controller.bridge_meshtastic.bridge import MeshtasticBridge
from pollen_controller.bridge_meshtastic.device import Device, parse_host
from pollen_controller.bridge_meshtastic.holdback import HoldBack
from pollen_controller.bridge_meshtastic.relay import (MESHTASTIC_DM_BYTES, MESHTASTIC_TEXT_BYTES,
                                                       POLLEN_TEXT_BYTES, IdMap,
                                                       RateLimit, destination, split_text, to_meshtastic,
                                                       to_pollen)
from pollen_controller.errors import InputError
from pollen_controller.node.link import SerialLink
from tests.fakes.bridge_run import BridgeRun
from tests.fakes.fake_console_node import FakeConsoleNode
from tests.fakes.fake_meshtastic import BROADCAST, NODES, FakeMeshtastic

ANNA, FARM = 0x11223344, 0x55667788     # nodes the fake device knows (NODES)
CH = 1                                   # the channel bridged ("pollen" on the fake)
POLLEN = str(Path(sys.executable).with_name("pollen"))


# ---- pure: what crosses and how it is written ----------------------------------------

def test_the_meshtastic_limit_is_the_packages():
    from meshtastic.protobuf import mesh_pb2

    assert MESHTASTIC_TEXT_BYTES < mesh_pb2.Constants.DATA_PAYLOAD_LEN
    for limit, room in ((MESHTASTIC_TEXT_BYTES, 255 - 16), (MESHTASTIC_DM_BYTES, 255 - 16 - 12)):
        # the Data the firmware encodes (Router.cpp perhapsEncode): with its bitfield
        fits = mesh_pb2.Data(portnum=1, payload=b"x" * limit, bitfield=0).SerializeToString()
        over = mesh_pb2.Data(portnum=1, payload=b"x" * (limit + 1), bitfield=0).SerializeToString()
        assert len(fits) <= room < len(over)
    assert POLLEN_TEXT_BYTES == 231


@pytest.mark.parametrize("text, limit, expect", [
    ("hi", 10, ["H: hi"]),
    ("aaaaaa bbbbbbbbb", 18, ["H: (1/2) aaaaaa ", "H: (2/2) bbbbbbbbb"]),  # at the space
    ("é" * 9, 20, ["H: (1/2) ééééé", "H: (2/2) éééé"]),  # never half a character
    ("x" * 30, 14, None),                               # would need three parts
])
def test_split_text(text, limit, expect):
    parts = split_text("H: ", text, limit)
    assert parts == expect
    for p in parts or ():
        assert len(p.encode()) <= limit


def test_marks_name_the_origin():
    assert to_pollen(ANNA, 7, "ANNA", "hi") == ["\u21c411223344-7 ANNA: hi"]
    assert to_pollen(ANNA, 7, None, "hi") == ["\u21c411223344-7 !11223344: hi"]
    assert to_pollen(ANNA, 7, "A\x1b[2J", "hi") == ["\u21c411223344-7 A[2J: hi"]
    assert to_meshtastic("0000000c", 17, "bakery", "bread") == ["\u21c40000000c-17 bakery: bread"]
    assert to_meshtastic("0000000c", 17, None, "bread") == ["\u21c40000000c-17 bread"]


@pytest.mark.parametrize("text, direct, sender, expect", [
    ("hi", False, "0000000c", ("all", None)),
    ("hi", True, "0000000c", (ANNA, None)),
    ("hi", True, "0000000d", (None, "unmapped")),
    ("\u21c411223344-7 ANNA: hi", False, "0000000c", (None, "bridged_skipped")),
    ("\u21c4000c hi", True, "0000000c", (None, "bridged_skipped")),   # any mark, even a broken one
])
def test_destination(text, direct, sender, expect):
    assert destination(text, direct, sender, {"0000000c": ANNA}, "all") == expect


@pytest.mark.parametrize("pair, error", [
    ("0000000c", "expected POLLENID=!MESHID"),
    ("zz=!11223344", "the pollen id 'zz'"),
    ("0000000c=!1122334455", "the Meshtastic id '!1122334455'"),
    ("0000000c=!ffffffff", "the Meshtastic id"),
])
def test_bad_map_names_the_field(pair, error):
    with pytest.raises(InputError, match="--map") as e:
        IdMap([pair])
    assert error in str(e.value)


def test_map_and_host():
    ids = IdMap(["c=!11223344"])
    assert ids.to_mesh == {"0000000c": ANNA} and ids.to_pollen == {ANNA: "0000000c"}
    assert parse_host("mesh.local") == ("mesh.local", 4403)
    assert parse_host("10.0.0.5:4404") == ("10.0.0.5", 4404)
    with pytest.raises(InputError, match="--meshtastic-host"):
        parse_host("h:x")


def test_rate_limit_is_a_token_bucket():
    r = RateLimit(60, 2)                    # one a second, two at once
    assert [r.take(0.0), r.take(0.0), r.take(0.0)] == [True, True, False]
    assert not r.take(0.5) and r.take(1.0) and not r.take(1.1)


# ---- the bridge on the real meshtastic package -------------------------------------------

class Running(BridgeRun):
    """A bridge between a fake pollen node and a fake Meshtastic device, on a thread."""

    def __init__(self, tmp_path, kind="serial", name="b", to_mesh=(6000, 10), to_pollen=(6000, 10),
                 node_id="0000000a", mesh_num=None, hold=(0.0,), nodes=NODES):
        folder = tmp_path / name
        folder.mkdir()
        self.node = FakeConsoleNode(folder, node_id=node_id).plug()
        nodes = nodes if mesh_num is None else [(mesh_num, "BRG", "a bridge")] + nodes[1:]
        self.mesh = getattr(FakeMeshtastic(folder, nodes), kind)()
        self.logs = []
        self.device = Device(None, serial_port=self.mesh.path if kind == "serial" else None,
                             host="127.0.0.1" if kind == "tcp" else None,
                             tcp_port=self.mesh.tcp_port or 4403, log=self.logs.append,
                             first_delay_s=0.2, max_delay_s=0.5)
        self.device.open()
        self.link = SerialLink(self.node.path)
        self.bridge = MeshtasticBridge(self.link, self.device, CH, folder / "outbox.db",
                                       IdMap(["0000000c=!11223344"]), RateLimit(*to_mesh),
                                       RateLimit(*to_pollen), log=self.logs.append,
                                       confirm_timeout_s=1.0, holdback=HoldBack(*hold))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.bridge.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def post(self, text, sender="0000000c", msg_id=17, kind="post"):
        self.node.emit({"event": "received", "kind": kind, "from": sender,
                        "to": "ffffffff" if kind == "post" else "0000000a", "id": msg_id,
                        "text": text, "hops": 1})


@pytest.fixture
def running(tmp_path):
    made = []

    def make(**kw):
        made.append(Running(tmp_path, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _no_more(q, wait_s=0.5):
    with pytest.raises(queue.Empty):
        q.get(timeout=wait_s)


@pytest.mark.parametrize("kind", ["serial", "tcp"])
def test_texts_both_ways(running, kind):
    b = running(kind=kind)
    t0 = time.monotonic()
    b.mesh.text(ANNA, "anyone at the mill?", channel=CH, packet_id=7)
    [(to, text, t1)] = b.pollen_sends(1)
    assert (to, text) == ("all", "\u21c411223344-7 ANNA: anyone at the mill?")
    t2 = time.monotonic()
    b.post("market at noon")
    assert b.mesh.sent.get(timeout=10) == (BROADCAST, CH, "\u21c40000000c-17 market at noon")
    t3 = time.monotonic()
    print(f"\n{kind}: meshtastic->pollen {1000 * (t1 - t0):.0f} ms,"
          f" pollen->meshtastic {1000 * (t3 - t2):.0f} ms")
    # another channel, and the device's own texts, stay where they are
    b.mesh.text(FARM, "on channel 0", channel=0)
    _no_more(b.node.commands)
    assert b.bridge.stats["other_channel"] == 1


def test_direct_messages_only_where_mapped(running):
    b = running()
    b.node.emit({"event": "status", "ref": "x", "id": "0000000a", "neighbours": [
        {"id": "0000000c", "name": "bakery\u202e", "rssi_dbm": -90, "snr_db": 5.0}]})
    b.mesh.text(ANNA, "psst", to=b.mesh.num, channel=0, packet_id=9)
    assert b.pollen_sends(1)[0][:2] == ("0000000c", "\u21c411223344-9 ANNA: psst")
    b.post("back to you", kind="msg", msg_id=20)
    assert b.mesh.sent.get(timeout=10) == (ANNA, CH, "\u21c40000000c-20 bakery: back to you")
    b.mesh.text(FARM, "not mapped", to=b.mesh.num, channel=0)
    b.post("not mapped", sender="0000000d", kind="msg", msg_id=21)
    _no_more(b.mesh.sent)
    assert b.bridge.stats["unmapped"] == 2


def test_non_ascii_and_over_long_texts(running):
    b = running()
    b.mesh.text(FARM, "sunflower 🌻 café عربى", channel=CH, packet_id=3)
    assert b.pollen_sends(1)[0][1] == "\u21c455667788-3 🌻SF: sunflower 🌻 café عربى"
    long = ("ü" * 100 + " " + "x" * 28)           # 229 bytes: a full pollen post
    assert len(long.encode()) <= POLLEN_TEXT_BYTES
    b.post(long, msg_id=30)
    parts = [b.mesh.sent.get(timeout=10)[2] for _ in range(2)]
    assert all(len(p.encode()) <= MESHTASTIC_TEXT_BYTES for p in parts)
    head1, head2 = "\u21c40000000c-30 (1/2) ", "\u21c40000000c-30 (2/2) "
    assert parts[0].startswith(head1) and parts[1].startswith(head2)
    assert parts[0][len(head1):] + parts[1][len(head2):] == long
    b.mesh.text(ANNA, "y" * 420, channel=CH)   # over 233 bytes (only a broken device sends it),
    #                                            and over two pollen posts: refused
    b.mesh.garbage(b"\x94\xc3\x00\x05junk boot log line\n")   # noise on the line
    b.mesh.text(ANNA, "still here", channel=CH, packet_id=11)
    assert b.pollen_sends(1)[0][1] == "\u21c411223344-11 ANNA: still here"
    assert b.bridge.stats["too_long"] == 1
    assert b.device.stats["package_errors"] >= 1          # the frame it could not parse
    assert any(line.startswith("meshtastic package: Error while parsing FromRadio") for line in b.logs)


def test_full_length_texts_fit_what_the_firmware_sends(running):
    # the firmware adds a bitfield to every Data from its client (2 bytes) and 12 bytes
    # to a PKI-encrypted direct message: a 233-byte text (DATA_PAYLOAD_LEN) is refused
    # TOO_LARGE on the channel, one over 220 bytes as a direct message
    b = running()
    post = "ü" * 100 + " " + "x" * 28            # 229 bytes: a full pollen post, in two parts
    b.post(post, msg_id=30)
    parts = [b.mesh.sent.get(timeout=10)[2] for _ in range(2)]
    assert parts[0][len("\u21c40000000c-30 (1/2) "):] + parts[1][len("\u21c40000000c-30 (2/2) "):] == post
    assert b.mesh.want_acks == [True, True]      # sent reliably, as the apps send texts
    dm = "y" * 215                               # a full direct message, from the paired node
    b.post(dm, kind="msg", msg_id=31)
    got = [b.mesh.sent.get(timeout=10) for _ in range(2)]
    assert [g[0] for g in got] == [ANNA, ANNA]
    assert "".join(g[2].split(") ", 1)[1] for g in got) == dm
    deadline = time.monotonic() + 5
    while b.bridge.outbox.count and time.monotonic() < deadline:   # (each confirmed)
        time.sleep(0.02)
    assert b.mesh.refused == [] and b.bridge.outbox.count == 0


def test_a_text_the_device_refuses_waits_and_goes_later(running):
    # the firmware answers each packet with a QueueStatus whose res says whether it took
    # it (src/mesh/MeshService.cpp sendToMesh): over its duty cycle (EU_868: 10 %) it
    # refuses every packet (DUTY_CYCLE_LIMIT) until the hour's airtime frees
    b = running()
    b.mesh.data.get(timeout=10)                      # (its announce, when it connected)
    b.bridge.refused_retry_s = 0.2
    b.mesh.refuse = "DUTY_CYCLE_LIMIT"
    b.post("wait for the duty cycle", msg_id=60)
    deadline = time.monotonic() + 5
    while not b.mesh.refused and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert b.bridge.outbox.count == 1 and b.bridge.stats["sent_meshtastic"] == 0
    b.mesh.refuse = None
    assert b.mesh.sent.get(timeout=10)[2] == "\u21c40000000c-60 wait for the duty cycle"
    assert b.mesh.refused[0] == (BROADCAST, "\u21c40000000c-60 wait for the duty cycle",
                                 "DUTY_CYCLE_LIMIT")
    assert any("refused a text (DUTY_CYCLE_LIMIT)" in line for line in b.logs)
    # one it refuses for good (TOO_LARGE) is dropped, said and counted; the next goes
    b.mesh.refuse = "TOO_LARGE"
    b.post("never fits", msg_id=61)
    while len(b.mesh.refused) < 2 or b.mesh.refused[-1][2] != "TOO_LARGE":
        time.sleep(0.02)
    b.mesh.refuse = None
    b.post("next", msg_id=62)
    assert b.mesh.sent.get(timeout=10)[2] == "\u21c40000000c-62 next"
    assert b.bridge.stats["refused_meshtastic"] == 1
    assert any("refused a text for good (TOO_LARGE)" in line for line in b.logs)


def test_a_text_the_pollen_node_refuses_for_good_does_not_hold_up_the_rest(running):
    # a node refuses a text that can never go (too long for the region's dwell time,
    # firmware/pollen/sending.py) for good, and a send while its queue is full for now
    b = running()
    b.bridge.pollen_retry_s = 0.2
    dwell = "send: frame would exceed the region's 400 ms dwell time"
    full = ["send: queue full: 16 frames wait to go on air"]
    b.node.refuse = lambda cmd: (dwell if "long one" in cmd["text"]
                                 else full.pop() if full else None)
    b.mesh.text(ANNA, "first, while the queue is full", channel=CH, packet_id=1)
    b.mesh.text(ANNA, "a long one", channel=CH, packet_id=2)
    b.mesh.text(ANNA, "then this", channel=CH, packet_id=3)
    sends = [text for _, text, _ in b.pollen_sends(4)]
    assert sends == ["\u21c411223344-1 ANNA: first, while the queue is full"] * 2 + \
        ["\u21c411223344-2 ANNA: a long one", "\u21c411223344-3 ANNA: then this"]
    deadline = time.monotonic() + 5
    while b.bridge.inbox.count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.bridge.inbox.count == 0 and b.bridge.stats["refused_pollen"] == 1
    assert any("refused a bridged text for good" in line and "dwell time" in line for line in b.logs)


def test_device_away_and_back_nothing_lost(running):
    b = running()
    b.mesh.unplug()
    deadline = time.monotonic() + 10
    while b.device.up and time.monotonic() < deadline:
        time.sleep(0.05)
    for k in range(3):
        b.post(f"while away {k}", msg_id=40 + k)
    time.sleep(1.0)                                  # a few reconnect attempts fail meanwhile
    assert b.mesh.sent.empty()
    b.mesh.plug()
    got = [b.mesh.sent.get(timeout=20)[2] for _ in range(3)]
    assert got == [f"\u21c40000000c-{40 + k} while away {k}" for k in range(3)]
    assert b.device.stats["lost"] == 1 and b.mesh.configs == 2
    deadline = time.monotonic() + 2
    while not any("is back" in line for line in b.logs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("is back" in line for line in b.logs)


def test_a_flood_is_rate_limited_and_nothing_lost(running):
    rate_per_s, burst, n = 5.0, 3, 12
    b = running(to_pollen=(rate_per_s * 60, burst))
    for k in range(n):
        b.mesh.text(ANNA, f"flood {k}", channel=CH, packet_id=100 + k)
    sends = b.pollen_sends(n, timeout_s=20)
    assert [s[1] for s in sends] == [f"\u21c411223344-{100 + k} ANNA: flood {k}" for k in range(n)]
    t0 = sends[0][2]
    for i, (_, _, t) in enumerate(sends):            # never ahead of the bucket
        assert t - t0 >= (i - burst + 1) / rate_per_s - 0.05, (i, t - t0)
    print(f"\nflood of {n}: into pollen over {sends[-1][2] - t0:.2f} s"
          f" at {rate_per_s:g}/s, burst {burst}")


# two bridges between the same pollen mesh and the same Meshtastic channel:
# what one brings in, the other hears and leaves alone (no loop), and drops
# its own copy of it, still held back (no double; with --hold-s 0 each
# network got two copies here)
HOLD = (0.1, 1.0, 0.0)     # 0.1 s, + 1 s for each lower-id bridge known, no random spread


def _known_to_each_other(one, two):
    # each has heard the other bridge bring something in, on both networks
    one.post("\u21c4000000ff-1 earlier", sender=two.node_id, msg_id=1)
    two.post("\u21c4000000ff-2 earlier", sender=one.node_id, msg_id=1)
    one.mesh.text(two.mesh.num, "\u21c4000000ff-3 earlier", channel=CH, packet_id=1)
    two.mesh.text(one.mesh.num, "\u21c4000000ff-4 earlier", channel=CH, packet_id=1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(
            b.bridge.holdback.bridges(net, None) for b in (one, two) for net in ("pollen", "meshtastic")):
        time.sleep(0.02)


def _no_more_sends(b, wait_s):
    end = time.monotonic() + wait_s
    while True:
        try:
            cmd = b.node.commands.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            return
        assert cmd.get("cmd") != "send", cmd


def test_two_bridges_no_loop_and_one_copy_each_way(running):
    one = running(name="one", node_id="0000000a", mesh_num=0xB0000001, hold=HOLD)
    two = running(name="two", node_id="0000000b", mesh_num=0xB0000002, hold=HOLD)
    one.node_id, two.node_id = "0000000a", "0000000b"
    _known_to_each_other(one, two)
    # Meshtastic -> pollen: both devices hear Anna; one (rank 0) goes first,
    # two's node hears one's post while two still holds its own copy
    t0 = time.monotonic()
    for b in (one, two):
        b.mesh.text(ANNA, "hello pollen", channel=CH, packet_id=5)
    [(_, marked, t1)] = one.pollen_sends(1)
    two.post(marked, sender="0000000a", msg_id=50)
    _no_more_sends(two, 1.1)                         # past two's hold (1.1 s): dropped
    # pollen -> Meshtastic: both nodes hear the bakery's post (a long one: two parts)
    long = "ü" * 100 + " " + "x" * 28
    for b in (one, two):
        b.post(long, msg_id=52)
    parts = [one.mesh.sent.get(timeout=10)[2] for _ in range(2)]
    two.mesh.text(one.mesh.num, parts[0], channel=CH, packet_id=9)   # two's device hears one's text
    _no_more(two.mesh.sent, 1.1)
    _no_more_sends(two, 0.0)                         # one's Meshtastic text not brought back
    _no_more_sends(one, 0.0)
    _no_more(one.mesh.sent, 0.0)
    assert two.bridge.stats["doubles_avoided"] == 2 and one.bridge.stats["doubles_avoided"] == 0
    assert one.bridge.stats["bridged_skipped"] == 2 and two.bridge.stats["bridged_skipped"] == 4
    assert two.bridge.inbox.count == two.bridge.outbox.count == 0
    assert t1 - t0 >= 0.1                            # a rank-0 bridge: the base hold and its own way
    print(f"\ntwo bridges: one copy each way; rank 0 into pollen after {1000 * (t1 - t0):.0f} ms")


def test_a_far_pollen_nodes_name_comes_from_its_status_frames(running):
    # the bakery is not the bridge node's neighbour (no beacon of it), but every node
    # floods its status frame with its name, which the node passes on as a telemetry event
    b = running()
    fixed = struct.pack(">IHIHHBBHH6IB", 1234, 3950, 40960, 8, 950, 1, 3, 12, 300, 1, 2, 3, 4, 5, 6, 0)
    b.node.emit({"event": "telemetry", "id": "0000000c", "hops": 3, "rssi_dbm": -97, "snr_db": 5.0,
                 "data": (bytes([1, 6]) + b"bakery" + fixed).hex()})
    b.post("market at noon")
    assert b.mesh.sent.get(timeout=10) == (BROADCAST, CH, "\u21c40000000c-17 bakery: market at noon")


def test_a_bridge_on_mqtt_in_the_node_database_counts_in_the_ranks(running):
    # a bridge on MQTT is named "pollen bridge ID" (its node info, put on the air by a
    # gateway): the device's node database has it, so this bridge knows of it before any text
    b = running(node_id="0000000b", nodes=NODES + [(0xB0000001, "PLN", "pollen bridge 0000000a")])
    deadline = time.monotonic() + 5
    while not b.bridge.holdback.bridges("pollen", "0000000b") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.bridge.holdback.bridges("pollen", "0000000b") == ["0000000a"]
    assert b.bridge.holdback.bridges("meshtastic", b.device.num) == [0xB0000001]


def test_bridges_on_devices_announce_themselves(running):
    # a bridge on a device says "pollen bridge ID" on its channel (a PRIVATE_APP packet:
    # apps show nothing) when it connects; another's announce puts that one in its
    # ranks, both networks, and is answered, so bridges started together take turns
    b = running(node_id="0000000b")
    assert b.mesh.data.get(timeout=10) == (BROADCAST, CH, "PRIVATE_APP", b"pollen bridge 0000000b")
    heard = b.mesh.packet(0xB0000001, "PRIVATE_APP", b"pollen bridge 0000000a", channel=CH)
    assert b.mesh.data.get(timeout=10) == (BROADCAST, CH, "PRIVATE_APP", b"pollen bridge 0000000b")
    assert b.mesh.data_reply_ids == [0, heard]       # the answer names the announce it answers
    # an answer (its reply_id set) is not answered: two bridges do not answer each other forever
    b.mesh.packet(0xB0000001, "PRIVATE_APP", b"pollen bridge 0000000a", channel=CH, reply_id=77)
    assert b.bridge.holdback.bridges("pollen", "0000000b") == ["0000000a"]
    assert b.bridge.holdback.bridges("meshtastic", b.device.num) == [0xB0000001]
    b.mesh.packet(0xB0000003, "PRIVATE_APP", b"not a bridge", channel=CH)
    b.post("market at noon")                         # texts go on as before
    assert b.mesh.sent.get(timeout=10) == (BROADCAST, CH, "\u21c40000000c-17 market at noon")
    _no_more(b.mesh.data, 0.2)
    assert b.bridge.holdback.bridges("meshtastic", b.device.num) == [0xB0000001]


def test_three_bridges_on_devices_started_together_bring_one_copy_each_way(running):
    # three bridges, each with its own device and pollen node, started together; the
    # test is the air: what a device sends reaches the other two devices 0.3 s later,
    # what a pollen node posts the other two nodes 0.5 s later. Their announces make
    # them known to each other before any text; then Anna's text reaches pollen once
    # and the bakery's post Meshtastic once (all at rank 0, their draws within 0.2 s
    # of each other, each brought it in: three copies each way)
    made = [running(name=name, node_id=node_id, mesh_num=num, hold=(0.1, 1.0, 0.2))
            for name, node_id, num in (("one", "0000000a", 0xB0000001), ("two", "0000000b", 0xB0000002),
                                       ("three", "0000000d", 0xB0000003))]
    into_pollen, into_mesh, stop = queue.Queue(), queue.Queue(), threading.Event()

    def later(s, f, *args, **kw):
        threading.Timer(s, f, args, kw).start()

    def air(b):
        seen_data = 0
        while not stop.is_set():
            try:
                to, ch, port, payload = b.mesh.data.get(timeout=0.02)
                reply_id = b.mesh.data_reply_ids[seen_data]
                seen_data += 1
                for o in made:
                    if o is not b:
                        later(0.3, o.mesh.packet, b.mesh.num, port, payload, channel=ch, reply_id=reply_id)
            except queue.Empty:
                pass
            try:
                to, ch, text = b.mesh.sent.get_nowait()
                into_mesh.put((b.node.id, text))
                for o in made:
                    if o is not b:
                        later(0.3, o.mesh.text, b.mesh.num, text, channel=ch)
            except queue.Empty:
                pass
            try:
                cmd = b.node.commands.get_nowait()
                if cmd.get("cmd") == "send":
                    into_pollen.put((b.node.id, cmd["text"]))
                    for o in made:
                        if o is not b:
                            later(0.5, o.post, cmd["text"], sender=b.node.id, msg_id=90)
            except queue.Empty:
                pass
    for b in made:
        threading.Thread(target=air, args=(b,), daemon=True).start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(
                len(b.bridge.holdback.bridges("pollen", b.node.id)) == 2 for b in made):
            time.sleep(0.02)
        assert [b.bridge.holdback.bridges("pollen", b.node.id) for b in made] == \
            [["0000000b", "0000000d"], ["0000000a", "0000000d"], ["0000000a", "0000000b"]]
        for b in made:
            b.mesh.text(ANNA, "hello pollen", channel=CH, packet_id=5)
            b.post("market at noon", msg_id=52)
        time.sleep(2.6)                               # past the third's hold (2.1..2.3 s) and its copy
        got = [into_pollen.get_nowait() for _ in range(into_pollen.qsize())]
        assert got == [("0000000a", "\u21c411223344-5 ANNA: hello pollen")]
        got = [into_mesh.get_nowait() for _ in range(into_mesh.qsize())]
        assert got == [("0000000a", "\u21c40000000c-52 market at noon")]
        assert [b.bridge.stats["doubles_avoided"] for b in made] == [0, 2, 2]
    finally:
        stop.set()


# ---- the command: bad input is one line naming the option --------------------------------

@pytest.mark.parametrize("args, line", [
    (["--meshtastic-host", "h", "--map", "0000000c"], "pollen: --map '0000000c': expected POLLENID=!MESHID"),
    (["--meshtastic-host", "h:0"], "pollen: --meshtastic-host 'h:0': port '0' is not a number 1..65535"),
    (["--meshtastic-host", "h", "--rate-to-meshtastic", "0"], "pollen: --rate-to-meshtastic: expected"),
    (["--meshtastic-host", "h", "--hold-s", "-1"], "pollen: --hold-s -1: expected seconds 0..600"),
])
def test_command_bad_input(args, line):
    r = subprocess.run([POLLEN, "bridge", "meshtastic", "--port", "/dev/null/x", "--channel", "1"] + args,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.startswith(line) and r.stderr.count("\n") == 1, r.stderr


def test_command_device_not_there(tmp_path):
    node = FakeConsoleNode(tmp_path).plug()
    r = subprocess.run([POLLEN, "bridge", "meshtastic", "--port", node.path, "--channel", "1",
                        "--meshtastic-port", str(tmp_path / "gone"), "--outbox", str(tmp_path / "o.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.startswith(f"pollen: Meshtastic device {tmp_path / 'gone'}:")
    node.unplug()


def test_tcp_device_away_and_back_nothing_lost(running):
    b = running(kind="tcp")
    b.mesh.unplug()
    b.post("while away", msg_id=60)
    time.sleep(2.0)                                  # the package's own reconnect fails too
    b.mesh.plug()                                    # on the same port
    assert b.mesh.sent.get(timeout=20)[2] == "\u21c40000000c-60 while away"
    _no_more(b.mesh.sent)


def test_pollen_node_away_and_back_nothing_lost(running):
    b = running()
    b.node.unplug()
    for k in range(3):
        b.mesh.text(ANNA, f"for pollen {k}", channel=CH, packet_id=70 + k)
    time.sleep(0.5)
    b.node.plug()
    assert [s[1] for s in b.pollen_sends(3, timeout_s=20)] == \
        [f"\u21c411223344-{70 + k} ANNA: for pollen {k}" for k in range(3)]


def test_texts_waiting_survive_a_restart_of_the_bridge(tmp_path, running):
    # also those held back (for another bridge's copy) when it stopped: each
    # goes when its hold ends, or is dropped when another bridge's copy is heard
    b = running(hold=(0.2, 0.0, 30.0, iter([0.0, 1.0]).__next__))   # held 0.2 s, then 30.2 s
    b.mesh.unplug()
    while b.device.up:
        time.sleep(0.05)
    b.post("kept on disk", msg_id=80)
    b.post("another bridge's copy comes", msg_id=81)
    time.sleep(0.3)
    b.close()                                        # the bridge stops with the texts waiting
    assert b.bridge.outbox.count == 2
    b.mesh.plug()
    again = Device(None, serial_port=b.mesh.path)
    again.open()
    link = SerialLink(b.node.path)
    bridge = MeshtasticBridge(link, again, CH, tmp_path / "b" / "outbox.db")
    stop = threading.Event()
    t = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    t.start()
    try:
        assert b.mesh.sent.get(timeout=10)[2] == "\u21c40000000c-80 kept on disk"
        b.mesh.text(FARM, "\u21c40000000c-81 another bridge's copy comes", channel=CH)
        deadline = time.monotonic() + 5
        while bridge.outbox.count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bridge.stats["doubles_avoided"] == 1 and bridge.outbox.count == 0
        _no_more(b.mesh.sent, 0.1)
    finally:
        stop.set()
        t.join(10)
        link.close()


def test_a_flood_into_meshtastic_is_rate_limited(running):
    rate_per_s, burst, n = 4.0, 2, 8
    b = running(to_mesh=(rate_per_s * 60, burst))
    for k in range(n):
        b.post(f"flood {k}", msg_id=200 + k)
    got = [(b.mesh.sent.get(timeout=20)[2], time.monotonic()) for _ in range(n)]
    assert [g[0] for g in got] == [f"\u21c40000000c-{200 + k} flood {k}" for k in range(n)]
    t0 = got[0][1]
    for i, (_, t) in enumerate(got):
        assert t - t0 >= (i - burst + 1) / rate_per_s - 0.05, (i, t - t0)


def test_a_text_the_device_never_confirmed_is_sent_again(running):
    # what a TCP connection dead before either side noticed does: the write
    # succeeds, nothing arrives, no QueueStatus comes back
    b = running()
    b.post("first", msg_id=90)
    assert b.mesh.sent.get(timeout=10)[2] == "\u21c40000000c-90 first"
    b.mesh.swallow = True
    b.post("second", msg_id=91)
    deadline = time.monotonic() + 5
    while b.mesh.swallowed == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    b.mesh.swallow = False
    assert b.mesh.sent.get(timeout=15)[2] == "\u21c40000000c-91 second", b.logs  # a new connection
    deadline = time.monotonic() + 5
    while b.bridge.outbox.count and time.monotonic() < deadline:
        time.sleep(0.05)                             # (removed when the bridge sees it confirmed)
    assert b.mesh.configs == 2 and b.bridge.outbox.count == 0
    assert any("no confirmation" in line for line in b.logs)


@pytest.mark.parametrize("kind", ["serial", "tcp"])
def test_texts_right_after_the_handshake_are_not_lost(running, kind):
    # a device hands its client what it heard while none was there as soon
    # as the handshake ends, before the package's constructor has returned
    b = running(kind=kind)
    b.mesh.queued = [(ANNA, "heard while you were away", CH), (FARM, "me too", CH)]
    b.mesh.unplug()
    while b.device.up:
        time.sleep(0.05)
    b.mesh.plug()
    assert [s[1] for s in b.pollen_sends(2)] == ["\u21c411223344-1 ANNA: heard while you were away",
                                                 "\u21c455667788-2 🌻SF: me too"]


def test_a_silent_port_does_not_hold_up_the_pollen_side(running):
    # the device's port comes back as something that never answers the
    # handshake (the package waits 30 s for it): texts already waiting for
    # the pollen node go on to it at their rate meanwhile
    import os
    import pty

    b = running(to_pollen=(120, 1))                  # two a second, one at a time
    for k in range(5):
        b.mesh.text(ANNA, f"queued {k}", channel=CH, packet_id=300 + k)
    first = b.pollen_sends(1)
    b.mesh.unplug()
    master, slave = pty.openpty()
    os.symlink(os.ttyname(slave), b.mesh.path)
    try:
        t0 = time.monotonic()
        rest = b.pollen_sends(4, timeout_s=10)
        assert [s[1] for s in first + rest] == \
            [f"\u21c411223344-{300 + k} ANNA: queued {k}" for k in range(5)]
        assert rest[-1][2] - t0 < 5 and not b.device.up
    finally:
        os.close(master)
        os.close(slave)
