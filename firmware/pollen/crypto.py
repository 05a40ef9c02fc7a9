# Frame protection with the community network key: AES-128-CTR for payloads
# (built on the AES-ECB primitive below) and a truncated HMAC-SHA256 tag.
# Two sub-keys are derived from the 32-byte network key so the cipher and
# the tag never share a key.
#
# The one place that knows which AES the interpreter has: MicroPython's
# cryptolib, or the `cryptography` package on CPython (_aes_host.py, which a
# node never loads). Either way aes_ecb(key16) gives encrypt(in16, out16),
# which writes the enciphered block into the caller's buffer: a frame's
# keystream is made in two buffers the key keeps, not in new objects per
# 16-byte block (every frame heard and sent passes through here).
import hashlib
from pollen._compat import const, publish
try:
    from cryptolib import aes

    def aes_ecb(key):
        return aes(key, 1).encrypt  # mode 1 = ECB; encrypt(in_buf, out_buf)
except ImportError:
    from pollen._aes_host import aes_ecb

_TAG_BYTES = const(8)


def _sha(data):
    return hashlib.sha256(data).digest()


class NetworkKey:
    def __init__(self, key):
        if len(key) != 32:
            raise ValueError("network key must be 32 bytes")
        self._enc = aes_ecb(_sha(b"pollen v1 enc" + key)[:16])
        # Precomputed HMAC pads of the tag's key: the tag is computed for
        # every frame sent/heard (the key itself is not kept)
        k = _sha(b"pollen v1 mac" + key) + bytes(32)
        self._ipad = bytes(b ^ 0x36 for b in k)
        self._opad = bytes(b ^ 0x5C for b in k)
        # (names MicroPython has built in: a new one costs heap, docs/boards.md)
        self.buf = bytearray(16)  # the counter block
        self.stream = bytearray(16)  # its keystream

    def tag(self, data, head=None):
        # (head: bytes hashed before data, so a caller need not join them)
        inner = hashlib.sha256(self._ipad)
        if head:
            inner.update(head)
        inner.update(data)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()[:_TAG_BYTES]

    def ctr(self, nonce12, data):
        # Encrypt or decrypt (CTR is its own inverse). nonce12 must never repeat
        # for one key; the wire format builds it from origin + message id + type.
        # (The core is single-threaded: one frame at a time uses the buffers.)
        out = bytearray(data)
        n = len(out)
        block = self.buf
        ks = self.stream
        block[:12] = nonce12
        i = 0
        counter = 0
        while i < n:
            block[12] = (counter >> 24) & 0xFF
            block[13] = (counter >> 16) & 0xFF
            block[14] = (counter >> 8) & 0xFF
            block[15] = counter & 0xFF
            self._enc(block, ks)
            j = 0
            while j < 16 and i < n:
                out[i] ^= ks[j]
                i += 1
                j += 1
            counter += 1
        return bytes(out)


publish(globals())  # hosts: wire.MSG and the like (_compat.py)
