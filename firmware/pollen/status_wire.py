# Status frames (STATUS, type 9) decoded: the payload telemetry.py packs,
# as a dict of named fields (docs/protocol.md §11). Used by hosts (the
# controller decodes the `data` of a node's `telemetry` console events) and
# by the tests; a node itself never loads this module, so its code and
# names take no room in a small heap.
from pollen.wire import u32

_VERSION = 1
_NEIGHBOURS = 8
_FIXED_BYTES = 45
_UNKNOWN32 = 0xFFFFFFFF


def _u16(b, i):
    return (b[i] << 8) | b[i + 1]


def _s8(b):
    return b - 256 if b > 127 else b


def unpack_status(p):
    # -> dict for the app, or None if the payload is malformed
    if len(p) < 2 or p[0] != _VERSION or p[1] > 16:
        return None
    i = 2 + p[1]
    if len(p) < i + _FIXED_BYTES:
        return None
    try:
        name = bytes(p[2:i]).decode()
    except Exception:
        return None
    k = p[i + 44]
    if k > _NEIGHBOURS or len(p) != i + _FIXED_BYTES + 6 * k:
        return None
    mv = _u16(p, i + 4)
    heap = u32(p, i + 6)
    c = [u32(p, i + 20 + 4 * n) for n in range(6)]
    nb = []
    for j in range(i + _FIXED_BYTES, len(p), 6):
        nb.append({"id": "%08x" % u32(p, j), "rssi_dbm": _s8(p[j + 4]),
                   "snr_db": _s8(p[j + 5]) / 4})
    return {"name": name, "uptime_s": u32(p, i),
            "battery_mv": mv or None, "heap_free_bytes": None if heap == _UNKNOWN32 else heap,
            "airtime_pct": _u16(p, i + 10) / 10, "duty_headroom_pct": _u16(p, i + 12) / 10,
            "queue": p[i + 14], "held": p[i + 15], "files_kib": _u16(p, i + 16),
            "interval_s": _u16(p, i + 18),
            "counters": {"rx": c[0], "tx": c[1], "relayed": c[2], "duplicates": c[3],
                         "dropped": c[4], "auth_failed": c[5]},
            "neighbours": nb}
