# The node's settings: defaults, limits, and an error that names its field.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen.airtime import PRESETS
from pollen.settings import Settings, ConfigError, FIELDS, parse_node_id

from .util import raises


KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def _cfg(**kw):
    d = {"node_id": 0x0A0B0C01, "network_key": KEY_HEX}
    for k in kw:
        d[k] = kw[k]
    return d


def _config_error(d):
    e = raises(ConfigError, Settings, d)
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


def test_a_bad_node_id_is_quoted_as_given():
    # "ffffffff" typed, "ffffffff" said back (it said 4294967295)
    for v, shown in (("ffffffff", "'ffffffff'"), ("0a0b0c00", "'0a0b0c00'"), (0, "0")):
        try:
            parse_node_id(v, "--node-id")
        except ConfigError as e:
            assert str(e).endswith("got " + shown), str(e)
        else:
            assert False, v


def test_settings_every_field_error_names_the_field():
    bad = {
        "node_id": (0, 0xFFFFFFFF, 0x100, 0x1FFFFFFFF, "zz", "0a0b0c00", True, None, 1.5),
        "name": ("", "x" * 17, 5, None),
        "network_key": ("00" * 31, "zz" * 32, KEY_HEX + "00", bytes(16), 7, None),
        "region": ("XX", "", None),
        "identity_key": ("00" * 63, "zz" * 64, "00" * 32, 7, bytes(16)),
        "preset": ("Nope", {"sf": 13, "bw_hz": 125000}, {"bw_hz": 125000},
                   {"sf": 7, "bw_hz": 100000}, {"sf": 7, "bw_hz": 125000, "cr": 9}, [7], None),
    }
    ints = {"hop_limit": (0, 8), "beacon_interval_ms": (999, 86400001),
            "lifetime_ms": (999, 30 * 86400000 + 1), "cancel_copies": (0, 17),
            "contention_slots": (1, 65), "post_retries": (-1, 4), "relay_retries": (-1, 4),
            "max_attempts": (0, 11), "tx_budget": (0, 17), "held_capacity": (0, 1025),
            "seen_capacity": (15, 4097), "neighbour_capacity": (3, 257), "replay_origins": (7, 1025),
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


def test_a_node_with_an_identity_has_the_id_of_its_public_key():
    from pollen.identity import node_id_from_public
    from pollen.x25519 import public_key
    secret = bytes(range(1, 33))
    nid = node_id_from_public(public_key(secret))
    key = (secret + public_key(secret)).hex()   # (as pollen provision writes it)
    s = Settings(_cfg(node_id=nid, identity_key=key))
    assert s.identity_key == secret + public_key(secret)
    msg = _config_error(_cfg(node_id=0x0A0B0C01, identity_key=key))
    assert "'node_id'" in msg and "%08x" % nid in msg   # an id of our choosing is refused
