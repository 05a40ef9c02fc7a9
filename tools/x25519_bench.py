"""X25519 in the core (firmware/pollen/x25519.py): how long a ladder and its slices take.

    .venv/bin/python tools/x25519_bench.py [--rungs 3] [--runs 7] [--heap 128K] [--json]

Runs the same measuring script under CPython (the source) and under the
MicroPython unix port (the firmware compiled to .mpy, as on a board, with
--heap). For each it prints the whole function (x25519, best of --runs), the
ladder and the final inversion apart, and the longest slice when it is done
--rungs at a time (Ladder.step): the median over the runs of a run's longest
slice (with the collections a slice sets off), and the longest of each
slice's best over the runs (the work alone: no collection, and nothing else
the host does). Under MicroPython the
timings are taken twice: alone in the heap, and beside a node that has sent
for a while (the heap fuller, so allocation and collections cost more, as on
a board); and the heap: what the module takes once imported, what a Ladder
keeps between slices (gc.mem_alloc after gc.collect), what one rung and one
slice allocate at most (counted with the GC off: the rung's figure plus what
a ladder keeps bounds what it holds at any moment), and x25519.mpy's size.

The ESP32 figure is the unix port's times the factor UNIX_TO_ESP32, worked
out in docs/identity.md from published MicroPython benchmark figures and
measured on one host (an AMD EPYC server core): on a much faster or slower
host, the estimate moves with it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ESP32 (240 MHz) time / unix-port time on the calibrated host, for big-int
# Python code; docs/identity.md says where it comes from
UNIX_TO_ESP32 = 110

SCRIPT = r"""
import gc
gc.collect()
BEFORE = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
from pollen.x25519 import Ladder, x25519
gc.collect()
IMPORT_BYTES = gc.mem_alloc() - BEFORE if BEFORE else 0
try:
    from time import ticks_us, ticks_diff
except ImportError:
    import time
    def ticks_us():
        return int(time.perf_counter() * 1000000)
    def ticks_diff(a, b):
        return a - b
