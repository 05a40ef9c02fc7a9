# The node's bounded tables (pollen/tables.py): messages seen, neighbours
# heard, routes learned; their capacities, eviction, expiry and lookups.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen.tables import Seen, Neighbours, Routes, _find, _fold

MIN_MS = 60000


def _key(origin, msg_id):
    return origin << 32 | msg_id


# ---- the slot search both tables use ------------------------------------------

def test_find_matches_whole_slots_only():
    buf = bytearray(b"ABCDEFGHIJKL")
    assert _find(buf, b"ABCD") == 0 and _find(buf, b"EFGH") == 1 and _find(buf, b"IJKL") == 2
    assert _find(buf, b"CDEF") == -1 and _find(buf, b"GHIJ") == -1   # across two slots
    assert _find(bytearray(b"ABCDEFGHCDEF"), b"CDEF") == 2   # past the match across slots
    assert _find(bytearray(b"xxCDEFCDEF"), b"CDEF", 2) == 0   # slots counted from `at`
    assert _find(bytearray(b"CDEFGCDEF"), b"CDEF", 2) == -1
    assert _find(bytearray(), b"ABCD") == -1


def test_folded_keys_are_never_a_free_slot():
    # a fresh table is all zero bytes: no key may fold to them
    for key in (0, 1, 1 << 32, 0x3FFFFFFF, 0x40000000, 0xFFFFFFFFFFFFFFFF, _key(0x0A0B0C01, 7)):
        k = _fold(key)
        assert len(k) == 4 and k != bytes(4) and k[0] & 0x40, hex(key)
        assert key not in Seen(4)


# ---- Seen: the last `capacity` message keys ------------------------------------

def test_seen_remembers_the_last_capacity_keys():
    s = Seen(8)
    keys = [_key(0x0A0B0C01, i) for i in range(8)]
    for k in keys:
        s.add(k)
    assert all(k in s for k in keys)
    assert _key(0x0A0B0C02, 0) not in s       # same id, another origin
    s.add(_key(0x0A0B0C01, 100))               # one more: the oldest goes
    assert keys[0] not in s and all(k in s for k in keys[1:])
    for i in range(101, 108):                  # and the rest, in arrival order
        s.add(_key(0x0A0B0C01, i))
    assert not any(k in s for k in keys[:8])
    assert _key(0x0A0B0C01, 100) in s and _key(0x0A0B0C01, 107) in s


def test_seen_adding_a_known_key_changes_nothing():
    s = Seen(4)
    for i in range(4):
        s.add(_key(1, i))
    s.spent(_key(1, 1), 3)
    s.add(_key(1, 1))                          # known: neither moved nor reset
    assert s.spent(_key(1, 1)) == 3
    s.add(_key(1, 9))                          # takes the oldest slot, not a second for 1
    assert _key(1, 0) not in s
    assert all(_key(1, i) in s for i in (1, 2, 3, 9))


def test_seen_charges_transmissions_to_a_message():
    s = Seen(4)
    k = _key(0x0A0B0C01, 5)
    assert s.spent(k) == 0 and k not in s      # asking does not remember it
    assert s.spent(k, 1) == 1 and k in s       # charging does
    assert s.spent(k, 2) == 3 and s.spent(k) == 3
    s.add(k)
    assert s.spent(k) == 3
    assert s.spent(k, 300) == 303 and s.spent(k) == 255   # kept in one byte
    assert s.spent(k, 1) == 256 and s.spent(k) == 255


def test_seen_charge_follows_the_slot_round_the_ring():
    # a message first charged as the ring wraps gets its own slot's count,
    # and a key that comes back after eviction starts again at 0
    s = Seen(3)
    s.add(_key(1, 0))
    s.add(_key(1, 1))
    s.spent(_key(1, 0), 7)
    assert s.spent(_key(1, 2), 4) == 4         # the last slot
    assert s.spent(_key(1, 3), 5) == 5         # wraps to slot 0: 1/0 evicted
    assert _key(1, 0) not in s and s.spent(_key(1, 0)) == 0
    assert (s.spent(_key(1, 1)), s.spent(_key(1, 2)), s.spent(_key(1, 3))) == (0, 4, 5)
    s.add(_key(1, 0))                          # back, in slot 1: its count is new
    assert s.spent(_key(1, 0)) == 0 and _key(1, 1) not in s


# ---- Neighbours: nodes heard directly --------------------------------------------

