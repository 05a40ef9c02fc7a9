# Fair share of relay airtime among origins (Congestion.unfair, called by
# Node._transmit_due): a member flooding the mesh cannot take its relays'
# airtime from everyone else once the channel is contended. Runs under
# CPython and MicroPython.
from pollen import wire
from pollen.wire import Frame, POST, BROADCAST
from pollen.crypto import NetworkKey
from pollen.node import Node
from pollen.storage import MemoryStorage

from .fakemesh import KEY_HEX, XorShift, settings

KEY = NetworkKey(bytes.fromhex(KEY_HEX))
SPAMMER = 0x55


def _relays(busy_ms):
    # one relay hears a post a second for a minute: four of five from one
    # origin, one from each of twelve others; the channel is busy for
    # busy_ms of every second with others' frames. Which does it relay?
    # (beacons rare: it never learns enough to cancel a relay as covered)
    n = Node(settings(0x10, beacon_interval_ms=600000), MemoryStorage(), XorShift(5))
    n.start(0)
    sent = []
    now = 1000
    for i in range(60):
        origin = SPAMMER if i % 5 else 0x20 + i
        mid = (i + 1) * 2654435761 & 0xFFFFFFFF  # (ids unlike each other: the seen
        # ring folds keys to 30 bits, and ids 1000 + i folded alike)
        f = Frame(POST, 0, 6, 0, origin, BROADCAST, mid, 0, origin & 0xFF, b"a post")
        n.on_frame(wire.pack(f, KEY), -100, -5, now)
        if busy_ms:
            n.channel_busy(now + busy_ms, now)
        now = _poll(n, now, 20, sent)
    _poll(n, now, 200, sent)  # what is still queued
    return n, sent


def _poll(n, now, turns, sent):
    # n's turns 50 ms apart; the origins of the posts it sends go to sent
    for _ in range(turns):
        for a in n.poll(now):
            if a[0] == "tx":
                g, _ = wire.unpack(a[1], KEY)
                if g.ftype == POST:
                    sent.append(g.origin)
        now += 50
    return now


def test_a_spamming_origin_is_relayed_less_than_honest_ones_under_contention():
    n, sent = _relays(600)  # 60 % busy: congestion level 2
    honest = [o for o in sent if o != SPAMMER]
    spam = sent.count(SPAMMER)
    assert len(honest) == 12, sent                 # every honest post is relayed
    assert 0 < spam <= 24, (spam, sent)            # the spammer's: at most half of 48
    assert n.drops.get("unfair", 0) == 48 - spam   # the rest are counted
    assert n.status(now_ms=70000)["dropped"]["unfair"] == 48 - spam


def test_without_contention_every_origin_is_relayed():
    n, sent = _relays(0)
    assert sent.count(SPAMMER) == 48 and len(sent) == 60, sent
    assert "unfair" not in n.drops
