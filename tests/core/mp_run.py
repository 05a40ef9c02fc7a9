# Runs the core's test modules under MicroPython (the unix port), without
# pytest: every plain `def test_*():` in each module is called and its
# failure printed. Run from the repository root:
#   MICROPYPATH=.frozen:firmware:. micropython -X heapsize=1M tests/core/mp_run.py [module ...] [-k text]
# Ends with "N passed, M failed"; exits 1 if anything failed.
import gc
import sys

MODULES = ("tests.core.test_wire", "tests.core.test_node", "tests.core.test_files",
           "tests.core.test_held_files", "tests.core.test_file_wire", "tests.core.test_sharing",
           "tests.core.test_sharing_review", "tests.core.test_telemetry",
           "tests.core.test_congestion", "tests.core.test_restart")


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
    for name in modules or MODULES:
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
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
