# What differs between MicroPython and CPython, besides AES (see crypto.py).
try:
    from micropython import const
except ImportError:
    def const(x):
        return x


def unload(name):
    # drop a module whose code runs rarely (pollen.restart; the app's
    # start-up modules): its bytecode
    # leaves the heap once nothing refers to it. Imported again when needed
    import sys
    sys.modules.pop(name, None)
    pkg, _, attr = name.rpartition(".")
    mod = sys.modules.get(pkg)
    if mod is not None:
        try:  # (not "attr in dir(mod)": that builds a list, and the heap may be full)
            delattr(mod, attr)
        except (AttributeError, KeyError):  # (MicroPython: KeyError)
            pass
