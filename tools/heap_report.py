"""Measure the live heap of the pollen core inside real MicroPython.

    .venv/bin/python tools/heap_report.py [--heap 128K] [--messages 200] [--romfs]

Compiles firmware/ to .mpy, then runs a MicroPython script that builds a Node,
feeds it frames from a second in-process node (posts and acknowledged
messages), and reports gc.mem_alloc() after gc.collect(): after importing the
core (import_bytes) and at its peak (peak_bytes).

--romfs: the core is imported from a ROMFS image, as on a board with a ROMFS
partition. The image is read into the heap first (the unix port has no
flash), the heap is made larger by what it takes, and the figures leave it out.
"""
import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pollen_controller.board.firmware import ROMFS_PACKAGES, compile_firmware, romfs_image
from pollen_controller.emulation.node_process import heap_with_romfs, micropython_binary, romfs_mount_code

SCRIPT = r"""
import gc
gc.collect()
before_import = gc.mem_alloc()
from pollen.node import Node
from pollen.storage import MemoryStorage
BROADCAST = 0xFFFFFFFF
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
rom = globals().get("rom_heap_bytes", 0)
print("import_bytes", base - before_import, "baseline_bytes", base - rom, "peak_bytes", peak - rom,
      "free_bytes", gc.mem_free(), "delivered", a.counters["delivered"])
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heap", default="128K")
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--romfs", action="store_true", help="import the core from a ROMFS image")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        fw = Path(d) / "fw"
        compile_firmware(fw)
        script = Path(d) / "heap.py"
        text = SCRIPT % {"messages": args.messages}
        heap = args.heap
        if args.romfs:
            image = Path(d) / "pollen.romfs"
            image.write_bytes(romfs_image(fw))
            for name in ROMFS_PACKAGES:
                shutil.rmtree(fw / name)
            text = romfs_mount_code(image) + text
            heap = heap_with_romfs(args.heap, image.stat().st_size)  # as the emulation does
        script.write_text(text)
        # the firmware by a short relative path, as on a board (a module's
        # path stays in the heap as its __file__)
        env = dict(os.environ, MICROPYPATH=".frozen:fw")
        r = subprocess.run([micropython_binary(), "-X", f"heapsize={heap}", str(script)],
                           env=env, cwd=d, capture_output=True, text=True)
        print(r.stdout.strip() or r.stderr.strip())


if __name__ == "__main__":
    main()
