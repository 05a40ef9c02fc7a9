"""Several bridges, one copy (controller/bridge_meshtastic/holdback.py,
docs/meshtastic.md "No loops, no doubles"): the pure decisions, with a
fixed random draw and the time given."""
import pytest

from pollen_controller.bridge_meshtastic.holdback import (FORGET_S, HOLD_S, MAX_RANK, SPREAD_S, STEP_S,
                                                         HoldBack)
from pollen_controller.bridge_meshtastic.relay import to_meshtastic, to_pollen
from pollen_controller.gateway.bridge import Bridging, hold_back_s

M = "\u21c4"
ANNA = 0x11223344


def hb(**kw):
    return HoldBack(**{"hold_s": 2.0, "step_s": 4.0, "spread_s": 1.0, "rng": lambda: 0.5, **kw})


def test_the_defaults_keep_a_lone_bridge_quick():
    assert (HOLD_S, STEP_S, SPREAD_S) == (2.0, 4.0, 1.0)
    assert HoldBack(rng=lambda: 0.999).offer("pollen", "11223344-7", "0000000a", 0.0) < 3.0


@pytest.mark.parametrize("own, others, rank", [
    ("0000000a", [], 0),                              # alone (or none heard yet)
    ("0000000a", ["0000000b"], 0),                    # the lowest id goes first
    ("0000000b", ["0000000a"], 1),
    ("0000000c", ["0000000a", "0000000b", "0000000d"], 2),
    ("0000000b", ["0000000b"], 0),                    # itself is not counted
    (None, ["0000000a"], 0),                          # own id not known yet
])
def test_rank_among_the_bridges_heard(own, others, rank):
    h = hb()
    for k, other in enumerate(others):                 # each heard posting a marked text
        assert h.heard("pollen", other, f"{M}0000000c-{k} hi", 0.0) == []
    h.heard("pollen", "0000000e", "not marked: not a bridge", 0.0)
    assert h.offer("pollen", "11223344-7", own, 10.0) == 2.0 + 4.0 * rank + 0.5


def test_a_bridge_not_heard_for_a_day_no_longer_counts():
    h = hb()
    h.heard("pollen", "0000000a", f"{M}0000000c-1 hi", 0.0)
    assert h.offer("pollen", "11223344-1", "0000000b", FORGET_S - 10) == 6.5
    assert h.offer("pollen", "11223344-2", "0000000b", FORGET_S) == 2.5
    h.heard("pollen", "0000000a", f"{M}0000000c-2 hi", FORGET_S + 10)    # back
    assert h.offer("pollen", "11223344-3", "0000000b", FORGET_S + 20) == 6.5


def test_bridges_are_known_per_network():
    h = hb()
    h.heard("meshtastic", 0x01, f"{M}0000000c-17 bakery: bread", 0.0)   # a lower Meshtastic num
    assert h.offer("pollen", "11223344-7", "0000000b", 0.0) == 2.5     # not a pollen bridge
    assert h.offer("meshtastic", "0000000c-18", 0x02, 0.0) == 6.5
    assert h.bridges("meshtastic") == [0x01] and h.bridges("pollen") == []


def test_a_copy_heard_while_held_drops_ours():
    h = hb()
    assert h.offer("pollen", "11223344-7", "0000000b", 100.0) == 2.5   # held until 102.5
    assert h.heard("pollen", "0000000a", f"{M}11223344-8 ANNA: other", 101.0) == []
    assert h.heard("meshtastic", ANNA, f"{M}11223344-7 ANNA: hi", 101.0) == []  # the other network
    assert h.heard("pollen", "0000000a", f"{M}11223344-7 ANNA: hi", 101.0) == ["11223344-7"]
    assert h.heard("pollen", "0000000a", f"{M}11223344-7 ANNA: hi", 101.5) == []  # dropped once
    assert h.bridges("pollen", "0000000b") == ["0000000a"]             # and learnt of


def test_a_copy_heard_after_the_hold_is_a_double_not_dropped():
    h = hb()
    h.offer("meshtastic", "0000000c-17", 0x02, 100.0)                  # until 102.5: gone by then
    assert h.heard("meshtastic", 0x01, f"{M}0000000c-17 bread", 102.6) == []


def test_a_copy_heard_before_ours_is_not_bridged_at_all():
    h = hb()
    assert h.heard("pollen", "0000000a", f"{M}11223344-7 ANNA: hi", 5.0) == []
    assert h.offer("pollen", "11223344-7", "0000000b", 6.0) is None
    assert h.offer("meshtastic", "11223344-7", 0x02, 6.0) == 2.5       # (another network)


def test_texts_keep_their_order():
    draws = iter([1.0, 0.0, 0.0, 0.0])
    h = hb(rng=lambda: next(draws))
    assert h.offer("pollen", "11223344-1", "0000000b", 0.0) == 3.0       # until 3.0
    assert h.offer("pollen", "11223344-2", "0000000b", 0.5) == 2.5       # not before it: until 3.0
    assert h.offer("meshtastic", "0000000c-1", 0x02, 0.5) == 2.0        # the other way: its own
    h.took("pollen", "11223344-0", 9.0)                                  # held when we last stopped
    assert h.offer("pollen", "11223344-3", "0000000b", 1.0) == 8.0


