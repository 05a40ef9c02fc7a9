# What differs between MicroPython and CPython, besides AES (see _aes.py).
try:
    from micropython import const
except ImportError:
    def const(x):
        return x
