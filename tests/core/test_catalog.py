# The catalog of files in the mesh (pollen/catalog.py): what a node learns
# from its neighbours' CATALOG frames, the way to each file, and the bounds.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen.catalog import Catalog, FAR_HOPS

C1 = b"\x01" * 8   # content ids
C2 = b"\x02" * 8
C3 = b"\x03" * 8


def test_a_new_file_is_worth_telling_on_and_a_repeat_is_not():
    c = Catalog()
    assert c.distance(C1, 0) is None and c.sources(C1, 0) == []
    assert c.heard(C1, "map.bin", 16, 0, 0xA, 0)       # 0xA holds it
    assert c.distance(C1, 0) == 1 and c.sources(C1, 0) == [(0xA, 0)]
    assert not c.heard(C1, "map.bin", 16, 0, 0xA, 10)
    assert not c.heard(C1, "map.bin", 16, 2, 0xB, 10)  # a longer way: kept, not told
    assert c.sources(C1, 10) == [(0xA, 0), (0xB, 2)] and c.distance(C1, 10) == 1
    assert c.table[C1][:3] == ["map.bin", 16, 10]


def test_a_shorter_way_is_worth_telling_on():
    c = Catalog()
    c.heard(C1, "f", 1, 3, 0xA, 0)
    assert c.distance(C1, 0) == 4
    assert c.heard(C1, "f", 1, 1, 0xB, 5)
    assert c.distance(C1, 5) == 2 and c.sources(C1, 5)[0] == (0xB, 1)
    assert not c.heard(C1, "f", 1, 1, 0xC, 6)          # as short: no better


def test_a_source_s_latest_word_counts():
    c = Catalog()
    c.heard(C1, "f", 1, 1, 0xA, 0)
    assert not c.heard(C1, "f", 1, 4, 0xA, 5)          # its way got longer
    assert c.sources(C1, 5) == [(0xA, 4)] and c.distance(C1, 5) == 5


def test_files_too_far_away_are_not_kept():
    c = Catalog()
    assert not c.heard(C1, "f", 1, FAR_HOPS, 0xA, 0)
    assert not c.heard(C1, "f", 1, FAR_HOPS + 5, 0xA, 0)
    assert C1 not in c.table and c.distance(C1, 0) is None
    assert c.heard(C1, "f", 1, FAR_HOPS - 1, 0xA, 0)
    assert c.distance(C1, 0) == FAR_HOPS


def test_sources_fewest_hops_then_most_recent_first():
    c = Catalog()
    c.heard(C1, "f", 1, 2, 0xA, 0)
    c.heard(C1, "f", 1, 1, 0xB, 10)
    c.heard(C1, "f", 1, 2, 0xC, 20)
    c.heard(C1, "f", 1, 1, 0xD, 5)
    assert c.sources(C1, 20) == [(0xB, 1), (0xD, 1), (0xC, 2), (0xA, 2)]
    assert c.sources(C1, 20, exclude=(0xB, 0xC)) == [(0xD, 1), (0xA, 2)]
    assert c.distance(C1, 20) == 2


def test_four_sources_per_file_the_worst_goes():
    c = Catalog()
    c.heard(C1, "f", 1, 1, 0xA, 0)
    c.heard(C1, "f", 1, 2, 0xB, 0)
    c.heard(C1, "f", 1, 3, 0xC, 0)
    c.heard(C1, "f", 1, 3, 0xD, 10)
    c.heard(C1, "f", 1, 2, 0xE, 20)    # a fifth: the longest way, heard longest ago, goes
    assert sorted(s[0] for s in c.sources(C1, 20)) == [0xA, 0xB, 0xD, 0xE]
    assert not c.heard(C1, "f", 1, 5, 0xF, 30)   # worse than all four: not kept
    assert sorted(s[0] for s in c.sources(C1, 30)) == [0xA, 0xB, 0xD, 0xE]
    assert len(c.table[C1][3]) == 4


def test_name_and_size_follow_the_latest_advert():
    c = Catalog()
    c.heard(C1, "map.bin", 16, 1, 0xA, 0)
    c.heard(C1, "", 17, 1, 0xB, 10)            # no name given: the old one stays
    assert c.table[C1][:3] == ["map.bin", 17, 10]
    c.heard(C1, "map2.bin", 17, 1, 0xA, 20)
    assert c.table[C1][0] == "map2.bin"


def test_sources_expire_and_then_the_file_does():
    c = Catalog(expiry_ms=1000)
    c.heard(C1, "f", 1, 1, 0xA, 0)
    c.heard(C1, "f", 1, 3, 0xB, 600)
    assert c.distance(C1, 1000) == 2           # heard 1000 ms ago: still (inclusive)
    assert c.distance(C1, 1001) == 4 and c.sources(C1, 1001) == [(0xB, 3)]
    assert c.distance(C1, 1601) is None and c.sources(C1, 1601) == []
    # a file whose sources all expired can be learned again, and is news
    assert c.heard(C1, "f", 1, 5, 0xC, 1700)
    c.expire(2700)
    assert C1 in c.table
    c.expire(2701)
    assert C1 not in c.table


def test_expire_drops_only_files_not_heard_within_the_expiry():
    c = Catalog(expiry_ms=1000)
    c.heard(C1, "a", 1, 0, 0xA, 0)
    c.heard(C2, "b", 1, 0, 0xA, 500)
    c.heard(C1, "a", 1, 0, 0xB, 800)           # C1 heard again
    c.expire(1500)                              # C2 heard 1000 ms ago: kept (inclusive)
    assert sorted(c.table) == [C1, C2]
    c.expire(1501)
    assert sorted(c.table) == [C1]
    c.expire(1800)
    assert sorted(c.table) == [C1]
    c.expire(1801)
    assert c.table == {}


def test_a_full_catalog_drops_the_file_heard_longest_ago():
    c = Catalog(capacity=2)
    c.heard(C1, "a", 1, 0, 0xA, 0)
    c.heard(C2, "b", 1, 0, 0xA, 10)
    c.heard(C1, "a", 1, 0, 0xA, 20)            # C2 is now the oldest
    assert c.heard(C3, "c", 1, 0, 0xA, 30)
    assert sorted(c.table) == [C1, C3] and len(c.table) == 2


def test_forget_source():
    c = Catalog()
    c.heard(C1, "f", 1, 1, 0xA, 0)
    c.heard(C1, "f", 1, 2, 0xB, 0)
    c.forget_source(C1, 0xA)
    assert c.sources(C1, 0) == [(0xB, 2)] and c.distance(C1, 0) == 3
    c.forget_source(C1, 0xA)                   # not a source any more: nothing happens
    c.forget_source(C2, 0xA)                   # not a file we know
    c.forget_source(C1, 0xB)
    assert c.distance(C1, 0) is None and C1 in c.table
