# Small helpers shared by the core tests (CPython and MicroPython alike).
from pollen.files import FileError

from .fakemesh import XorShift


def random_bytes(n, seed=1):
    r = XorShift(seed)
    return bytes(r.getrandbits(8) for _ in range(n))


def file_error(fn, *args):
    # the FileError message fn(*args) raises; fails the test if it raises none
    try:
        fn(*args)
    except FileError as e:
        return str(e)
    raise AssertionError("no FileError")


def file_storage(name):
    # storage in files, as on a board (pollen_io/filestore.py), in a fresh
    # folder under /tmp; CPython and MicroPython alike. A folder per
    # interpreter (and per pytest worker): the suite runs the same test
    # under both at once, and each emptied the other's folder mid-test
    import os
    import sys
    from pollen_io.filestore import FileStorage
    who = sys.implementation.name
    if hasattr(os, "environ"):
        who += os.environ.get("PYTEST_XDIST_WORKER", "")
    path = "/tmp/pollen-test-%s-%s" % (who, name)  # emptied first: runs do not pile up
    try:
        for f in os.listdir(path):
            os.remove(path + "/" + f)
    except OSError:
        pass
    return FileStorage(path)


def raises(exc, fn, *args):
    # the exception of class exc that fn(*args) raises; fails the test if it
    # raises none
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)
