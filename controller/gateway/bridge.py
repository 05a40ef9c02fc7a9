"""Which posts other gateways published a gateway posts into its own mesh,
and when (docs/gateway.md, "Meshes joined through one broker"): the pure
decisions, no IO. gateway/gateway.py feeds it what its node hears and
what the broker brings, with the time."""
from __future__ import annotations

import random

# A post another gateway bridged into this mesh starts with this mark and the
# uid of the post it carries (ORIGIN-ID), then a space: "⇄0000000c-17 text".
# Such posts are published (for monitoring) but never bridged again, so
# nothing loops between meshes; a gateway of the mesh that hears one knows
# that post is in already.
BRIDGE_MARK = "\u21c4"
_SEEN_UIDS = 1024         # uids remembered by Bridging, each kind
_NODES = 4096             # node ids remembered by Bridging (of our mesh; of gateways)
HOLD_S = 5.0             # a post bridged in waits this long, for our node to hear it here first,
STEP_S = 8.0             # + this for each gateway of our mesh with a lower node id,
SPREAD_S = 2.0           # + 0..this at random


class Recent(dict):
    """The last `size` keys added, oldest out first."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def add(self, key, value=None):
        self.pop(key, None)
        self[key] = value
        if len(self) > self.size:
            del self[next(iter(self))]


def hold_back_s(own, peers, hold_s: float, step_s: float, spread_s: float, rng) -> float:
    """How long one of several bridges holds a text back before bringing it
    in: hold + rank * step + 0..spread s, rank being how many of `peers`
    (the other bridges into the same network that it knows of) have a lower
    id than `own`, so the bridges take turns and the first one's copy is
    heard by the others before their holds end. Also used by
    bridge_meshtastic/holdback.py."""
    rank = 0 if own is None else sum(1 for p in peers if p < own)
    return hold_s + rank * step_s + rng() * spread_s


def parse_mark(text) -> tuple[str, str | None] | None:
    """A bridged post's text -> (origin node id, uid it carries or None for the
    first version's "⇄ORIGIN text"); None when it carries no mark."""
    if not (isinstance(text, str) and text.startswith(BRIDGE_MARK)):
        return None
    first = text[1:].split(" ", 1)[0]
    origin, _, msg_id = first.partition("-")
    if not is_node_id(origin):
        return ("", None)  # marked, so never bridged again, but says nothing we can use
    return (origin, first) if msg_id.isdigit() else (origin, None)


class Bridging:
    """Which posts other gateways published this gateway posts into its own
    mesh, and when (docs/gateway.md, "Meshes joined through one broker"). No IO: what this
    gateway's node hears and what other gateways publish go in, with the time;
    decisions come out.

    A post from another gateway is held back HOLD + rank * STEP + 0..SPREAD s,
    rank being how many gateways of our mesh that we know of have a lower
    node id, and dropped if meanwhile our node hears it (it is in this mesh:
    that gateway is one of ours) or hears it bridged in by another gateway of
    ours. A gateway is known to be of our mesh once our node heard its node
    (a post, a message, a telemetry frame or a neighbour list naming it) or
    heard a uid that gateway published."""

    def __init__(self, own: str, hold_s: float = HOLD_S, step_s: float = STEP_S,
                 spread_s: float = SPREAD_S, rng=random.random):
        self.own = own  # our node's id (the gateway sets it again if the board changes)
        self.hold_s, self.step_s, self.spread_s, self.rng = hold_s, step_s, spread_s, rng
        self.members = Recent(_NODES)      # node ids in our mesh
        self.gateways = Recent(_NODES)     # node ids of gateways, ours or not
        self.here = Recent(_SEEN_UIDS)     # uids our node heard
        self.brought = Recent(_SEEN_UIDS)  # uids a gateway of ours bridged in (heard marked)
        self.published = Recent(_SEEN_UIDS)  # uid -> the other gateway that published it
        self.taken = Recent(_SEEN_UIDS)    # uid -> when its hold ends: bridged in by us
        self.members.add(own)

    def peers(self) -> list[str]:
        """The other gateways of our mesh that we know of."""
        return sorted(g for g in self.gateways if g in self.members and g != self.own)

    def heard_node(self, node_id: str):
        self.members.add(node_id)

    def heard(self, from_id: str, uid: str, text, now_s: float) -> list[str]:
        """Our node heard a post or message; the uids of our held posts to drop."""
        self.members.add(from_id)
        self.here.add(uid)
        if uid in self.published:  # another gateway published what we heard: it is ours
            self.members.add(self.published[uid])
        uids = [uid]
        mark = parse_mark(text)
        if mark:
            self.gateways.add(from_id)  # a node posting marked posts is a gateway's
            if mark[1]:
                self.brought.add(mark[1])
                uids.append(mark[1])
        return [u for u in uids if self.taken.get(u, 0) > now_s]

    def offer(self, body: dict, now_s: float) -> float | None:
        """Another gateway's publication (message topic): None if it is not
        ours to bridge, else how long to hold it back (s)."""
        uid, gw, origin = body.get("uid"), body.get("gateway"), body.get("from")
        if not isinstance(uid, str) or gw == self.own:
            return None
        if is_node_id(gw):
            self.gateways.add(gw)
            self.published.add(uid, gw)
            if uid in self.here:  # we heard what it heard: it is a gateway of our mesh
                self.members.add(gw)
        if (body.get("kind") != "post" or body.get("bridged") or parse_mark(body.get("text"))
                or gw in self.members or origin in self.members      # from our own mesh
                or uid in self.here or uid in self.brought or uid in self.taken):
            return None
        return hold_back_s(self.own, self.peers(), self.hold_s, self.step_s, self.spread_s, self.rng)

    def took(self, uid: str, until_s: float):
        """The gateway stored the post uid, held back until until_s."""
        self.taken.add(uid, until_s)


def is_node_id(x) -> bool:
    return isinstance(x, str) and len(x) == 8 and all(c in "0123456789abcdef" for c in x)
