# The node's settings, validated: every error names the field and what was
# expected. Built from the "node" part of config.json (see docs/config.md).
# Only needed while a node starts: the app drops this module afterwards
# (pollen_io/boot.py), and Node keeps the values, not this code.
from pollen._compat import const
from pollen.region import REGIONS
from pollen.ids import ConfigError, Values, parse_node_id, fail
from pollen.airtime import PRESETS, preset_time_on_air_us


_MAX_BEACON_BYTES = const(90)




# field: (default, minimum, maximum) for integer settings
_INTS = {
    "hop_limit": (6, 1, 7),
    "beacon_interval_ms": (300000, 1000, 86400000),
    "lifetime_ms": (86400000, 1000, 30 * 86400000),
    "cancel_copies": (2, 1, 16),
    "contention_slots": (12, 2, 64),
    "post_retries": (1, 0, 3),
    "relay_retries": (2, 0, 3),
    "max_attempts": (3, 1, 10),
    # transmissions one node spends on one message as a relay (every copy
    # and retry; held copies offered later have 4 more), so no message can
    # take unbounded airtime: two end-to-end attempts of three tries a hop
    "tx_budget": (6, 1, 16),
    "held_capacity": (32, 1, 1024),
    "seen_capacity": (128, 16, 4096),
    # origins whose window of message ids a node keeps (tables.Replay)
    "replay_origins": (32, 8, 1024),
    "neighbour_capacity": (32, 4, 256),
    "neighbour_expiry_ms": (900000, 1000, 86400000),
    "route_capacity": (256, 4, 1024),
    "route_expiry_ms": (7200000, 60000, 86400000),
    "repair_window_ms": (600000, 0, 86400000),
    # the shared commons (sharing.py)
    "max_file_bytes": (65536, 1024, 262144),
    "file_quota_bytes": (262144, 0, 16777216),
    "catalog_share_per_mille": (10, 0, 100),
    "catalog_interval_ms": (300000, 1000, 86400000),
    "catalog_capacity": (64, 4, 1024),
    "catalog_expiry_ms": (3600000, 1000, 7 * 86400000),
    "fetch_window": (16, 1, 64),
    "fetch_patience_ms": (600000, 1000, 86400000),
    # telemetry (telemetry.py): 0 = send no status frames
    "telemetry_interval_ms": (300000, 0, 86400000),
    "telemetry_share_per_mille": (20, 0, 500),
}
FIELDS = ("node_id", "name", "network_key", "region", "preset", "identity_key") + tuple(_INTS)


def _hex_key(v, field="network_key", n=32):
    if isinstance(v, (bytes, bytearray)) and len(v) == n:
        return bytes(v)
    ok = isinstance(v, str) and len(v) == 2 * n
    if ok:
        try:
            return bytes(int(v[i:i + 2], 16) for i in range(0, 2 * n, 2))
        except ValueError:
            pass
    fail(field, "%d hex digits (%d bytes)" % (2 * n, n), v if not isinstance(v, str) else v[:8] + "...")


def _preset(v):
    if isinstance(v, str):
        if v in PRESETS:
            return PRESETS[v]
        fail("preset", "one of " + ", ".join(sorted(PRESETS)), v)
    if isinstance(v, dict):
        try:
            p = (int(v["sf"]), int(v["bw_hz"]), int(v.get("cr", 5)), int(v.get("preamble", 16)))
        except (KeyError, ValueError, TypeError):
            fail("preset", "{sf, bw_hz, cr, preamble}", v)
        if not 6 <= p[0] <= 12 or p[1] not in (62500, 125000, 250000, 500000) or not 5 <= p[2] <= 8:
            fail("preset", "sf 6..12, bw_hz 62500/125000/250000/500000, cr 5..8", v)
        return p
    fail("preset", "a preset name or {sf, bw_hz, cr, preamble}", v)


class Settings:
    def __init__(self, d):
        if not isinstance(d, dict):
            raise ConfigError("config: expected a JSON object, got %r" % (type(d).__name__,))
        for k in d:
            if k not in FIELDS:
                raise ConfigError("config field '%s': unknown (known: %s)" % (k, ", ".join(FIELDS)))
        if "node_id" not in d:
            fail("node_id", "a node id", None)
        self.node_id = parse_node_id(d["node_id"])
        name = d.get("name", "%08x" % self.node_id)
        if not isinstance(name, str) or not 0 < len(name.encode()) <= 16:
            fail("name", "text of 1..16 bytes", name)
        self.name = name
        if "network_key" not in d:
            fail("network_key", "64 hex digits (a 32-byte key)", None)
        self.network_key = _hex_key(d["network_key"])
        region = d.get("region", "EU868")
        if region not in REGIONS:
            fail("region", "one of " + ", ".join(sorted(REGIONS)), region)
        self.region = region
        self.preset = _preset(d.get("preset", "LongFast"))
        dwell_ms = REGIONS[region][3]
        # the largest beacon (90 bytes: name and 32 neighbours and 8 post tags)
        # must fit the region's dwell time; texts are checked when sent
        if dwell_ms and preset_time_on_air_us(_MAX_BEACON_BYTES, self.preset) > dwell_ms * 1000:
            fail("preset", "a preset whose frames fit %s's %d ms dwell time (e.g. MediumFast)"
                  % (region, dwell_ms), d.get("preset", "LongFast"))
        self.identity_key = None
        if d.get("identity_key") is not None:
            # the node's X25519 secret, then its public key (identity.py;
            # pollen provision writes both: X25519 at every start would take
            # a second on a board, and its heap); its id is the public key's
            self.identity_key = _hex_key(d["identity_key"], "identity_key", 64)
            from pollen.identity import node_id_from_public
            want = node_id_from_public(self.identity_key[32:])
            if want != self.node_id:
                fail("node_id", "%08x, the id of identity_key's public key" % want,
                      "%08x" % self.node_id)
        for k, (default, lo, hi) in _INTS.items():
            v = d.get(k, default)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                fail(k, "an integer %d..%d" % (lo, hi), v)
            setattr(self, k, v)


def plain(settings):
    # Settings (or a dict to check) -> Values: what Node keeps
    if not isinstance(settings, Settings):
        settings = Settings(settings)
    v = Values()
    for k in FIELDS:
        setattr(v, k, getattr(settings, k))
    return v
