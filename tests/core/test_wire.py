# Wire format v1, airtime, duty cycle and settings: pure functions tested with
# byte literals both ways. Runs under CPython (pytest) and MicroPython
# (tests/core/mp_run.py): plain test_* functions and asserts only.
from pollen import wire
from pollen.wire import Frame, BEACON, POST, MSG, ACK, BROADCAST, F_WANT_ACK, F_STORED
from pollen.crypto import NetworkKey, TAG_BYTES
from pollen.airtime import time_on_air_us, low_data_rate, symbol_us, preset_time_on_air_us, PRESETS
from pollen.region import DutyCycle, REGIONS
from pollen.settings import Settings, ConfigError, FIELDS, parse_node_id

from .fakemesh import XorShift, max_hour_airtime_us


KEY = NetworkKey(bytes(range(32)))
REASONS = (wire.R_SHORT, wire.R_OVERSIZE, wire.R_VERSION, wire.R_TAG, wire.R_TYPE, wire.R_FIELD)

# Golden vectors: generated once from the code and frozen. A change here is a
# change of the wire format (bump wire.VERSION and tell every node).
# (frame fields, bytes on air)
VECTORS = (
    (Frame(BEACON, 0, 0, 0, 0x0A0B0C01, BROADCAST, 0x11223344, 0, 0x01, b"alice"),
     "11000a0b0c01ffffffff1122334400015f12365c2fb239aa6cc06aa0f2"),
    (Frame(POST, 0, 6, 2, 0x0A0B0C01, BROADCAST, 0x55667788, 0, 0x22, b"hello, mesh"),
     "12320a0b0c01ffffffff556677880022095c575914bb218c1a512e67ea4dc245b185b5"),
    (Frame(MSG, F_WANT_ACK, 5, 1, 0x0A0B0C01, 0x0D0E0F02, 0x99AABBCC, 0x33, 0x44, b"hi there"),
     "13a90a0b0c010d0e0f0299aabbcc3344b87411777098c3ea4d31e3cba097c4af"),
    (Frame(ACK, 0, 6, 0, 0x0D0E0F02, 0x0A0B0C01, 0xDDEEFF01, 0x44, 0x02, b"\x99\xaa\xbb\xcc"),
     "14300d0e0f020a0b0c01ddeeff01440280054a7590d91ca3ee5d974a"),
    (Frame(MSG, F_WANT_ACK | F_STORED, 7, 7, 0x0A0B0C01, 0x0D0E0F02, 0x99AABBCD, 0, 0x55, b""),
     "13ff0a0b0c010d0e0f0299aabbcd0055b03860c4ca2817fb"),
)


def _fields(f):
    return (f.ftype, f.flags, f.hop_limit, f.hops, f.origin, f.dest, f.msg_id,
            f.next_hop, f.relayer, bytes(f.payload))


def _valid():
    return bytes.fromhex(VECTORS[1][1])


def _signed(body):
    # A frame with a valid tag over any header we like: for fields the tag
    # check passes but a later check must reject.
    body = bytes(body)
    return body + KEY.tag(body)


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


# ---- golden vectors ---------------------------------------------------------

def test_pack_golden_vectors():
    for f, hexed in VECTORS:
        got = wire.pack(f, KEY)
        assert got == bytes.fromhex(hexed), (f.ftype, got.hex())


def test_unpack_golden_vectors():
    for f, hexed in VECTORS:
        g, reason = wire.unpack(bytes.fromhex(hexed), KEY)
        assert reason is None
        assert _fields(g) == _fields(f)


def test_header_is_in_clear_and_payload_is_not():
    data = _valid()
    assert data[0] == 0x12                      # version 1, POST
    assert data[1] == (6 << 3) | 2             # hop limit 6, hops 2
    assert data[2:6] == b"\x0a\x0b\x0c\x01"
    assert data[6:10] == b"\xff\xff\xff\xff"
    assert data[10:14] == b"\x55\x66\x77\x88"
    assert len(data) == wire.HEADER_BYTES + len(b"hello, mesh") + TAG_BYTES
    assert b"hello" not in data


def test_unpack_accepts_bytearray_and_memoryview():
    data = _valid()
    for d in (bytearray(data), memoryview(data)):
        f, reason = wire.unpack(d, KEY)
        assert reason is None and f.payload == b"hello, mesh"