def test_neighbour_heard_is_new_first_and_after_expiry():
    n = Neighbours(4, expiry_ms=1000)
    assert n.heard(0x0A0B0C01, -90, 5, 0, "hill")
    assert not n.heard(0x0A0B0C01, -80, 7, 1000)    # within the expiry (inclusive)
    assert n.heard(0x0A0B0C01, -85, 6, 2001)        # silent for longer: back again
    e = n.table[0x0A0B0C01]
    assert e[:5] == ["hill", -85, 6, 2001, 3]        # name kept when not given again
    n.heard(0x0A0B0C01, -70, 9, 2100, "mill")
    assert e[0] == "mill" and e[1:5] == [-70, 9, 2100, 4] and e[5] == b""


def test_neighbour_liveness_and_list():
    n = Neighbours(4, expiry_ms=1000)
    n.heard(1, -90, 5, 0)
    n.heard(2, -90, 5, 500)
    assert n.is_live(1, 1000) and not n.is_live(1, 1001) and not n.is_live(3, 0)
    assert sorted(n.live(1000)) == [1, 2] and n.live(1001) == [2] and n.live(1501) == []
    assert len(n.table) == 2                   # expired entries stay until evicted


def test_a_full_neighbour_table_drops_the_least_recently_heard():
    n = Neighbours(3, expiry_ms=10 ** 6)
    n.heard(0xA, -90, 5, 0)
    n.heard(0xB, -90, 5, 10)
    n.heard(0xC, -90, 5, 20)
    n.heard(0xA, -90, 5, 30)                   # heard again: now the newest
    assert not n.heard(0xD, -90, 5, 40)        # a newcomer to a full table is no new link
    assert sorted(n.table) == [0xA, 0xC, 0xD]
    n.heard(0xE, -90, 5, 50)
    assert sorted(n.table) == [0xA, 0xD, 0xE]
    assert len(n.table) == 3


def test_neighbour_by_low_byte():
    n = Neighbours(8, expiry_ms=1000)
    n.heard(0x0A0B0C01, -90, 5, 0)
    n.heard(0x0A0B0C02, -90, 5, 0)
    assert n.by_low_byte(0x01, 0) == 0x0A0B0C01 and n.by_low_byte(0x02, 1000) == 0x0A0B0C02
    assert n.by_low_byte(0x03, 0) is None
    assert n.by_low_byte(0x01, 1001) is None   # expired
    n.heard(0x0D0E0F01, -90, 5, 600)           # another ...01: ambiguous while both live
    assert n.by_low_byte(0x01, 600) is None
    assert n.by_low_byte(0x01, 1001) == 0x0D0E0F01   # the first has expired
    n.table[0x0D0E0F01][5] = b"\x02\x07"        # its beacon's two-hop view
    assert n.their_neighbours(0x01, 1001) == b"\x02\x07"
    assert n.their_neighbours(0x01, 600) == b""      # ambiguous: none
    assert n.their_neighbours(0x02, 1001) == b""     # expired


# ---- Routes: next hops learned from traffic -------------------------------------

def test_route_learned_by_next_hop_low_byte():
    r = Routes()
    assert len(r) == 0 and r.next_hop(0x0A0B0C09, 0) is None and r.hops(0x0A0B0C09) is None
    assert r.learn(0x0A0B0C09, 0x0A0B0C33, 2, 0)
    assert r.next_hop(0x0A0B0C09, 0) == 0x33 and r.hops(0x0A0B0C09) == 2 and len(r) == 1
    assert r.next_hop(0x0A0B0C08, 0) is None
    assert r.learn(0x8A0B0C09, 0x44, 15, 0)    # the top bit set, most hops the field holds
    assert r.next_hop(0x8A0B0C09, 0) == 0x44 and r.hops(0x8A0B0C09) == 15
    assert r.next_hop(0x0A0B0C09, 0) == 0x33
    assert not r.learn(0, 0x33, 1, 0) and len(r) == 2 and r.next_hop(0, 0) is None


def test_route_learn_says_whether_the_next_hop_changed():
    r = Routes()
    assert r.learn(9, 0x33, 3, 0)
    assert not r.learn(9, 0x33, 3, MIN_MS)     # the same, refreshed
    assert not r.learn(9, 0x33, 5, MIN_MS)     # the same way, now longer: kept as told
    assert r.hops(9) == 5
    assert r.learn(9, 0x44, 2, MIN_MS)         # a shorter way
    assert r.next_hop(9, MIN_MS) == 0x44


def test_a_fresh_route_is_not_replaced_by_a_longer_one():
    r = Routes(expiry_ms=10 * MIN_MS)
    r.learn(9, 0x33, 2, 0)
    assert not r.learn(9, 0x44, 3, 9 * MIN_MS)
    assert r.next_hop(9, 9 * MIN_MS) == 0x33 and r.hops(9) == 2
    assert r.learn(9, 0x44, 2, 9 * MIN_MS)     # as short: the latest wins
    assert r.next_hop(9, 9 * MIN_MS) == 0x44
    # once the route is stale, a longer one is taken
    assert r.learn(9, 0x55, 4, 19 * MIN_MS)
    assert r.next_hop(9, 19 * MIN_MS) == 0x55 and r.hops(9) == 4


