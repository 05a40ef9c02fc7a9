# What differs between MicroPython and CPython, besides AES (see crypto.py).
try:
    from micropython import const

    def publish(names):
        pass
except ImportError:
    def const(x):
        return x

    def publish(names):
        # Hosts (CPython: the controller, the simulator, tests) also get a
        # module's private constants by their public names: wire._MSG as
        # wire.MSG. A node keeps neither: MicroPython builds a `_` const()
        # into the code that uses it, where a public name would cost an
        # interned string and a slot in the module's dict. So a firmware
        # module that needs another's number has its own private copy
        # (tests/test_firmware_constants.py holds each copy to its module).
        # A module's copies are published too (jobs.BROADCAST): host code
        # should take a number from the module that owns it (wire.BROADCAST)
        for k in [k for k in names if k[:1] == "_" and k[1:2].isupper()]:
            names.setdefault(k[1:], names[k])


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
