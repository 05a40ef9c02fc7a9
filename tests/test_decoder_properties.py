"""Property tests of the core's decoders (hypothesis): whatever bytes come from
the air (or from a damaged store), each either returns a well-formed result or
its documented "bad" value (None, a drop reason) or raises its documented
exception (ValueError, FileError), never anything else; and what an encoder
makes, its decoder reads back. The payload parsers inside Node (beacons, acks,
status and file frames) are driven through Node.on_frame with validly tagged
frames, and must neither raise nor count an internal error. Last, a short run
of the hostile-frame harness (tools/fuzz.py).
"""
import importlib.util
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pollen import file_author
from pollen import file_wire, files, held, posts, status_wire, wire
from pollen.crypto import NetworkKey
from pollen.file_author import make_manifest
from pollen.ids import ConfigError, parse_node_id
from pollen.node import Node
from pollen.storage import MemoryStorage
from pollen.wire import Frame

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
KEY = NetworkKey(bytes.fromhex(KEY_HEX))
REASONS = {"short", "oversize", "version", "tag", "type", "field"}
ME = 0x0A0B0C01
NEIGHBOUR = 0x0A0B0C22

# quick (the whole file runs in a few seconds) and the same examples every
# run, kept nowhere: a failure here is reproduced by running it again
FEW = settings(max_examples=50, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SOME = settings(FEW, max_examples=60)
MANY = settings(FEW, max_examples=120)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
cids = st.binary(min_size=16, max_size=16)
flags = st.sampled_from((0, 0x40, 0x80, 0xC0))


def _fields(f):
    return (f.ftype, f.flags, f.hop_limit, f.hops, f.origin, f.dest, f.msg_id,
            f.next_hop, f.relayer, bytes(f.payload))


@st.composite
def frames(draw, payload=st.binary(max_size=wire.MAX_PAYLOAD_BYTES)):
    hop_limit = draw(st.integers(0, wire.MAX_HOPS))
    return Frame(draw(st.integers(wire.BEACON, wire.STATUS)), draw(flags),
                 hop_limit, draw(st.integers(0, hop_limit)), draw(u32), draw(u32), draw(u32),
                 draw(u8), draw(u8), draw(payload))


# ---- wire.py: frames ----------------------------------------------------------------

@MANY
@given(st.binary(max_size=300))
def test_unpack_takes_any_bytes(data):
    f, reason = wire.unpack(data, KEY)
    assert (f is None) != (reason is None)
    if f is None:
        assert reason in REASONS
        return
    assert wire.BEACON <= f.ftype <= wire.STATUS
    assert f.flags & 0x3F == 0 and 0 <= f.hops <= f.hop_limit <= wire.MAX_HOPS
    assert len(f.payload) == len(data) - wire.HEADER_BYTES - 8


@MANY
@given(st.binary(min_size=wire.HEADER_BYTES, max_size=wire.MAX_FRAME_BYTES - 8))
def test_a_valid_tag_over_any_body_is_judged_by_its_header(body):
    # the checks after the tag, in the documented order (docs/protocol.md §4)
    if body[0] & 0x0F in (wire.MSG, wire.ACK):
        # (an inner tag of 4 bytes, any, then the outer tag of 4)
        f, reason = wire.unpack(body + bytes(4) + KEY.tag(body + bytes(4))[:4], KEY)
    else:
        f, reason = wire.unpack(body + KEY.tag(body), KEY)
    if body[0] >> 4 != wire.VERSION:
        assert reason == "version"
    elif not wire.BEACON <= body[0] & 0x0F <= wire.IDENT:
        assert reason == "type"
    elif body[1] & 0x07 > (body[1] >> 3) & 0x07:
        assert reason == "field"
    else:
        assert reason is None
        assert (f.origin, f.dest, f.msg_id) == tuple(wire.u32(body, i) for i in (2, 6, 10))
        assert (f.next_hop, f.relayer) == (body[14], body[15])


@SOME
@given(frames())
def test_pack_then_unpack_gives_the_frame_back(f):
    data = wire.pack(f, KEY)
    assert len(data) == wire.HEADER_BYTES + len(f.payload) + 8 <= wire.MAX_FRAME_BYTES
    g, reason = wire.unpack(data, KEY)
    assert reason is None and _fields(g) == _fields(f)


@FEW
@given(frames(), st.integers(0, wire.MAX_HOPS), u8, u8, st.sampled_from((0x40, 0x80, 0xC0)))
def test_a_relayed_or_flagged_copy_is_the_same_message(f, hops, next_hop, relayer, flag):
    hops = min(hops, f.hop_limit)
    g, _ = wire.unpack(wire.relayed(wire.pack(f, KEY), hops, next_hop, relayer, KEY), KEY)
    assert (g.hops, g.next_hop, g.relayer) == (hops, next_hop, relayer)
    assert _fields(g)[4:7] == _fields(f)[4:7] and g.payload == f.payload and g.flags == f.flags
    h, _ = wire.unpack(wire.with_flags(wire.pack(f, KEY), flag, KEY), KEY)
    assert h.flags == f.flags | flag and h.payload == f.payload


@FEW
@given(frames(payload=st.binary(min_size=wire.MAX_PAYLOAD_BYTES + 1, max_size=300)))
def test_pack_refuses_an_oversized_payload_with_valueerror(f):
    with pytest.raises(ValueError):
        wire.pack(f, KEY)


@FEW
@given(u32)
def test_be32_and_u32_round_trip(v):
    assert wire.u32(wire.be32(v), 0) == v


# ---- file_wire.py: the file frames' payloads ------------------------------------------

@MANY
@given(st.binary(max_size=wire.MAX_PAYLOAD_BYTES))
def test_unpack_chunk_takes_any_bytes(p):
    r = file_wire.unpack_chunk(p)
    if len(p) < 19:
        assert r is None
    else:
        cid, index, data = r
        assert len(cid) == 16 and 0 <= index <= 0xFFFF and data
        assert file_wire.pack_chunk(cid, index, data) == p


@MANY
@given(st.binary(max_size=wire.MAX_PAYLOAD_BYTES))
def test_unpack_want_takes_any_bytes(p):
    r = file_wire.unpack_want(p)
    if not 1 <= len(p) - 18 <= 32:
        assert r is None
        return
    cid, wanted = r
    first = (p[16] << 8) | p[17]
    every = [first + k for k in range(8 * (len(p) - 18)) if p[18 + k // 8] >> (k % 8) & 1]
    assert cid == p[:16]
    # the bits set, in order, as far as anyone answers (64)
    assert wanted == every[:len(wanted)] and len(wanted) == min(len(every), 64)


@SOME
@given(cids, u16, st.sets(st.integers(0, 255), max_size=80))
def test_pack_want_then_unpack(cid, first, offsets):
    wanted = sorted(first + k for k in offsets)
    assert file_wire.unpack_want(file_wire.pack_want(cid, first, wanted)) == (cid, wanted[:64])


@FEW
@given(cids, u16, st.integers(256, 2000) | st.integers(-2000, -1))
def test_pack_want_refuses_an_index_outside_its_window(cid, first, k):
    with pytest.raises(ValueError):
        file_wire.pack_want(cid, first, [first + k])


@MANY
@given(st.binary(max_size=wire.MAX_PAYLOAD_BYTES))
def test_unpack_manifest_part_takes_any_bytes(p):
    r = file_wire.unpack_manifest_part(p)
    if len(p) < 19 or p[16] >= p[17]:
        assert r is None
    else:
        cid, part, parts, data = r
        assert (cid, part, parts, data) == (p[:16], p[16], p[17], p[18:]) and part < parts


@SOME
@given(cids, st.binary(min_size=1, max_size=3000), st.sampled_from((16, 96, 200)))
def test_manifest_parts_put_back_together(cid, raw, part_bytes):
    n = file_wire.part_count(raw, part_bytes)
    got = [file_wire.unpack_manifest_part(file_wire.manifest_part(cid, raw, i, part_bytes))
           for i in range(n)]
    assert [(g[0], g[1], g[2]) for g in got] == [(cid, i, n) for i in range(n)]
    assert b"".join(g[3] for g in got) == raw


@st.composite
def catalog_bytes(draw):
    # entries near the format: lengths that fit, or not; names UTF-8, or not
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from((b"", b"map.png", "\u00e9t\u00e9".encode(), b"x" * 24,
                                     b"y" * 25, b"\xff\xfe", b"\xe2\x98"))
                    | st.binary(max_size=26))
        n = len(name) if draw(st.booleans()) else draw(u8)
        out += draw(cids) + draw(st.binary(min_size=3, max_size=3)) + bytes((n,)) + name
    return out[:draw(st.integers(0, len(out)))] if draw(st.booleans()) else out


@SOME
@given(catalog_bytes() | st.binary(max_size=wire.MAX_PAYLOAD_BYTES))
def test_unpack_catalog_takes_any_bytes(p):
    r = file_wire.unpack_catalog(p)
    if r is None:
        return
    assert r and sum(20 + len(e[4].encode()) for e in r) == len(p)
    for cid, kib, hops, via, name in r:
        assert len(cid) == 16 and 0 <= kib <= 255 and 0 <= hops <= 255 and 0 <= via <= 255
        assert isinstance(name, str) and len(name.encode()) <= 24


@SOME
@given(st.lists(st.tuples(cids, st.integers(0, 1 << 24), u8, u8, st.text(max_size=30)),
                max_size=12),
       st.integers(0, wire.MAX_PAYLOAD_BYTES))
def test_pack_catalog_then_unpack(entries, room):
    p, n = file_wire.pack_catalog(entries, room)
    assert len(p) <= room and 0 <= n <= len(entries)
    got = file_wire.unpack_catalog(p)
    if n == 0:
        assert got is None
        return
    assert len(got) == n
    for (cid, size, hops, via, name), (cid2, kib, hops2, via2, name2) in zip(entries, got):
        assert (cid2, hops2, via2) == (cid, hops, via)
        assert kib == min((size + 1023) // 1024, 255)
        nb = name.encode()
        # cut to 24 bytes, at the start of a character
        assert name.startswith(name2)
        assert name2 == name if len(nb) <= 24 else 21 <= len(name2.encode()) <= 24


# ---- status_wire.py: STATUS payloads (hosts decode them) ---------------------------

def _status_bytes(name, fixed, nb):
    # the layout of docs/protocol.md §11, built here from its table
    return bytes((1, len(name))) + name + fixed + bytes((len(nb),)) + b"".join(nb)


@st.composite
def status_bytes(draw):
    name = draw(st.text(max_size=18).map(str.encode) | st.binary(max_size=18))
    nb = draw(st.lists(st.binary(min_size=6, max_size=6), max_size=10))
    p = bytearray(_status_bytes(name, draw(st.binary(min_size=44, max_size=44)), nb))
    if draw(st.booleans()):
        p[draw(st.integers(0, len(p) - 1))] = draw(u8)  # a byte anywhere made wrong
    return bytes(p[:draw(st.integers(0, len(p)))]) if draw(st.booleans()) else bytes(p)


@MANY
@given(status_bytes() | st.binary(max_size=wire.MAX_PAYLOAD_BYTES))
def test_unpack_status_takes_any_bytes(p):
    t = status_wire.unpack_status(p)
    n = p[1] if len(p) > 1 else 0
    ok = len(p) >= 2 + n + 45 and p[0] == 1 and n <= 16 and p[2 + n + 44] <= 8 \
        and len(p) == 2 + n + 45 + 6 * p[2 + n + 44]
    try:
        name = p[2:2 + n].decode()
    except UnicodeError:
        ok = False
    if not ok:
        assert t is None
        return
    assert t["name"] == name and len(t["neighbours"]) == p[2 + n + 44]
    assert set(t) >= {"uptime_s", "battery_mv", "heap_free_bytes", "airtime_pct",
                      "duty_headroom_pct", "queue", "held", "files_kib", "interval_s", "counters",
                      "neighbours"}
    for x in t["neighbours"]:
        assert len(x["id"]) == 8 and -128 <= x["rssi_dbm"] <= 127 and -32 <= x["snr_db"] <= 31.75


def node_settings(node_id, **kw):
    # as tests/core/fakemesh.py: status frames off unless asked for
    d = {"node_id": node_id, "network_key": KEY_HEX, "region": "EU868", "preset": "ShortFast",
         "beacon_interval_ms": 10000, "telemetry_interval_ms": 0}
    d.update(kw)
    return d


def _node(**kw):
    n = Node(node_settings(ME, **kw), MemoryStorage(), random.Random(7))
    n.start(0)
    return n


STATUS_NODE = _node(telemetry_interval_ms=60000)


@SOME
@given(st.text(min_size=1, max_size=16).filter(lambda s: len(s.encode()) <= 16),
       st.lists(u32, min_size=6, max_size=6), st.none() | st.integers(1, 0xFFFF),
       st.none() | st.integers(0, 0xFFFFFFFE),
       st.lists(st.tuples(st.integers(1, 0xFFFFFFFE).filter(lambda i: i & 0xFF),
                          st.integers(-200, 200),
                          st.floats(-40, 40).map(lambda x: round(x * 4) / 4)),
                max_size=10, unique_by=lambda x: x[0]))
def test_a_nodes_status_payload_decodes_to_what_it_said(name, counts, mv, heap, heard):
    # through the node's own encoder (telemetry.py)
    n = STATUS_NODE
    n.s.name = name
    n.counters.update(zip(("rx", "tx", "relayed", "duplicates"), counts))
    n.drops = {"tag": counts[4], "short": counts[5] & 0xFFFF}
    n.battery_mv, n.heap_free_bytes = mv, heap
    n.neigh.table = {}
    for i, rssi, snr in heard:
        n.neigh.heard(i, rssi, snr, 1000)
    t = status_wire.unpack_status(n._status_payload(1000))
    assert t["name"] == name and t["battery_mv"] == mv and t["heap_free_bytes"] == heap
    c = t["counters"]
    assert [c["rx"], c["tx"], c["relayed"], c["duplicates"], c["auth_failed"]] == counts[:5]
    assert c["dropped"] == (counts[4] + (counts[5] & 0xFFFF)) & 0xFFFFFFFF
    assert len(t["neighbours"]) == min(len(heard), 8)
    for x in t["neighbours"]:
        i, rssi, snr = next(h for h in heard if "%08x" % h[0] == x["id"])
        assert x["rssi_dbm"] == max(-128, min(127, rssi))
        assert x["snr_db"] == max(-128, min(127, int(snr * 4))) / 4


# ---- held.py: records of held messages -------------------------------------------------

@MANY
@given(st.text(max_size=20) | st.from_regex(r"\Ah[0-9a-f]{16}\Z"), st.binary(max_size=80),
       st.integers(0, 1 << 40))
def test_held_decode_takes_any_record(name, data, now_ms):
    r = held.decode(name, data, now_ms)
    if r is None:
        return
    key, own, expires_ms, attempts, frame = r
    assert name[0] == "h" and len(name) == 17 and key == int(name[1:], 16)
    assert isinstance(own, bool) and now_ms <= expires_ms <= now_ms + 0xFFFFFFFF
    assert 0 <= attempts <= 255 and frame == data[7:]


@SOME
@given(st.integers(1, (1 << 64) - 1), st.booleans(), st.integers(0, 1 << 40),
       st.integers(0, 1 << 40), st.integers(0, 1000),
       st.binary(min_size=1, max_size=wire.MAX_FRAME_BYTES), st.integers(0, 1 << 40))
def test_held_encode_then_decode(key, own, now_ms, expires_ms, attempts, frame, later_ms):
    h = held.Held(key, 0x0A0B0C02, frame, expires_ms, own, attempts)
    r = held.decode(held.record_name(key), bytes(held.encode(h, now_ms, frame)), later_ms)
    left = min(max(0, expires_ms - now_ms), 0xFFFFFFFF)
    assert r == (key, own, later_ms + left, min(attempts, 255), frame)


def test_a_record_name_decodes_only_if_it_is_the_name_of_what_it_decodes_to():
    data = bytes((1, 0)) + bytes(4) + b"\x00frame"
    for name in ("h+00000000000001f", "h-00000000000001f", "h0x0000000000001f", "h0000_0000_0000_1",
                 "h 00000000000001f"):
        r = held.decode(name, data, 0)
        assert r is None or held.record_name(r[0]) == name, name
    for text in ("+1" * 16, " 1" * 16, "0x" + "00" * 15):
        try:
            cid = files.cid_from_hex(text)
        except ValueError:
            continue
        assert files.cid_hex(cid) == text.lower(), text


# ---- files.py: manifests and content ids --------------------------------------------

@st.composite
def manifest_bytes(draw):
    # fields near the format (files.py), some out of range, some cut short
    name = draw(st.text(max_size=20).map(str.encode) | st.binary(max_size=20))
    media = draw(st.text(max_size=10).map(str.encode) | st.binary(max_size=10))
    size = draw(st.integers(0, 70000) | u32)
    chunk = draw(st.integers(0, 260) | u16)
    count = (size + chunk - 1) // chunk if chunk else 0
    hashes = draw(st.integers(0, 3)) if count > 800 else count + draw(st.integers(-1, 1))
    raw = bytes((draw(st.sampled_from((1, 1, 1, 0, 2))), len(name))) + name \
        + bytes((len(media),)) + media + wire.be32(size) + bytes((chunk >> 8, chunk & 0xFF)) \
        + draw(st.binary(min_size=40, max_size=40)) + bytes(4 * max(0, hashes))
    return raw[:draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw


@MANY
@given(manifest_bytes() | st.binary(max_size=400))
def test_parse_manifest_takes_any_bytes(raw):
    try:
        m = files.parse_manifest(raw)
    except files.FileError:
        return
    assert 0 < m.size_bytes <= files.MAX_FILE_BYTES and 16 <= m.chunk_bytes <= files.CHUNK_BYTES
    assert m.chunks == (m.size_bytes + m.chunk_bytes - 1) // m.chunk_bytes
    assert m.cid == files.content_id(raw) and m.raw == raw and m.name


@FEW
@given(st.text(min_size=1, max_size=16), st.text(max_size=8),
       st.binary(min_size=1, max_size=3000), u32, st.integers(16, 200))
def test_make_manifest_then_parse(name, media, data, author, chunk):
    m = files.parse_manifest(make_manifest(name, media, data, author, 7, chunk))
    assert (m.name, m.media_type, m.size_bytes, m.chunk_bytes, m.author, m.created_s) == \
        (name, media, len(data), chunk, author, 7)
    assert all(m.chunk_ok(i, file_author.chunk_of(data, i, chunk)) for i in range(m.chunks))
    assert file_author.file_ok(m, data)


@SOME
@given(st.text(max_size=40)
       | st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567 ABC", min_size=24, max_size=28))
def test_parse_cid_takes_any_text(text):
    try:
        cid = files.parse_cid(text)
    except files.FileError:
        return
    assert len(cid) == 16 and files.cid_str(cid) == text.strip().lower()


@SOME
@given(cids)
def test_cid_text_and_hex_round_trip(cid):
    assert files.parse_cid(files.cid_str(cid)) == cid
    assert files.cid_from_hex(files.cid_hex(cid)) == cid


@SOME
@given(st.text(max_size=40) | st.text(alphabet="0123456789abcdefABCDEF", min_size=30, max_size=34))
def test_cid_from_hex_takes_any_text(text):
    try:
        cid = files.cid_from_hex(text)
    except ValueError:
        return
    assert len(cid) == 16


# ---- posts.py: a beacon's post summary -------------------------------------------------

@SOME
@given(st.lists(st.tuples(u32, u32), max_size=12, unique=True), st.binary(max_size=40), u32)
def test_missing_from_takes_any_summary_and_our_own_lacks_nothing(keys, summary, origin):
    rp = posts.RecentPosts(600000)
    for k, (o, m) in enumerate(keys):
        rp.add(o << 32 | m, b"frame", k)
    mine = [it[0] for it in rp.items]
    out = rp.missing_from(summary, origin, 100)
    assert all(it[0] in mine and it[0] >> 32 != origin for it in out)
    if len(summary) >= 16:
        assert out == []  # a full summary says nothing of what it lacks
    assert rp.missing_from(rp.summary(100), origin, 100) == []


# ---- ids.py: node ids typed by people ---------------------------------------------------

@SOME
@given(st.text(max_size=12) | u32.map(lambda v: "%x" % v) | st.integers(-5, 1 << 33))
def test_parse_node_id_takes_anything(v):
    try:
        i = parse_node_id(v)
    except ConfigError:
        return
    assert 0 < i < 0xFFFFFFFF and i & 0xFF


# ---- Node.on_frame: the parsers inside the node ----------------------------------------

RX_NODE = _node(telemetry_interval_ms=60000)  # one node for all examples: its state builds up
RX_CLOCK = [0]


def _signed_frame(ftype, payload, origin=NEIGHBOUR, hop_limit=0, hops=0, flags=0, next_hop=0,
                  dest=wire.BROADCAST, msg_id=1):
    return wire.pack(Frame(ftype, flags, hop_limit, hops, origin, dest, msg_id, next_hop,
                           origin & 0xFF, payload[:wire.MAX_PAYLOAD_BYTES]), KEY)


def _feed(n, data, now_ms):
    # the frame, then the timers: nothing escapes, nothing counted internal
    before = n.counters["internal"]
    n.on_frame(data, -80, 5, now_ms)
    n.poll(now_ms)
    assert n.counters["internal"] == before, n.last_internal


@MANY
@given(st.integers(wire.BEACON, wire.STATUS), st.binary(max_size=wire.MAX_PAYLOAD_BYTES),
       st.integers(0, 7), flags, st.sampled_from((0, ME & 0xFF, NEIGHBOUR & 0xFF)),
       st.sampled_from((wire.BROADCAST, ME, NEIGHBOUR)), st.integers(1, 40), st.integers(0, 5000))
def test_any_payload_of_any_type_leaves_the_node_standing(ftype, payload, hop_limit, flag, next_hop,
                                                          dest, msg_id, step_ms):
    RX_CLOCK[0] += step_ms
    one_hop = wire.CATALOG <= ftype <= wire.PART or ftype == wire.BEACON
    _feed(RX_NODE, _signed_frame(ftype, payload, hop_limit=0 if one_hop else hop_limit, flags=flag,
                                 next_hop=next_hop, dest=dest, msg_id=msg_id), RX_CLOCK[0])


@st.composite
def beacon(draw):
    name = draw(st.text(min_size=0, max_size=16).filter(lambda s: len(s.encode()) <= 16))
    heard = draw(st.binary(max_size=32))
    tags = draw(st.binary(max_size=16))
    b = name.encode()
    return name, heard, bytes((len(b),)) + b + bytes((len(heard),)) + heard + tags


@SOME
@given(beacon())
def test_a_beacon_in_the_documented_format_is_read_as_written(b):
    name, heard, payload = b
    n = _node()
    _feed(n, _signed_frame(wire.BEACON, payload), 1000)
    e = n.neigh.table[NEIGHBOUR]
    assert e[0] == name and bytes(e[5]) == heard


@SOME
@given(st.binary(max_size=wire.MAX_PAYLOAD_BYTES))
def test_any_beacon_payload_is_dropped_or_read_without_raising(payload):
    n = _node()
    _feed(n, _signed_frame(wire.BEACON, payload), 1000)
    e = n.neigh.table[NEIGHBOUR]  # learned from the header, whatever the payload
    if n.drops.get("field"):
        assert e[0] is None  # dropped: nothing read
    else:
        assert isinstance(e[0], str) and isinstance(bytes(e[5]), bytes)


def test_what_a_beacon_leaves_in_the_neighbour_table_is_as_bounded_as_the_format():
    n = _node()
    payload = bytes((100,)) + b"n" * 100 + bytes((120,)) + b"\x05" * 120
    _feed(n, _signed_frame(wire.BEACON, payload), 1000)
    e = n.neigh.table[NEIGHBOUR]
    assert n.drops.get("field") == 1     # over the format's bounds: dropped, nothing kept
    assert e[0] is None and len(e[5]) == 0


@SOME
@given(st.integers(0, 8), st.binary(max_size=8))
def test_an_ack_of_any_length_is_dropped_or_clears_only_what_it_names(n_bytes, tail):
    n = _node()
    mid = n.send(NEIGHBOUR, "hello", 0)
    key = ME << 32 | mid
    payload = (wire.be32(mid) + tail)[:n_bytes]
    _feed(n, _signed_frame(wire.ACK, payload, hop_limit=7, dest=ME, msg_id=77), 10)
    assert (key in n.held) == (len(payload) != 4)
    assert n.drops.get("field", 0) == (len(payload) != 4)


# ---- storage read back at start -----------------------------------------------------

@FEW
@given(st.dictionaries(st.sampled_from(["ids", "replay", "h%016x" % (NEIGHBOUR << 32 | 5), "h0",
                                        "q" + "ab" * 16, "q" + "zz" * 16, "f" + "ab" * 16 + "s",
                                        "f" + "ab" * 16 + "m", "f" + "ab" * 16 + "c0"]),
                       st.binary(max_size=60), max_size=9))
def test_a_node_starts_whatever_its_storage_holds(records):
    storage = MemoryStorage()
    for name, data in records.items():
        storage.put(name, data)
    n = Node(node_settings(ME), storage, random.Random(3))
    n.start(0)
    _feed(n, _signed_frame(wire.POST, b"hi", hop_limit=3, dest=wire.BROADCAST, msg_id=9), 100)


# ---- the hostile-frame harness (tools/fuzz.py), briefly ------------------------------------

def _short_fuzz_run(identity=False):
    path = Path(__file__).resolve().parent.parent / "tools" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("fuzz", path)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    if identity:
        fuzz._with_identity()
    traces = []
    s = fuzz.fuzz(2000, 5, lambda n: fuzz.Driver(5, None, traces.append), traces.append)
    assert s["frames"] == 2000
    counts = (s["crashes"], s["uncaught"], s["internal_errors"], s["api_errors"])
    assert counts == (0, 0, 0, 0), traces
    assert s["bound_violations"] == []
    return s


def test_a_short_fuzz_run_crashes_nothing_and_nothing_escapes():
    _short_fuzz_run()


def test_a_short_fuzz_run_on_a_node_with_an_identity_reaches_the_new_parsers():
    # IDENT frames, and private messages and acks sealed with real pair keys
    s = _short_fuzz_run(identity=True)
    assert s["signed_by_type"]["10"] > 50            # IDENT frames with a valid tag
    assert s["drops"].get("private", 0) > 0           # sealed with no key of ours, or unsealed
    assert s["drops"].get("field", 0) > 0             # (keys that are not their id's among them)