def test_frame_key_names_the_message():
    f = VECTORS[2][0]
    assert f.key() == (0x0A0B0C01 << 32) | 0x99AABBCC


def test_largest_frame_fits():
    payload = bytes(range(wire.MAX_PAYLOAD_BYTES))
    data = wire.pack(Frame(POST, 0, 7, 0, 1, BROADCAST, 2, 0, 1, payload), KEY)
    assert len(data) == wire.MAX_FRAME_BYTES == 255
    f, reason = wire.unpack(data, KEY)
    assert reason is None and f.payload == payload


def test_other_network_key_is_rejected():
    other = NetworkKey(bytes(32))
    for _, hexed in VECTORS:
        assert wire.unpack(bytes.fromhex(hexed), other) == (None, wire.R_TAG)


def test_keystream_differs_by_frame_type():
    # The CTR nonce includes the type, so a MSG and its ACK never share keystream.
    a = wire.pack(Frame(MSG, 0, 1, 0, 7, 9, 5, 0, 7, bytes(8)), KEY)
    b = wire.pack(Frame(ACK, 0, 1, 0, 7, 9, 5, 0, 7, bytes(8)), KEY)
    assert a[16:24] != b[16:24]


def test_crypto_matches_independent_hmac_and_aes_ctr():
    # CPython only: check NetworkKey against the standard library's HMAC and
    # the cryptography package's CTR mode (MicroPython has neither).
    try:
        import hmac
        import hashlib
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        return
    k = bytes(range(32))
    mac = hashlib.sha256(b"pollen v1 mac" + k).digest()
    enc = hashlib.sha256(b"pollen v1 enc" + k).digest()[:16]
    data = _valid()
    assert data[-8:] == hmac.new(mac, data[:-8], hashlib.sha256).digest()[:8]
    nonce = data[2:6] + data[10:14] + data[0:1] + bytes(7)
    c = Cipher(algorithms.AES(enc), modes.CTR(nonce)).decryptor()
    assert c.update(data[16:-8]) == b"hello, mesh"
    long_text = bytes(range(200))  # several counter blocks
    nonce12 = bytes(range(12))
    c = Cipher(algorithms.AES(enc), modes.CTR(nonce12 + bytes(4))).encryptor()
    assert KEY.ctr(nonce12, long_text) == c.update(long_text)


def test_network_key_must_be_32_bytes():
    _raises(ValueError, NetworkKey, bytes(16))


# ---- local misuse raises ------------------------------------------------------

def test_pack_rejects_misuse():
    _raises(ValueError, wire.pack, Frame(POST, 0, 7, 0, 1, BROADCAST, 2, 0, 1,
                                         bytes(wire.MAX_PAYLOAD_BYTES + 1)), KEY)
    _raises(ValueError, wire.pack, Frame(POST, 0, 2, 3, 1, BROADCAST, 2), KEY)
    _raises(ValueError, wire.pack, Frame(POST, 0, 8, 0, 1, BROADCAST, 2), KEY)


# ---- bad frames from the air: (None, reason), never an exception -------------

def test_short_frames():
    data = _valid()
    for n in range(wire.HEADER_BYTES + TAG_BYTES):
        assert wire.unpack(data[:n], KEY) == (None, wire.R_SHORT), n


def test_truncated_frame_fails_its_tag():
    data = _valid()
    for n in range(wire.HEADER_BYTES + TAG_BYTES, len(data)):
        assert wire.unpack(data[:n], KEY) == (None, wire.R_TAG), n


def test_oversize_frames():
    data = wire.pack(Frame(POST, 0, 7, 0, 1, BROADCAST, 2, 0, 1, bytes(wire.MAX_PAYLOAD_BYTES)), KEY)
    assert wire.unpack(data + b"\x00", KEY) == (None, wire.R_OVERSIZE)
    assert wire.unpack(bytes(1000), KEY) == (None, wire.R_OVERSIZE)


def test_unknown_version():
    data = bytearray(_valid())
    for v in (0, 2, 15):
        data[0] = (v << 4) | POST
        assert wire.unpack(bytes(data), KEY) == (None, wire.R_VERSION)
        # a correct tag does not make an unknown version acceptable
        assert wire.unpack(_signed(data[:-8]), KEY) == (None, wire.R_VERSION)