def test_split_texts_are_one_unit():
    # both parts carry the uid in the mark: whichever part of the other
    # bridge's copy is heard first drops our whole text (the rows share the uid)
    long = "ü" * 100 + " " + "x" * 28
    ours = to_meshtastic("0000000c", 30, None, long)
    theirs = to_meshtastic("0000000c", 30, "bakery", long)
    assert len(ours) == len(theirs) == 2
    h = hb()
    h.offer("meshtastic", "0000000c-30", 0x02, 0.0)
    assert h.heard("meshtastic", 0x01, theirs[1], 1.0) == ["0000000c-30"]
    assert h.heard("meshtastic", 0x01, theirs[0], 1.1) == []
    parts = to_pollen(ANNA, 9, "ANNA", "y" * 229)
    h.offer("pollen", "11223344-9", "0000000b", 0.0)
    assert len(parts) == 2 and h.heard("pollen", "0000000a", parts[0], 1.0) == ["11223344-9"]


def test_hold_zero_turns_it_off():
    h = HoldBack(hold_s=0, rng=lambda: 0.9)
    h.heard("pollen", "0000000a", f"{M}0000000c-1 hi", 0.0)
    assert h.offer("pollen", "11223344-7", "0000000b", 0.0) == 0.0
    assert h.heard("pollen", "0000000a", f"{M}11223344-7 ANNA: hi", 0.0) == []  # nothing held
    assert h.offer("pollen", "11223344-7", "0000000b", 0.0) is None   # but never twice


def test_held_on_disk_before_a_restart():
    h = hb()
    h.took("meshtastic", "0000000c-17", 50.0)
    assert h.heard("meshtastic", 0x01, f"{M}0000000c-17 bread", 49.0) == ["0000000c-17"]


def test_the_gateways_hold_is_the_same_rule():
    assert hold_back_s("0000000c", ["0000000a", "0000000b", "0000000d"], 5.0, 8.0, 2.0,
                       lambda: 0.5) == 5.0 + 2 * 8.0 + 1.0
    b = Bridging("0000000c", rng=lambda: 0.5)
    for gw in ("0000000a", "0000000b"):
        b.heard_node(gw)
        b.offer({"uid": f"{gw}-1", "gateway": gw, "from": gw, "kind": "post", "text": "x"}, 0.0)
    assert b.offer({"uid": "000000ff-1", "gateway": "000000ee", "from": "000000ff", "kind": "post",
                    "text": "hi"}, 0.0) == 5.0 + 2 * 8.0 + 1.0


def test_a_flood_of_made_up_bridges_holds_a_text_back_boundedly():
    # anyone on the broker (or the air) may claim to be a bridge, by a node info or a
    # marked text: 300 made-up bridges with lower ids cost a text 4 ranks at most
    h = hb()
    for k in range(300):
        h.known("meshtastic", k + 1, 0.0)
        h.heard("pollen", f"{k + 1:08x}", f"{M}11223344-{k} spam", 0.0)
    assert h.offer("meshtastic", "0000000c-17", 0xB0000001, 10.0) == 2.0 + 4.0 * MAX_RANK + 0.5
    assert h.offer("pollen", "55667788-7", "f0000000", 10.0) == 2.0 + 4.0 * MAX_RANK + 0.5
    assert MAX_RANK == 4


def test_a_made_up_copy_does_not_stop_a_text():
    # uids are predictable (a pollen node's message ids count up): anyone on the channel
    # could send marked texts naming the next ones, to keep them out of Meshtastic. A
    # copy counts only when it carries our text (the end of what it carries is in ours)
    h = hb()
    assert h.heard("meshtastic", 0x66, f"{M}0000000c-18 X: made up", 0.0) == []
    assert h.offer("meshtastic", "0000000c-18", 0x02, 1.0, "market at noon") == 2.5
    assert h.heard("meshtastic", 0x66, f"{M}0000000c-18 X: made up again", 1.5) == []
    assert h.heard("meshtastic", 0x01, f"{M}0000000c-18 bakery: market at noon", 2.0) == \
        ["0000000c-18"]                                                  # a real copy
    long = "ü" * 100 + " " + "x" * 28                                   # both parts of a split one
    for k in (0, 1):                   # either part of the other's copy is ours
        part = to_meshtastic("0000000c", 30 + k, "bakery", long)[k]
        h.offer("meshtastic", f"0000000c-{30 + k}", 0x02, 3.0, long)
        assert h.heard("meshtastic", 0x01, part, 3.5) == [f"0000000c-{30 + k}"]
    assert h.heard("pollen", "0000000a", f"{M}11223344-9 ANNA: hi", 4.0) == []
    assert h.offer("pollen", "11223344-9", "0000000b", 4.5, "hi") is None   # heard before ours
