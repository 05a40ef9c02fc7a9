# AES-128-ECB on CPython (the simulator, the controller, the tests), from the
# `cryptography` package; _aes.py picks it where MicroPython's cryptolib is
# missing.
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def aes_ecb(key):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update
