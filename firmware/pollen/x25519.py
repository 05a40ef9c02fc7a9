# X25519 (RFC 7748 §5), for the per-node keys (identity.py, which also has
# the node id a public key gives). Pure Python on big ints: MicroPython
# (boards, unix port) and CPython alike.
#
# A whole ladder is far too long for one turn of a board's event loop (half
# a second to two on an ESP32, docs/identity.md), so Ladder does it a few
# rungs at a time: step(n) does n rungs of work and returns True when done;
# the node calls it once per turn. The work is the Montgomery ladder's 255
# rungs (a bit of the scalar each), then the final inversion, z ** (p-2) by
# built-in pow on 4 bits of the exponent at a time (64 rungs), so it is
# sliced too.
#
# Not constant-time: big-int arithmetic takes time (and allocates) by the
# values, so even the RFC's masked swap would leak the bit (its mask & (x2 ^
# x3) is a new big int only when the bit is 1); the swap is a plain one. A
# secret key never leaves its node: an attacker would have to time its
# slices from the air, through its event loop and radio. Accepted for now
# (docs/identity.md).
from pollen._compat import const

_P = const(57896044618658097711785492504343953926634992332820282019728792003956564819949)  # 2**255 - 19
_A24 = const(121665)  # (486662 - 2) / 4
_BITS = const(255)
_INV_BITS = const(4)  # bits of the inversion's exponent per rung of work
STEP_RUNGS = const(3)  # rungs per step: about 25 ms on an ESP32, 50 on an RP2040 (docs/identity.md)


def _clamp(k):
    # decodeScalar25519: clear the low 3 bits and the top bit, set bit 254
    if len(k) != 32:
        raise ValueError("x25519 scalar must be 32 bytes")
    k = bytearray(k)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return k


class Ladder:
    def __init__(self, k, u):
        if len(u) != 32:
            raise ValueError("x25519 u-coordinate must be 32 bytes")
        self._k = _clamp(k)  # bytes, little-endian: bit t is k[t >> 3] >> (t & 7)
        # decodeUCoordinate: the top bit is masked; values >= p are reduced
        self._x1 = (int.from_bytes(u, "little") & ((1 << 255) - 1)) % _P
        self._x2 = 1
        self._z2 = 0
        self._x3 = self._x1
        self._z3 = 1
        self._swap = 0
        self._t = _BITS  # ladder bits left: bit t-1 is next
        self._e = _BITS  # bits of the exponent p-2 left
        self._inv = 1  # z2 ** (the exponent's bits done so far)

    def step(self, n=STEP_RUNGS):
        # n (1 or more) rungs of work: a rung of the ladder, or _INV_BITS
        # bits of the inversion (about as long). True once the result is ready
        t = self._t
        if t:
            done = t if n > t else n
            self._ladder(done)
            n -= done
            if n <= 0:
                return False
        e = self._e
        n *= _INV_BITS
        if n > e:
            n = e
        e -= n
        # the next n bits of p-2, from the top: inv = inv**(2**n) * z2**bits
        bits = ((_P - 2) >> e) & ((1 << n) - 1)
        self._inv = pow(self._inv, 1 << n, _P) * pow(self._z2, bits, _P) % _P
        self._e = e
        return e == 0

    def _ladder(self, n):
        # n rungs of the Montgomery ladder (RFC 7748 §5), in locals for speed
        k = self._k
        x1 = self._x1
        x2 = self._x2
        z2 = self._z2
        x3 = self._x3
        z3 = self._z3
        swap = self._swap
        t = self._t
        stop = t - n
        while t > stop:
            t -= 1
            kt = (k[t >> 3] >> (t & 7)) & 1
            swap ^= kt
            if swap:  # (see the top: a masked swap is no better in Python)
                x2, x3 = x3, x2
                z2, z3 = z3, z2
            swap = kt
            a = x2 + z2
            aa = a * a % _P
            b = x2 - z2
            bb = b * b % _P
            e = aa - bb
            c = x3 + z3
            d = x3 - z3
            da = d * a % _P
            cb = c * b % _P
            x3 = da + cb
            x3 = x3 * x3 % _P
            z3 = da - cb
            z3 = x1 * (z3 * z3 % _P) % _P
            x2 = aa * bb % _P
            z2 = e * (aa + _A24 * e) % _P
        if t == 0 and swap:  # the RFC's last swap (swap is bit 0 of k then: 0 once clamped)
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        self._x2 = x2
        self._z2 = z2
        self._x3 = x3
        self._z3 = z3
        self._swap = swap
        self._t = t

    def result(self):
        # the 32-byte u-coordinate of k * u, once step() returned True
        if self._t or self._e:
            raise ValueError("x25519 ladder not finished")
        return (self._x2 * self._inv % _P).to_bytes(32, "little")


def x25519(k, u):
    # the whole function at once (hosts, tests): a board calls Ladder.step
    lad = Ladder(k, u)
    while not lad.step(_BITS):
        pass
    return lad.result()


def public_key(secret):
    # the public key of a 32-byte secret: X25519(secret, 9)
    return x25519(secret, b"\x09" + bytes(31))

