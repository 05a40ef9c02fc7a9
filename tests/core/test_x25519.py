# X25519 in the core (pollen/x25519.py): RFC 7748's test vectors (§5.2, the
# iterated ones, §6.1), the ladder in slices giving what it gives whole, and
# the node id a public key gives.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
import hashlib

from pollen.ids import parse_node_id
from pollen.x25519 import Ladder, STEP_RUNGS, public_key, x25519
from pollen.identity import node_id_from_public

from .util import random_bytes

h = bytes.fromhex
BASE = b"\x09" + bytes(31)
P = 2 ** 255 - 19

# RFC 7748 §6.1
ALICE = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

# RFC 7748 §5.2: (scalar, u-coordinate, result)
VECTORS = (
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
)


def _raises(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    return False


def _sliced(k, u, rungs):
    lad = Ladder(k, u)
    steps = 1
    while not lad.step(rungs):
        steps += 1
    return lad.result(), steps


def _iterate(n):
    # §5.2: k = u = 9; each round k, u = X25519(k, u), k
    k = u = BASE
    for _ in range(n):
        k, u = x25519(k, u), k
    return k


def test_rfc7748_vectors():
    for k, u, out in VECTORS:
        assert x25519(h(k), h(u)).hex() == out


def test_top_bit_of_u_is_masked():
    # the second vector's u ends in 0x93: the same u with the top bit clear
    # gives the same result
    k, u, out = VECTORS[1]
    u = bytearray(h(u))
    assert u[31] & 0x80
    u[31] &= 0x7F
    assert x25519(h(k), bytes(u)).hex() == out


def test_u_of_p_or_more_is_reduced():
    # decodeUCoordinate takes non-canonical values (p .. 2**255-1) mod p
    k = h(VECTORS[0][0])
    for u in (0, 1, 9, 18):
        assert x25519(k, (P + u).to_bytes(32, "little")) == x25519(k, u.to_bytes(32, "little"))


def test_scalar_is_clamped():
    # the bits decodeScalar25519 sets or clears make no difference
    k, u, out = VECTORS[0]
    k = bytearray(h(k))
    k[0] ^= 7
    k[31] ^= 0xC0
    assert x25519(bytes(k), h(u)).hex() == out


def test_rfc7748_iterated_once():
    assert _iterate(1).hex() == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"


def test_rfc7748_iterated_1000_times():
    # about 2 s under CPython and 8 s under the unix port (the 1,000,000
    # rounds of §5.2 would take hours in either: not run)
    assert _iterate(1000).hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


def test_rfc7748_diffie_hellman():
    assert public_key(ALICE) == ALICE_PUBLIC
    assert public_key(BOB) == BOB_PUBLIC
    assert x25519(ALICE, BOB_PUBLIC) == SHARED
    assert x25519(BOB, ALICE_PUBLIC) == SHARED


def test_sliced_gives_what_whole_gives():
    # any slice size, for the RFC's keys and random ones; 255 rungs of
    # ladder and 64 of inversion, so ceil(319 / rungs) steps
    cases = [(ALICE, BOB_PUBLIC, SHARED)]
    for seed in (1, 2):
        k, u = random_bytes(32, seed), random_bytes(32, seed + 10)
        cases.append((k, u, x25519(k, u)))
    for k, u, out in cases:
        for rungs in (1, 3, STEP_RUNGS, 7, 64, 255, 256, 319, 1000):
            got, steps = _sliced(k, u, rungs)
            assert got == out, rungs
            assert steps == (319 + rungs - 1) // rungs, (rungs, steps)


def test_result_before_the_end_is_refused():
    lad = Ladder(ALICE, BASE)
    assert _raises(lad.result)
    lad.step(255)  # the ladder done, not the inversion
    assert _raises(lad.result)
    assert lad.step(64)
    assert lad.result() == ALICE_PUBLIC
    assert lad.step(1) and lad.result() == ALICE_PUBLIC  # done stays done


def test_low_order_points_give_zero():
    # u = 0 (order 2) and u = 1 (order 4): a clamped scalar is a multiple of
    # 8, so the result is all zeros; whoever derives a shared secret must
    # refuse that (RFC 7748 §6.1)
    for u in (0, 1):
        assert x25519(ALICE, u.to_bytes(32, "little")) == bytes(32)


def test_wrong_lengths_are_refused():
    assert _raises(x25519, ALICE[:31], BASE)
    assert _raises(x25519, ALICE, BASE + b"\x00")
    assert _raises(public_key, ALICE + b"\x00")
    assert _raises(node_id_from_public, ALICE_PUBLIC[:31])


def test_matches_an_independent_x25519():
    # CPython only: the cryptography package's X25519 (OpenSSL), random keys
    # and u-coordinates with the top bit set or not
    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    except ImportError:
        return
    for seed in range(1, 9):
        k, u = random_bytes(32, seed), bytearray(random_bytes(32, seed + 100))
        if seed % 2:
            u[31] |= 0x80
        want = X25519PrivateKey.from_private_bytes(k).exchange(X25519PublicKey.from_public_bytes(bytes(u)))
        assert x25519(k, bytes(u)) == want
        assert public_key(k) == X25519PrivateKey.from_private_bytes(k).public_key().public_bytes_raw()


def _valid(v):
    try:
        parse_node_id(v)
        return True
    except ValueError:
        return False


def test_node_id_golden_values():
    # the rule is part of the protocol: these must never change
    assert node_id_from_public(ALICE_PUBLIC) == 0x300C9C96
    assert node_id_from_public(BOB_PUBLIC) == 0xF35E5616


def test_node_id_is_the_first_valid_word_of_the_hash():
    for seed in range(1, 41):
        pub = random_bytes(32, seed)
        d = hashlib.sha256(pub).digest()
        words = [int.from_bytes(d[i:i + 4], "big") for i in range(0, 32, 4)]
        want = [w for w in words if _valid(w)][0]
        got = node_id_from_public(pub)
        assert got == want and _valid(got)
        assert node_id_from_public(pub) == got  # deterministic


def test_node_id_skips_a_word_ending_in_00():
    # a key whose hash's first word ends in byte 00 (1 in 256): the id is
    # the next word
    n = 0
    while True:
        pub = n.to_bytes(32, "little")
        d = hashlib.sha256(pub).digest()
        if d[3] == 0:
            break
        n += 1
    second = int.from_bytes(d[4:8], "big")
    assert _valid(second)  # (true of the key this finds)
    assert node_id_from_public(pub) == second