def test_every_single_bit_flip_is_caught():
    data = _valid()
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            want = wire.R_VERSION if i == 0 and bit >= 4 else wire.R_TAG
            assert wire.unpack(bytes(bad), KEY) == (None, want), (i, bit)


def test_unknown_type_with_valid_tag():
    body = bytearray(_valid()[:-8])
    for t in (0, 10, 12, 15):
        body[0] = (wire.VERSION << 4) | t
        assert wire.unpack(_signed(body), KEY) == (None, wire.R_TYPE), t


def test_hops_over_hop_limit_with_valid_tag():
    body = bytearray(_valid()[:-8])
    for limit, hops in ((0, 1), (2, 3), (5, 7)):
        body[1] = (limit << 3) | hops
        assert wire.unpack(_signed(body), KEY) == (None, wire.R_FIELD), (limit, hops)
    body[1] = (7 << 3) | 7
    f, reason = wire.unpack(_signed(body), KEY)
    assert reason is None and f.hops == f.hop_limit == 7


def _check_outcome(data, result, original=None):
    assert isinstance(result, tuple) and len(result) == 2
    f, reason = result
    if f is None:
        assert reason in REASONS, reason
    else:
        # accepted: only possible for the untouched original (no forgery)
        assert reason is None and data == original


def test_fuzz_random_bytes_never_raise():
    rng = XorShift(11)
    for i in range(2000):
        n = rng.getrandbits(9) % 300
        data = bytes(rng.getrandbits(8) for _ in range(n))
        if i % 2:  # half of them with the right version, to reach the tag check
            data = bytes((0x10 | (rng.getrandbits(4)),)) + data[1:]
        result = wire.unpack(data, KEY)
        _check_outcome(data, result)
        assert result[0] is None


def test_fuzz_mutated_frames_never_raise_nor_pass():
    rng = XorShift(12)
    originals = [bytes.fromhex(h) for _, h in VECTORS]
    for i in range(2000):
        orig = originals[i % len(originals)]
        data = bytearray(orig)
        for _ in range(1 + rng.getrandbits(2)):
            op = rng.getrandbits(3)
            pos = rng.getrandbits(8) % max(1, len(data))
            if op < 3 and data:
                data[pos] ^= 1 << rng.getrandbits(3)
            elif op < 5 and data:
                data[pos] = rng.getrandbits(8)
            elif op == 5:
                data = data[:pos]
            elif op == 6:
                data = data[:pos] + bytes((rng.getrandbits(8),)) + data[pos:]
            else:
                data = data + bytes(rng.getrandbits(8) for _ in range(rng.getrandbits(5)))
        data = bytes(data)
        _check_outcome(data, wire.unpack(data, KEY), orig)


# ---- relaying rewrites the hop fields only -----------------------------------

def test_relayed_keeps_payload_and_retags():
    data = bytes.fromhex(VECTORS[2][1])   # MSG, hop limit 5, hops 1
    copy = wire.relayed(data, 2, 0x77, 0x88, KEY)
    assert len(copy) == len(data)
    assert copy[16:-8] == data[16:-8]     # ciphertext carried unchanged
    assert copy[0] == data[0] and copy[2:14] == data[2:14]
    assert copy[-8:] != data[-8:]
    f, reason = wire.unpack(copy, KEY)
    assert reason is None
    assert (f.hops, f.next_hop, f.relayer) == (2, 0x77, 0x88)
    assert (f.ftype, f.flags, f.hop_limit, f.origin, f.dest, f.msg_id, f.payload) == \
        (MSG, F_WANT_ACK, 5, 0x0A0B0C01, 0x0D0E0F02, 0x99AABBCC, b"hi there")


def test_with_flags_sets_stored_and_retags():
    data = bytes.fromhex(VECTORS[2][1])
    copy = wire.with_flags(data, F_STORED, KEY)
    f, reason = wire.unpack(copy, KEY)
    assert reason is None
    assert f.flags == F_WANT_ACK | F_STORED and f.payload == b"hi there" and f.hops == 1


# ---- airtime (Semtech SX1276 datasheet 4.1.1.7) -------------------------------

