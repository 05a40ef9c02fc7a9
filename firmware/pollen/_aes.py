# The one place that knows which AES the interpreter has: MicroPython's
# cryptolib, or the `cryptography` package on CPython. Exposes a single
# function: aes_ecb(key16) -> encrypt(block16) -> bytes.
try:
    from cryptolib import aes as _mp_aes

    def aes_ecb(key):
        c = _mp_aes(key, 1)  # mode 1 = ECB
        return c.encrypt
except ImportError:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def aes_ecb(key):
        enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        return enc.update
