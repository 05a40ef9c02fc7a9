# The one place that knows which AES the interpreter has: MicroPython's
# cryptolib, or the `cryptography` package on CPython (_aes_host.py, which a
# node never loads). Exposes a single function: aes_ecb(key16) ->
# encrypt(block16) -> bytes.
try:
    from cryptolib import aes

    def aes_ecb(key):
        return aes(key, 1).encrypt  # mode 1 = ECB
except ImportError:
    from pollen._aes_host import aes_ecb  # noqa: F401