def test_airtime_known_values():
    assert time_on_air_us(10, 7, 125000, 5, 8) == 41216
    assert time_on_air_us(51, 7, 125000, 5, 8) == 102656
    assert time_on_air_us(51, 12, 125000, 5, 8) == 2465792
    assert symbol_us(7, 125000) == 1024 and symbol_us(12, 125000) == 32768


def test_low_data_rate_optimisation():
    assert low_data_rate(11, 125000) and low_data_rate(12, 125000)
    assert not low_data_rate(10, 125000)
    assert not low_data_rate(11, 250000) and not low_data_rate(12, 500000)
    # LDRO on makes SF12 frames longer (fewer bits per symbol)
    assert time_on_air_us(51, 12, 125000, 5, 8, ldro=False) < time_on_air_us(51, 12, 125000, 5, 8)


def test_airtime_grows_with_payload_and_options():
    for name in PRESETS:
        p = PRESETS[name]
        t = [preset_time_on_air_us(n, p) for n in range(0, 256, 5)]
        for a, b in zip(t, t[1:]):
            assert a <= b, name
    assert time_on_air_us(10, 7, 125000, crc=False) < time_on_air_us(10, 7, 125000)
    assert time_on_air_us(10, 7, 125000, explicit_header=False) < time_on_air_us(10, 7, 125000)
    assert time_on_air_us(10, 7, 125000, cr=8) > time_on_air_us(10, 7, 125000, cr=5)


def test_airtime_rejects_bad_modulation():
    for sf, cr in ((5, 5), (13, 5), (7, 4), (7, 9)):
        _raises(ValueError, time_on_air_us, 10, sf, 125000, cr)


# ---- duty cycle -----------------------------------------------------------------

HOUR_MS = 3600000
MIN_MS = 60000


def test_duty_budget():
    d = DutyCycle(REGIONS["EU868"][1])
    assert d.budget_us == 36000000               # 1 % of an hour = 36 s
    assert d.earliest_ms(5, 1000000) == 5
    assert d.headroom_per_mille(5) == 1000
    assert d.earliest_ms(5, 36000001) == -1      # longer than the whole budget
    assert d.earliest_ms(5, 36000000) == 5


def test_duty_no_limit():
    d = DutyCycle(0)
    d.record(0, 10 ** 9)
    assert d.earliest_ms(1, 10 ** 9) == 1
    assert d.headroom_per_mille(1) == 1000


def test_duty_deferral_until_old_airtime_leaves():
    d = DutyCycle(10)
    d.record(0, 20000000)                 # minute 0
    d.record(10 * MIN_MS + 5, 16000000)   # minute 10: budget now used up
    assert d.used_us(11 * MIN_MS) == 36000000
    assert d.headroom_per_mille(11 * MIN_MS) == 0
    assert d.total_us == 36000000
    t = d.earliest_ms(11 * MIN_MS, 1000)
    assert t > 11 * MIN_MS
    assert t >= HOUR_MS                   # not before minute 0's airtime is an hour old
    assert d.earliest_ms(t, 1000) == t    # and then it fits
    assert d.used_us(t) == 16000000
    # 20 s needs both minutes to leave
    t2 = d.earliest_ms(11 * MIN_MS, 20000001)
    assert t2 >= 10 * MIN_MS + 5 + HOUR_MS
    assert d.earliest_ms(t2, 20000001) == t2


def test_duty_window_slides():
    d = DutyCycle(10)
    for m in range(60):
        d.record(m * MIN_MS + 30000, 500000)
    assert d.used_us(59 * MIN_MS + 30000) == 30000000
    # each minute later, one more minute of airtime has left the window
    used = [d.used_us(HOUR_MS + 30000 + k * MIN_MS) for k in range(0, 61, 10)]
    for a, b in zip(used, used[1:]):
        assert b < a
    assert used[-1] == 0


def test_duty_never_exceeds_budget_in_any_hour():
    # A greedy sender that always transmits as soon as earliest_ms allows must
    # stay within 1 % in every sliding hour, measured exactly.
    d = DutyCycle(10)
    rng = XorShift(5)
    sent = []  # (t_ms, airtime_us)
    t = 0
    while t < 4 * HOUR_MS:
        air = 200000 + rng.getrandbits(20) % 2000000
        t = d.earliest_ms(t, air)
        assert t >= 0
        d.record(t, air)
        sent.append((t, air))
        t += air // 1000 + 1 + rng.getrandbits(16) % 30000
    assert len(sent) > 50
    assert max_hour_airtime_us(sent, HOUR_MS) <= d.budget_us


