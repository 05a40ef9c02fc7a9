# Runs the core's test modules under MicroPython (the unix port), without
# pytest: every plain `def test_*():` in each module is called and its
# failure printed. Without module names it runs every tests/core/test_*.py
# (found in this file's folder: a new module runs here without being
# listed). Run from the repository root:
#   MICROPYPATH=.frozen:firmware:. micropython -X heapsize=2M tests/core/mp_run.py [module ...] [-k text]
# Prints "<module>: N passed, M failed" per module, and ends with
# "N passed, M failed"; exits 1 if anything failed.
import gc
import os
import sys


def core_modules():
    # tests.core.test_* for each test_*.py beside this file, sorted
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    return ["tests.core." + f[:-3] for f in sorted(os.listdir(here))
            if f.startswith("test_") and f.endswith(".py")]


def publish_constants():
    # What pollen._compat.publish gives tests on CPython (wire.MSG for
    # wire's private _MSG): MicroPython builds a `_` const() into the code
    # and keeps no name for it, so the values are read from the firmware's
    # source, for each module that publishes its constants. A constant this
    # cannot read is an error, not a name silently missing
    import re
    pattern = re.compile(r"^_([A-Z][A-Z0-9_]*) = const[(](.+)[)]$")
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    folder = here + "/../../firmware/pollen"
    try:
        files = os.listdir(folder)
    except OSError:
        return  # not run from a checkout (tests of mp_run itself)
    for f in files:
        if not f.endswith(".py"):
            continue
        with open(folder + "/" + f) as src:
            text = src.read()
        if "publish(globals())" not in text:
            continue
        try:
            mod = __import__("pollen." + f[:-3], None, None, ("x",))
        except ImportError:
            continue  # the firmware is not on the path (tests of mp_run itself)
        names = {}
        for line in text.split("\n"):
            if not line.startswith("_") or " = const(" not in line:
                continue
            m = pattern.match(line.split("#")[0].rstrip())
            if not m:
                raise SystemExit("mp_run: cannot read %s: %s" % (f, line))
            names["_" + m.group(1)] = eval(m.group(2), names)  # literals and earlier constants
            if not hasattr(mod, m.group(1)):
                setattr(mod, m.group(1), names["_" + m.group(1)])


def _print_exc(e):
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:  # CPython, when run there by hand
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__)


def main(argv):
    modules = []
    pattern = None
    i = 0
    while i < len(argv):
        if argv[i] == "-k" and i + 1 < len(argv):
            pattern = argv[i + 1]
            i += 2
            continue
        modules.append(argv[i])
        i += 1
    passed = 0
    failed = 0
    publish_constants()
    for name in modules or core_modules():
        before = passed, failed
        try:
            mod = __import__(name, None, None, ("x",))
        except Exception as e:
            print("FAIL import %s: %r" % (name, e))
            _print_exc(e)
            failed += 1
            continue
        for t in sorted(n for n in dir(mod) if n.startswith("test_")):
            fn = getattr(mod, t)
            if not callable(fn) or (pattern and pattern not in t):
                continue
            gc.collect()
            try:
                fn()
                passed += 1
            except Exception as e:
                failed += 1
                print("FAIL %s.%s: %r" % (name, t, e))
                _print_exc(e)
        print("%s: %d passed, %d failed" % (name, passed - before[0], failed - before[1]))
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
