# Recent posts and their repair (pollen/posts.py): the summary a beacon
# carries, and which posts a neighbour's summary shows it missed.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen.posts import RecentPosts, tag16

A = 0x0A0B0C01   # origins
B = 0x0D0E0F02


def _key(origin, msg_id):
    return origin << 32 | msg_id


def _tags(summary):
    return [summary[i] << 8 | summary[i + 1] for i in range(0, len(summary), 2)]


def _posts(n, origin=A, t=0):
    p = RecentPosts(window_ms=1000)
    for i in range(n):
        p.add(_key(origin, 0x100 + i), ("frame %d" % i).encode(), t)
    return p


def test_tag16_mixes_origin_and_id():
    assert tag16(_key(A, 0x99AABBCC)) == 0x0C01 ^ 0xBBCC
    assert tag16(_key(A, 5)) != tag16(_key(B, 5)) and tag16(_key(A, 5)) != tag16(_key(A, 6))
    assert tag16(_key(0xFFFFFFFF, 0xFFFFFFFF)) == 0


def test_summary_lists_each_recent_post_once_oldest_first():
    p = RecentPosts(window_ms=1000)
    assert p.summary(0) == b""
    p.add(_key(A, 1), b"one", 0)
    p.add(_key(B, 2), b"two", 10)
    p.add(_key(A, 1), b"one again", 20)        # known: not added twice, not refreshed
    s = p.summary(20)
    assert len(s) == 4 and _tags(s) == [tag16(_key(A, 1)), tag16(_key(B, 2))]
    assert p.items[0][1] == b"one" and p.items[0][2] == 0


def test_recent_posts_keep_the_newest_eight():
    p = _posts(10)
    assert len(p.items) == 8
    assert [it[0] & 0xFFFF for it in p.items] == list(range(0x102, 0x10A))
    assert len(p.summary(0)) == 16


def test_posts_leave_the_summary_after_the_window():
    p = RecentPosts(window_ms=1000)
    p.add(_key(A, 1), b"one", 0)
    p.add(_key(A, 2), b"two", 500)
    assert _tags(p.summary(1000)) == [tag16(_key(A, 1)), tag16(_key(A, 2))]   # inclusive
    assert _tags(p.summary(1001)) == [tag16(_key(A, 2))]
    assert len(p.items) == 1                   # and from the node's memory
    assert p.summary(1501) == b"" and p.items == []
    p.add(_key(A, 1), b"one", 1600)            # gone, so it counts as new
    assert _tags(p.summary(1600)) == [tag16(_key(A, 1))]


def test_missing_from_finds_posts_the_neighbour_lacks_newest_first():
    p = _posts(3)
    theirs = RecentPosts(window_ms=1000)
    theirs.add(_key(A, 0x101), b"", 0)
    got = p.missing_from(theirs.summary(0), B, 0)
    assert [it[0] for it in got] == [_key(A, 0x102), _key(A, 0x100)]
    assert got[0][1] == b"frame 2"
    assert [it[0] for it in p.missing_from(b"", B, 0)] == [_key(A, 0x102), _key(A, 0x101), _key(A, 0x100)]
    assert p.missing_from(p.summary(0), B, 0) == []


def test_missing_from_skips_the_neighbour_s_own_posts():
    p = RecentPosts(window_ms=1000)
    p.add(_key(A, 1), b"a", 0)
    p.add(_key(B, 2), b"b", 0)
    assert [it[0] for it in p.missing_from(b"", B, 0)] == [_key(A, 1)]
    assert [it[0] for it in p.missing_from(b"", A, 0)] == [_key(B, 2)]


def test_a_full_summary_says_nothing_missing():
    # eight tags: an absent post may just have been pushed out of theirs
    p = _posts(1, origin=B)
    other = _posts(8)
    assert p.missing_from(other.summary(0), 0x77, 0) == []
    seven = other.summary(0)[:14]
    assert len(p.missing_from(seven, 0x77, 0)) == 1
    assert len(p.missing_from(seven + b"\x12", 0x77, 0)) == 1   # a stray last byte is no tag


def test_a_post_is_repaired_at_most_three_times():
    p = _posts(2)
    p.items[0][3] = 2                          # the node counts each repair sent
    assert len(p.missing_from(b"", B, 0)) == 2
    p.items[0][3] = 3
    assert [it[0] for it in p.missing_from(b"", B, 0)] == [_key(A, 0x101)]


def test_expired_posts_are_not_repaired():
    p = RecentPosts(window_ms=1000)
    p.add(_key(A, 1), b"old", 0)
    p.add(_key(A, 2), b"new", 900)
    assert [it[0] for it in p.missing_from(b"", B, 1000)] == [_key(A, 2), _key(A, 1)]
    assert [it[0] for it in p.missing_from(b"", B, 1001)] == [_key(A, 2)]