# ---- settings --------------------------------------------------------------------

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def _cfg(**kw):
    d = {"node_id": 0x0A0B0C01, "network_key": KEY_HEX}
    for k in kw:
        d[k] = kw[k]
    return d


def _config_error(d):
    e = _raises(ConfigError, Settings, d)
    assert isinstance(e, ValueError)
    return str(e)


def test_settings_defaults():
    s = Settings(_cfg())
    assert s.node_id == 0x0A0B0C01 and s.name == "0a0b0c01"
    assert s.network_key == bytes.fromhex(KEY_HEX)
    assert s.region == "EU868" and s.preset == PRESETS["LongFast"]
    assert s.hop_limit == 6 and s.held_capacity == 32
    s = Settings(_cfg(node_id="0a0b0c02", name="hill", preset={"sf": 9, "bw_hz": 125000}))
    assert s.node_id == 0x0A0B0C02 and s.name == "hill" and s.preset == (9, 125000, 5, 16)
    assert parse_node_id("000000ff") == 0xFF


def test_settings_every_field_error_names_the_field():
    bad = {
        "node_id": (0, 0xFFFFFFFF, 0x100, 0x1FFFFFFFF, "zz", "0a0b0c00", True, None, 1.5),
        "name": ("", "x" * 17, 5, None),
        "network_key": ("00" * 31, "zz" * 32, KEY_HEX + "00", bytes(16), 7, None),
        "region": ("XX", "", None),
        "preset": ("Nope", {"sf": 13, "bw_hz": 125000}, {"bw_hz": 125000},
                   {"sf": 7, "bw_hz": 100000}, {"sf": 7, "bw_hz": 125000, "cr": 9}, [7], None),
    }
    ints = {"hop_limit": (0, 8), "beacon_interval_ms": (999, 86400001),
            "lifetime_ms": (999, 30 * 86400000 + 1), "cancel_copies": (0, 17),
            "contention_slots": (1, 65), "post_retries": (-1, 4), "relay_retries": (-1, 4),
            "max_attempts": (0, 11), "tx_budget": (0, 17), "held_capacity": (0, 1025),
            "seen_capacity": (15, 4097), "neighbour_capacity": (3, 257),
            "neighbour_expiry_ms": (999, 86400001), "route_capacity": (3, 1025),
            "route_expiry_ms": (59999, 86400001), "repair_window_ms": (-1, 86400001),
            "max_file_bytes": (1023, 262145), "file_quota_bytes": (-1, 16777217),
            "catalog_share_per_mille": (-1, 101), "catalog_interval_ms": (999, 86400001),
            "catalog_capacity": (3, 1025),
            "catalog_expiry_ms": (999, 7 * 86400000 + 1), "fetch_window": (0, 65),
            "fetch_patience_ms": (999, 86400001),
            "telemetry_interval_ms": (-1, 86400001), "telemetry_share_per_mille": (-1, 501)}
    for k in ints:
        bad[k] = ints[k] + ("5", True, 2.0, None)
    for field in FIELDS:
        assert field in bad, field  # a new field needs a case here
        for v in bad[field]:
            msg = _config_error(_cfg(**{field: v}))
            assert "'%s'" % field in msg, (field, v, msg)
    assert "'node_id'" in _config_error({"network_key": KEY_HEX})
    assert "'network_key'" in _config_error({"node_id": 0x0A0B0C01})


def test_settings_limits_are_inclusive():
    s = Settings(_cfg(hop_limit=1, held_capacity=1024, contention_slots=2))
    assert (s.hop_limit, s.held_capacity, s.contention_slots) == (1, 1024, 2)
    s = Settings(_cfg(hop_limit=7, name="x" * 16))
    assert s.hop_limit == 7


def test_settings_unknown_field_and_not_an_object():
    msg = _config_error(_cfg(hop_limt=3))
    assert "'hop_limt'" in msg
    _config_error([1, 2])
    _config_error("node_id")


def test_settings_error_does_not_print_the_key():
    wrong = "ab" * 31 + "zz"
    msg = _config_error(_cfg(network_key=wrong))
    assert wrong[:16] not in msg