RUNGS = %(rungs)d
RUNS = %(runs)d
K = bytes(range(1, 33))
U = b"\x09" + bytes(31)
# each slice's best time over the runs, in a list made now: beside a node
# the heap has little to spare
SLICES = [0] * ((255 + 64 + RUNGS - 1) // RUNGS)


def timing(out):
    best = None
    for _ in range(RUNS):
        t = ticks_us()
        x25519(K, U)
        d = ticks_diff(ticks_us(), t)
        best = d if best is None or d < best else best
    out["whole_us"] = best
    # the ladder and the inversion apart: a step of 255 rungs does the one, then the other
    lb = ib = None
    for _ in range(RUNS):
        lad = Ladder(K, U)
        t = ticks_us()
        lad.step(255)
        t2 = ticks_us()
        lad.step(255)
        t3 = ticks_us()
        a, b = ticks_diff(t2, t), ticks_diff(t3, t2)
        lb = a if lb is None or a < lb else lb
        ib = b if ib is None or b < ib else ib
    out["ladder_us"] = lb
    out["inversion_us"] = ib
    # slices: each slice's best over the runs, the longest of those (the
    # work alone: no collection, and nothing else the host does)
    slices = SLICES
    for i in range(len(slices)):
        slices[i] = 1 << 30
    for _ in range(RUNS):
        lad = Ladder(K, U)
        i = 0
        done = False
        while not done:
            t = ticks_us()
            done = lad.step(RUNGS)
            d = ticks_diff(ticks_us(), t)
            if d < slices[i]:
                slices[i] = d
            i += 1
    out["slices"] = len(slices)
    out["slice_rungs"] = RUNGS
    out["longest_slice_us"] = max(slices)
    out["sliced_total_us"] = sum(slices)
    if hasattr(gc, "mem_free"):
        # what one collection of this heap costs (a slice may set one off)
        best = None
        for _ in range(RUNS):
            t = ticks_us()
            gc.collect()
            d = ticks_diff(ticks_us(), t)
            best = d if best is None or d < best else best
        out["collect_us"] = best
        out["heap_free_bytes"] = gc.mem_free()
    return out


def heap(out):
    # what a Ladder keeps (live after a collection) and what a slice allocates
    gc.collect()
    base = gc.mem_alloc()
    lad = Ladder(K, U)
    kept = alloc = 0
    done = False
    while not done:
        gc.collect()
        live = gc.mem_alloc() - base
        gc.disable()
        before = gc.mem_alloc()
        done = lad.step(RUNGS)
        used = gc.mem_alloc() - before
        gc.enable()
        kept = live if live > kept else kept
        alloc = used if used > alloc else alloc
    # one rung at a time: what a rung allocates, its temporaries among it,
    # so what a ladder keeps plus that bounds the heap it holds at any moment
    lad = Ladder(K, U)
    rung = 0
    done = False
    while not done:
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        done = lad.step(1)
        used = gc.mem_alloc() - before
        gc.enable()
        rung = used if used > rung else rung
    out["import_bytes"] = IMPORT_BYTES
    out["kept_bytes"] = kept
    out["slice_alloc_bytes"] = alloc
    out["rung_alloc_bytes"] = rung
    out["peak_bound_bytes"] = kept + rung
    return out


def beside_node():
    # a node that has sent posts and messages (to a node that never answers:
    # it holds them and tries again) until about 24 KB of the heap is free,
    # as on a board, so slices pay for allocating in, and collecting, a
    # fuller heap
    from pollen.node import Node
    from pollen.storage import MemoryStorage
    import random
    key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
    node = Node({"node_id": 0x101, "network_key": key, "preset": "ShortFast",
                 "beacon_interval_ms": 10000}, MemoryStorage(), random)
    now = 0
    node.start(now)
    i = 0
    while i < 40 and gc.mem_free() > 24000:
        now += 700
        node.send(0xFFFFFFFF if i %% 2 else 0x202, "message number %%d" %% i, now)
        for _ in range(20):
            now += 50
            node.poll(now)
        gc.collect()
        i += 1
    return node


import json
out = {"alone": timing({})}
if hasattr(gc, "mem_alloc"):
    heap(out["alone"])
    keep = beside_node()
    gc.collect()
    out["beside_node"] = timing({})
    keep = None  # room to print
    gc.collect()
print(json.dumps(out))
"""


def run_cpython(script: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "firmware"))
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def run_micropython(script: Path, heap: str, work: Path) -> dict:
    from pollen_controller.board.firmware import compile_firmware, mpy_cross_binary
    from pollen_controller.emulation.node_process import micropython_binary

    fw = work / "fw"
    compile_firmware(fw)
    # the script compiled too, as module x25519_bench_run: compiled in the
    # heap, its source and bytecode would crowd the node out of 128K
    r = subprocess.run([mpy_cross_binary(), "-O3", "-o", str(fw / "x25519_bench_run.mpy"),
                        "-s", "x25519_bench_run", str(script)], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit("x25519_bench: mpy-cross failed: " + r.stderr.strip())
    # by a short relative path, as on a board (a module's path stays in the heap)
    env = dict(os.environ, MICROPYPATH=".frozen:fw")
    r = subprocess.run([micropython_binary(), "-X", f"heapsize={heap}", "-m", "x25519_bench_run"],
                       env=env, cwd=work, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit("x25519_bench: MicroPython failed:\n" + (r.stderr or r.stdout))
    out = json.loads(r.stdout)
    out["heap"] = heap
    out["mpy_bytes"] = (fw / "pollen" / "x25519.mpy").stat().st_size
    # a slice's stall on an ESP32: its work, and the collections it sets off
    # beside a node, whose app collects once a quarter of the free heap is
    # allocated (gc.threshold, docs/boards.md)
    node = out["beside_node"]
    threshold = node["heap_free_bytes"] // 4
    collections = -(-out["alone"]["slice_alloc_bytes"] // threshold)
    out["esp32_estimate"] = {
        "factor": UNIX_TO_ESP32,
        "whole_ms": round(out["alone"]["whole_us"] * UNIX_TO_ESP32 / 1000),
        "whole_beside_node_ms": round(node["whole_us"] * UNIX_TO_ESP32 / 1000),
        "collections_per_slice": collections,
        "slice_stall_ms": round((node["longest_slice_us"] + collections * node["collect_us"])
                                * UNIX_TO_ESP32 / 1000, 1)}
    return out


def _line(name, r):
    return (f"{name}: whole {r['whole_us'] / 1000:.2f} ms (ladder {r['ladder_us'] / 1000:.2f}, "
            f"inversion {r['inversion_us'] / 1000:.2f}); {r['slices']} slices of {r['slice_rungs']} rungs, "
            f"longest {r['longest_slice_us'] / 1000:.3f} ms, all {r['sliced_total_us'] / 1000:.2f} ms" +
            (f"; a collection {r['collect_us'] / 1000:.3f} ms" if "collect_us" in r else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rungs", type=int, default=3, help="rungs of work per slice (Ladder.step)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--heap", default="128K", help="the MicroPython heap")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not 1 <= a.rungs <= 319:
        ap.error("--rungs: expected 1..319")
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "x25519_bench_run.py"
        script.write_text(SCRIPT % {"rungs": a.rungs, "runs": max(1, a.runs)})
        res = {"cpython": run_cpython(script), "micropython": run_micropython(script, a.heap, Path(d))}
    if a.json:
        print(json.dumps(res))
        return
    m = res["micropython"]
    e = m["esp32_estimate"]
    print(_line("cpython", res["cpython"]["alone"]))
    print(_line(f"micropython ({m['heap']} heap)", m["alone"]))
    print(_line(f"micropython beside a node ({m['beside_node']['heap_free_bytes']} B free)",
                m["beside_node"]))
    print(f"micropython heap: the module takes {m['alone']['import_bytes']} B, "
          f"a ladder keeps {m['alone']['kept_bytes']} B between slices and holds at most "
          f"{m['alone']['peak_bound_bytes']} B (a rung allocates up to {m['alone']['rung_alloc_bytes']} B), "
          f"a slice allocates up to {m['alone']['slice_alloc_bytes']} B (garbage); "
          f"x25519.mpy {m['mpy_bytes']} B")
    print(f"ESP32 estimate (unix port x {e['factor']}): whole {e['whole_ms']} ms "
          f"({e['whole_beside_node_ms']} beside a node); a slice's stall beside a node "
          f"{e['slice_stall_ms']} ms (its work and {e['collections_per_slice']} collection(s))")


if __name__ == "__main__":
    main()
