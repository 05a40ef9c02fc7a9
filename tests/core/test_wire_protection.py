# Wire format v1, what protects a frame: the network key's tag and cipher
# (checked against independent implementations), and no change to a frame,
# random or by a bit, passing as a frame.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen import wire
from pollen.wire import Frame, MSG, ACK
from pollen.crypto import NetworkKey, TAG_BYTES

from .fakemesh import XorShift
from .wire_vectors import KEY, REASONS, VECTORS, valid_frame
from .util import raises


def test_other_network_key_is_rejected():
    other = NetworkKey(bytes(32))
    for _, hexed in VECTORS:
        assert wire.unpack(bytes.fromhex(hexed), other) == (None, "tag")


def test_keystream_differs_by_frame_type():
    # The CTR nonce includes the type, so a MSG and its ACK never share keystream.
    a = wire.pack(Frame(MSG, 0, 1, 0, 7, 9, 5, 0, 7, bytes(8)), KEY)
    b = wire.pack(Frame(ACK, 0, 1, 0, 7, 9, 5, 0, 7, bytes(8)), KEY)
    assert a[16:24] != b[16:24]


def test_crypto_matches_independent_hmac_and_aes_ctr():
    # CPython only: check NetworkKey against the standard library's HMAC and
    # the cryptography package's CTR mode (MicroPython has neither).
    try:
        import hmac
        import hashlib
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        return
    k = bytes(range(32))
    mac = hashlib.sha256(b"pollen v1 mac" + k).digest()
    enc = hashlib.sha256(b"pollen v1 enc" + k).digest()[:16]
    data = valid_frame()
    assert data[-8:] == hmac.new(mac, data[:-8], hashlib.sha256).digest()[:8]
    nonce = data[2:6] + data[10:14] + data[0:1] + bytes(7)
    c = Cipher(algorithms.AES(enc), modes.CTR(nonce)).decryptor()
    assert c.update(data[16:-8]) == b"hello, mesh"
    long_text = bytes(range(200))  # several counter blocks
    nonce12 = bytes(range(12))
    c = Cipher(algorithms.AES(enc), modes.CTR(nonce12 + bytes(4))).encryptor()
    assert KEY.ctr(nonce12, long_text) == c.update(long_text)


def test_network_key_must_be_32_bytes():
    raises(ValueError, NetworkKey, bytes(16))


def test_truncated_frame_fails_its_tag():
    data = valid_frame()
    for n in range(wire.HEADER_BYTES + TAG_BYTES, len(data)):
        assert wire.unpack(data[:n], KEY) == (None, "tag"), n


def test_every_single_bit_flip_is_caught():
    data = valid_frame()
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            want = "version" if i == 0 and bit >= 4 else "tag"
            assert wire.unpack(bytes(bad), KEY) == (None, want), (i, bit)


def _check_outcome(data, result, original=None):
    assert isinstance(result, tuple) and len(result) == 2
    f, reason = result
    if f is None:
        assert reason in REASONS, reason
    else:
        # accepted: only possible for the untouched original (no forgery)
        assert reason is None and data == original


def test_fuzz_random_bytes_never_raise():
    rng = XorShift(11)
    for i in range(2000):
        n = rng.getrandbits(9) % 300
        data = bytes(rng.getrandbits(8) for _ in range(n))
        if i % 2:  # half of them with the right version, to reach the tag check
            data = bytes((wire.VERSION << 4 | (rng.getrandbits(4)),)) + data[1:]
        result = wire.unpack(data, KEY)
        _check_outcome(data, result)
        assert result[0] is None


def test_fuzz_mutated_frames_never_raise_nor_pass():
    rng = XorShift(12)
    originals = [bytes.fromhex(h) for _, h in VECTORS]
    for i in range(2000):
        orig = originals[i % len(originals)]
        data = bytearray(orig)
        for _ in range(1 + rng.getrandbits(2)):
            op = rng.getrandbits(3)
            pos = rng.getrandbits(8) % max(1, len(data))
            if op < 3 and data:
                data[pos] ^= 1 << rng.getrandbits(3)
            elif op < 5 and data:
                data[pos] = rng.getrandbits(8)
            elif op == 5:
                data = data[:pos]
            elif op == 6:
                data = data[:pos] + bytes((rng.getrandbits(8),)) + data[pos:]
            else:
                data = data + bytes(rng.getrandbits(8) for _ in range(rng.getrandbits(5)))
        data = bytes(data)
        _check_outcome(data, wire.unpack(data, KEY), orig)
