# Frame protection with the community network key: AES-128-CTR for payloads
# (built on the ECB primitive from _aes) and a truncated HMAC-SHA256 tag.
# Two sub-keys are derived from the 32-byte network key so the cipher and
# the tag never share a key.
import hashlib
from pollen._aes import aes_ecb

TAG_BYTES = 8


def _sha256(data):
    return hashlib.sha256(data).digest()


class NetworkKey:
    def __init__(self, key):
        if len(key) != 32:
            raise ValueError("network key must be 32 bytes")
        self._enc = aes_ecb(_sha256(b"pollen v1 enc" + key)[:16])
        self._mac = _sha256(b"pollen v1 mac" + key)
        # Precomputed HMAC pads: the tag is computed for every frame sent/heard.
        k = self._mac + bytes(32)
        self._ipad = bytes(b ^ 0x36 for b in k)
        self._opad = bytes(b ^ 0x5C for b in k)

    def tag(self, data):
        inner = hashlib.sha256(self._ipad)
        inner.update(data)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]

    def ctr(self, nonce12, data):
        # Encrypt or decrypt (CTR is its own inverse). nonce12 must never repeat
        # for one key; the wire format builds it from origin + message id + type.
        out = bytearray(data)
        n = len(out)
        block = bytearray(16)
        block[:12] = nonce12
        i = 0
        counter = 0
        while i < n:
            block[12] = (counter >> 24) & 0xFF
            block[13] = (counter >> 16) & 0xFF
            block[14] = (counter >> 8) & 0xFF
            block[15] = counter & 0xFF
            ks = self._enc(bytes(block))
            j = 0
            while j < 16 and i < n:
                out[i] ^= ks[j]
                i += 1
                j += 1
            counter += 1
        return bytes(out)
