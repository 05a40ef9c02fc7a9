"""What a frame on air is, for the simulator's metrics: a readable type name,
and the direct message it carries or acknowledges.

`classify(router_kind, frame) -> (type_name, msg_key)`: msg_key is
`(origin, msg_id)` of the unicast the frame carries (any copy: first send,
relay, retry, held copy sent again) or acknowledges, else None — the key
`Metrics.sent` files the message under.

- pollen: the header is in the clear (`pollen.wire`): byte 0's low nibble is
  the type, origin in bytes 2-5, destination 6-9, message id 10-13. An ACK's
  payload, the id it acknowledges, is encrypted, so acks alone are unpacked
  (with the simulation's network key; once per ack, not per copy); the acked
  message's origin is the ack's destination.
- another router: its class's static `frame_info(frame) -> (type_name,
  msg_key)` (`ManagedFlood`, `MeshCore`); a router class without one has its
  frames counted as "frame".
"""
from __future__ import annotations

from pollen import wire

POLLEN_TYPES = ("type0", "beacon", "post", "msg", "ack", "catalog", "want", "chunk", "part",
                "status") + tuple(f"type{i}" for i in range(10, 16))
_ACK_CACHE_LIMIT = 4096   # acks remembered (their copies are relayed within minutes)


def _u32(b, i):
    return int.from_bytes(b[i:i + 4], "big")


class PollenFrames:
    """Classifies pollen frames; remembers what each ack acknowledged."""

    def __init__(self, network_key_hex: str):
        from pollen.crypto import NetworkKey

        self.key = NetworkKey(bytes.fromhex(network_key_hex))
        self._acks: dict[bytes, tuple | None] = {}   # ack header bytes 2-13 -> msg_key

    def classify(self, frame: bytes):
        t = frame[0] & 0x0F
        if t == wire.MSG:
            return "msg", (_u32(frame, 2), _u32(frame, 10))
        if t == wire.ACK:
            return "ack", self._acked(frame)
        return POLLEN_TYPES[t], None

    def _acked(self, frame):
        k = frame[2:14]
        if k in self._acks:
            return self._acks[k]
        f, _ = wire.unpack(frame, self.key)
        got = (f.dest, wire.u32(f.payload, 0)) if f is not None and len(f.payload) >= 4 else None
        if len(self._acks) >= _ACK_CACHE_LIMIT:
            self._acks.clear()
        self._acks[k] = got
        return got


def classifier(router_kind: str, router_cls=None):
    """A function frame -> (type_name, msg_key) for this router's frames;
    `router_cls` is the class of its routers (found from the kind if not given)."""
    if router_kind == "pollen":
        from pollen_controller.sim.engine import NETWORK_KEY

        return PollenFrames(NETWORK_KEY).classify
    if router_cls is None:
        router_cls = _router_class(router_kind)
    info = getattr(router_cls, "frame_info", None)
    return info if info is not None else (lambda frame: ("frame", None))


def _router_class(router_kind):
    # the engine knows how to make each router; one throwaway node tells its class
    import random

    from pollen.storage import MemoryStorage
    from pollen_controller.sim.engine import NETWORK_KEY, make_router

    settings = {"node_id": 1, "network_key": NETWORK_KEY, "region": "EU868", "name": "n1",
                "preset": {"sf": 11, "bw_hz": 250000, "cr": 5, "preamble": 16}}
    return type(make_router(router_kind, settings, MemoryStorage(), random.Random(0)))


_classifiers: dict = {}


def classify(router_kind: str, frame: bytes):
    """(type_name, msg_key) of one frame of this router (a classifier per kind
    is kept; a simulation keeps its own, `classifier(kind)`)."""
    c = _classifiers.get(router_kind)
    if c is None:
        c = _classifiers[router_kind] = classifier(router_kind)
    return c(frame)
