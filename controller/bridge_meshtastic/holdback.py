"""Several bridges between the same pollen mesh and the same Meshtastic
channel, and one copy of each text on the other side (docs/meshtastic.md,
"No loops, no doubles"): the pure decisions, no IO. bridge.py feeds it the
marked texts each side hears and the texts it is about to bridge, with the
time (Unix time, s: held texts wait in the SQLite file across restarts).

A text to be bridged into a network waits hold + rank * step + 0..spread s
(gateway/bridge.py's hold_back_s, as the MQTT gateways hold posts back),
rank being how many bridges into that network this one knows of have a
lower id (a pollen node id; a Meshtastic node number). The sender of a
marked text is a bridge (or an MQTT gateway): that is how bridges learn of
each other, on each network; a bridge on MQTT also makes itself known by
its node info ("pollen bridge ID", relay.bridge_name), before any text. A
copy counts only if it carries our text (same_text): uids are predictable,
and a made-up copy must not keep a text out. If meanwhile this bridge hears a marked text of
the same uid on that network, another bridge brought it in first: the held
text (both parts of a split one: they share the uid) is dropped.
"""
from __future__ import annotations

import random

from pollen_controller.gateway.bridge import Recent, hold_back_s, parse_mark

HOLD_S = 2.0     # a text to bridge waits this long (a lone bridge's added latency, + the spread),
STEP_S = 4.0     # + this for each known bridge into that network with a lower id (about two
#                  LongFast airtimes of a 200-byte text: the first copy is heard before it ends),
SPREAD_S = 1.0   # + 0..this at random (bridges that do not know of each other yet)
FORGET_S = 24 * 3600.0   # a bridge not heard for this long no longer counts (it may be gone)
_MATCH_CHARS = 12         # a copy's last characters that must be in our text
MAX_RANK = 4     # a text waits for 4 bridges at most: anyone may claim to be one (a node
#                  info, a marked text), and 256 made-up ones would hold each text 17 min
NETWORKS = ("pollen", "meshtastic")
_UIDS = 1024     # uids remembered, each network
_BRIDGES = 256   # bridges remembered, each network


class _Network:
    """What this bridge knows of one network: the other bridges into it,
    the uids heard brought in by them, and the uids it holds back."""

    def __init__(self):
        self.bridges = Recent(_BRIDGES)   # id of a sender of marked texts -> when last heard
        self.brought = Recent(_UIDS)      # uid heard marked on this network -> that text
        self.held = Recent(_UIDS)         # uid -> (when its hold ends, its text): ours, to bring in
        self.last_until = 0.0              # the latest hold end: texts keep their order


class HoldBack:
    def __init__(self, hold_s: float = HOLD_S, step_s: float = STEP_S,
                 spread_s: float = SPREAD_S, rng=random.random):
        if hold_s <= 0:          # --hold-s 0: no hold-back at all
            hold_s = step_s = spread_s = 0.0
        self.hold_s, self.step_s, self.spread_s, self.rng = hold_s, step_s, spread_s, rng
        self.nets = {name: _Network() for name in NETWORKS}

    def bridges(self, network: str, own=None, now_s: float | None = None) -> list:
        """The other bridges into `network` this bridge knows of (heard
        within FORGET_S of now_s, when given)."""
        return sorted(b for b, t in self.nets[network].bridges.items()
                      if b != own and (now_s is None or now_s - t < FORGET_S))

    def known(self, network: str, bridge, now_s: float):
        """Another bridge into `network` made itself known otherwise than by
        a text (a bridge on MQTT by its node info: "pollen bridge ID")."""
        self.nets[network].bridges.add(bridge, now_s)

    def heard(self, network: str, sender, text, now_s: float) -> list[str]:
        """A text heard on `network` (from sender); the uids of our held
        texts for that network to drop: another bridge brought them in."""
        mark = parse_mark(text)
        if mark is None or sender is None:
            return []
        net = self.nets[network]
        net.bridges.add(sender, now_s)
        uid = mark[1]
        if uid is None:
            return []
        net.brought.add(uid, text)
        until_s, ours = net.held.get(uid, (0, None))
        if until_s > now_s and same_text(text, ours):
            del net.held[uid]
            return [uid]
        return []

    def offer(self, network: str, uid: str, own, now_s: float, text: str | None = None) -> float | None:
        """A text of `uid` to bridge into `network`, this bridge being `own`
        there (None: not known yet, rank 0): how long to hold it back (s),
        or None when another bridge's copy was already heard there. `text`
        (the text as it was written): a copy counts only if it carries it."""
        net = self.nets[network]
        if uid in net.brought and same_text(net.brought[uid], text):
            return None
        lowest = self.bridges(network, own, now_s)[:MAX_RANK]   # (sorted: the rank is capped)
        hold = hold_back_s(own, lowest, self.hold_s, self.step_s, self.spread_s, self.rng)
        if hold > 0:
            hold = max(hold, net.last_until - now_s)   # not before an earlier text
            net.held.add(uid, (now_s + hold, text))
            net.last_until = now_s + hold
        return hold

    def took(self, network: str, uid: str, until_s: float):
        """A text of `uid` already held back until until_s (kept on disk
        when the bridge last stopped)."""
        net = self.nets[network]
        net.held.add(uid, (until_s, None))   # (its text not known here: any copy counts)
        net.last_until = max(net.last_until, until_s)


def same_text(copy: str, ours: str | None) -> bool:
    """Does a marked copy carry our text? Its last characters (the end of
    the text, or of the part it carries) are in ours: another bridge's copy
    does; a made-up one naming a uid it predicted cannot, not knowing the
    text. ours None: not known, any copy counts."""
    if ours is None:
        return True
    rest = copy.split(" ", 1)[1] if " " in copy else ""
    k = min(_MATCH_CHARS, len(rest), len(ours))
    return k > 0 and rest[-k:] in ours