def test_route_expiry_counts_whole_minutes():
    r = Routes(expiry_ms=10 * MIN_MS)
    r.learn(9, 0x33, 1, 30000)                  # learned in minute 0
    assert r.next_hop(9, 10 * MIN_MS - 1) == 0x33
    assert r.next_hop(9, 10 * MIN_MS) is None  # minute 10: ten minutes old
    assert r.hops(9) == 1 and len(r) == 1     # kept until its slot is needed


def test_route_ages_across_the_minute_counter_wrap():
    # minutes are kept modulo 2**18 (182 days): a route is as old as it is
    # on either side of the wrap, and after it
    r = Routes(capacity=2, expiry_ms=60 * MIN_MS)
    for t in ((2 ** 18 - 2) * MIN_MS, (2 ** 18 + 5) * MIN_MS, (3 * 2 ** 18 + 7) * MIN_MS):
        r.learn(9, 0x33, 1, t)
        assert r.next_hop(9, t + 10 * MIN_MS) == 0x33, t
        assert r.next_hop(9, t + 60 * MIN_MS) is None, t
        assert not r.learn(9, 0x44, 2, t + 10 * MIN_MS), t   # still fresh: the shorter one stays
    # full, the oldest goes by its age across the wrap: learned before it
    r = Routes(capacity=2)
    r.learn(1, 0x11, 1, (2 ** 18 - 1) * MIN_MS)
    r.learn(2, 0x22, 1, (2 ** 18 + 1) * MIN_MS)
    r.learn(3, 0x33, 1, (2 ** 18 + 2) * MIN_MS)
    assert r.hops(1) is None and r.hops(2) == 1 and r.hops(3) == 1


def test_route_ids_with_zero_bytes_do_not_look_like_free_slots():
    # a free slot is four zero bytes on a slot's boundary; the zero bytes
    # of two ids side by side are not one
    r = Routes()
    ids = (0x01000000, 0x00000002, 0x00030000, 0x00000400)
    for i, d in enumerate(ids):
        r.learn(d, i + 1, 1, 0)
    r.forget(0x00030000)
    r.learn(0x05000000, 9, 1, 0)
    assert [r.next_hop(d, 0) for d in ids] == [1, 2, None, 4]
    assert r.next_hop(0x05000000, 0) == 9 and len(r) == 4


def test_route_table_grows_32_slots_at_a_time_up_to_its_capacity():
    r = Routes(capacity=40)
    assert len(r.table) == 0 and len(r._ring) == 0
    r.learn(1, 0x11, 1, 0)
    assert len(r.table) == 32 and len(r._ring) == 4 * 32
    for d in range(2, 33):
        r.learn(d, 0x11, 1, 0)
    assert len(r.table) == 32 and len(r) == 32
    r.learn(33, 0x11, 1, 0)
    assert len(r.table) == 40 and len(r._ring) == 4 * 40   # the last 8, not 32
    for d in range(34, 41):
        r.learn(d, 0x11, 1, 0)
    assert len(r) == 40 and all(r.next_hop(d, 0) == 0x11 for d in range(1, 41))


def test_a_full_route_table_drops_the_oldest_route():
    r = Routes(capacity=3)
    for m, d in enumerate((1, 2, 3)):
        r.learn(d, d, 1, m * MIN_MS)
    r.learn(1, 1, 1, 3 * MIN_MS)                # refreshed: 2 is now the oldest
    assert r.learn(4, 4, 1, 4 * MIN_MS)
    assert len(r) == 3 and len(r.table) == 3
    assert r.next_hop(2, 4 * MIN_MS) is None and r.hops(2) is None
    assert [r.next_hop(d, 4 * MIN_MS) for d in (1, 3, 4)] == [1, 3, 4]


def test_a_forgotten_route_frees_its_slot():
    r = Routes(capacity=32)
    for d in range(1, 33):
        r.learn(d, d, 1, d * MIN_MS)
    r.forget(20)
    assert len(r) == 31 and r.next_hop(20, 40 * MIN_MS) is None and r.hops(20) is None
    r.forget(20)                                # unknown: nothing changes
    r.forget(99)
    assert len(r) == 31
    r.learn(50, 0x50, 1, 40 * MIN_MS)          # takes the free slot: nothing evicted
    assert len(r) == 32 and len(r.table) == 32
    assert r.next_hop(1, 40 * MIN_MS) == 1 and r.next_hop(50, 40 * MIN_MS) == 0x50
