# AES-128-ECB on CPython (the simulator, the controller, the tests), from the
# `cryptography` package; crypto.py picks it where MicroPython's cryptolib is
# missing. encrypt(in16, out16) writes into out16, as cryptolib's does.
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def aes_ecb(key):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def encrypt(block, out):
        out[:] = enc.update(block)
    return encrypt
