"""Measure the live heap of the pollen core inside real MicroPython.

    .venv/bin/python tools/heap_report.py [--heap 128K] [--messages 200]

Compiles firmware/ to .mpy, then runs a MicroPython script that builds a Node,
feeds it frames from a second in-process node (posts and acknowledged
messages), and reports gc.mem_alloc() after gc.collect() at its peak.
"""
import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from pollen_controller.emulation import micropython_binary
from pollen_controller.firmware import compile_firmware

SCRIPT = r"""
import gc
from pollen.node import Node
from pollen.storage import MemoryStorage
from pollen.wire import BROADCAST
import random
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
def mk(i):
    return Node({"node_id": i, "network_key": KEY, "preset": "ShortFast",
                 "beacon_interval_ms": 10000}, MemoryStorage(), random)
gc.collect()
base = gc.mem_alloc()
a, b = mk(0x101), mk(0x202)
a.start(0); b.start(0)
peak = 0
now = 0
for i in range(%(messages)d):
    now += 700
    if i %% 3 == 0:
        a.send(BROADCAST, "post %%d from a" %% i, now)
    else:
        a.send(0x202, "message number %%d to b" %% i, now)
    for step in range(40):
        now += 50
        for x, y in ((a, b), (b, a)):
            for act in x.poll(now):
                if act[0] == "tx":
                    y.on_frame(act[1], -90, 5, now)
    gc.collect()
    used = gc.mem_alloc()
    if used > peak:
        peak = used
print("baseline_bytes", base, "peak_bytes", peak, "free_bytes", gc.mem_free(),
      "delivered", a.counters["delivered"])
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heap", default="128K")
    ap.add_argument("--messages", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        fw = Path(d) / "fw"
        compile_firmware(fw)
        script = Path(d) / "heap.py"
        script.write_text(SCRIPT % {"messages": args.messages})
        env = dict(os.environ, MICROPYPATH=f".frozen:{fw}")
        r = subprocess.run([micropython_binary(), "-X", f"heapsize={args.heap}", str(script)],
                           env=env, capture_output=True, text=True)
        print(r.stdout.strip() or r.stderr.strip())


if __name__ == "__main__":
    main()
