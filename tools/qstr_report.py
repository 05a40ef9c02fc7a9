"""Count the names (qstrs) a running node has interned, inside real MicroPython.

    .venv/bin/python tools/qstr_report.py [--heap 128K] [--idle] [--names] [--romfs]

Runs firmware/main.py as an emulated node does (its own folder, config.json,
a UDP radio that reaches nobody), gives it the console commands a node in
`pollen demo` gets (send, status, config, and a file shared by the host:
share, put, catalog, manifest, get, then a fetch), closes its console, and
prints micropython.qstr_info() once the app has stopped: n_qstr, n_pool and
the bytes they take. --idle: no commands (a node that only started).
--names: every interned name, one a line (what to look at when the count
grows).

Why it matters: names are interned into pools on the heap and never freed;
each new pool is twice the last. On the unix port the pools hold 20, 40, 80,
160 and 320 names (620 in all); the 621st name costs a pool of 640 at once,
about 7 KB of a 128K heap (docs/boards.md, "Interned names").
"""
import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pollen_controller.board.firmware import ROMFS_PACKAGES, compile_firmware, romfs_image
from pollen_controller.emulation.node_process import heap_with_romfs, micropython_binary, romfs_mount_code

KEY = "00112233445566778899aabbccddeeff" * 2
POOLS = (20, 40, 80, 160, 320)  # the unix port's first five pools (the sixth: 640)


def commands():
    # what a demo node's host asks of it, a file shared the way `pollen share` does
    from pollen.file_author import chunk_of, make_manifest
    from pollen.files import chunk_count, cid_str, content_id
    data = bytes(range(256)) * 4
    raw = make_manifest("notes.txt", "text/plain", data, 0x0A0B0C01, 0, 200)
    cid = cid_str(content_id(raw))
    out = [{"cmd": "send", "to": "all", "text": "hello"},
           {"cmd": "send", "to": "0a0b0c02", "text": "hi"},
           {"cmd": "status", "ref": 1},
           {"cmd": "config"},
           {"cmd": "share", "manifest": base64.b64encode(raw).decode()}]
    for i in range(chunk_count(len(data), 200)):
        out.append({"cmd": "put", "cid": cid, "index": i,
                    "data": base64.b64encode(chunk_of(data, i, 200)).decode()})
    out += [{"cmd": "catalog"}, {"cmd": "catalog", "search": "notes"},
            {"cmd": "manifest", "cid": cid}, {"cmd": "get", "cid": cid, "index": 0},
            {"cmd": "fetch", "cid": "a" * 26}, {"cmd": "status"}]
    return out


def run(heap="128K", idle=False, romfs=False):
    """After the node's life: (n_qstr, n_pool, the names, the modules it holds)."""
    with tempfile.TemporaryDirectory() as d:
        fw = Path(d) / "fw"
        compile_firmware(fw)
        node = Path(d) / "node"
        node.mkdir()
        (node / "config.json").write_text(json.dumps({
            "node_id": "0a0b0c01", "name": "q", "network_key": KEY, "preset": "ShortFast",
            "radio": {"kind": "udp", "host": "127.0.0.1", "port": 9},
            "storage_dir": "store", "status_interval_ms": 500}))
        # (the module names one by one: a joined line needs a block the
        # node's full heap may not have)
        code = ("import main\nimport micropython, sys\nmicropython.qstr_info(1)\n"
                "for m in sys.modules:\n    print('module', m)\n")
        if romfs:
            image = Path(d) / "pollen.romfs"
            image.write_bytes(romfs_image(fw))
            for name in ROMFS_PACKAGES:
                shutil.rmtree(fw / name)
            code = romfs_mount_code(image) + code
            heap = heap_with_romfs(heap, image.stat().st_size)
        env = dict(os.environ, MICROPYPATH=".frozen:../fw")
        p = subprocess.Popen([micropython_binary(), "-X", f"heapsize={heap}", "-c", code],
                             cwd=node, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        for c in ([] if idle else commands()):
            p.stdin.write(json.dumps(c) + "\n")
            p.stdin.flush()
            time.sleep(0.05)
        time.sleep(1.5)  # status lines, the fetch's timer
        out, err = p.communicate(timeout=30)
    m = re.search(r"n_pool=(\d+), n_qstr=(\d+)", out)
    if not m:
        raise SystemExit("no qstr_info from the node:\n" + out[-2000:] + err[-2000:])
    if '"error"' in out:
        errors = [line for line in out.splitlines() if '"error"' in line]
        raise SystemExit("a command failed:\n" + "\n".join(errors))
    names = re.findall(r"^Q\((.*)\)$", out, re.M)
    modules = sorted(re.findall(r"^module (.*)$", out, re.M))
    if not modules:
        raise SystemExit("no module list from the node:\n" + out[-1500:] + err[-1500:])
    return int(m.group(2)), int(m.group(1)), names, modules


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heap", default="128K")
    ap.add_argument("--idle", action="store_true", help="no console commands")
    ap.add_argument("--romfs", action="store_true", help="import the firmware from a ROMFS image")
    ap.add_argument("--names", action="store_true", help="list every interned name")
    args = ap.parse_args()
    n, pools, names, modules = run(args.heap, args.idle, args.romfs)
    if args.names:
        print("\n".join(names))
    room = sum(POOLS) - n
    print("n_qstr", n, "n_pool", pools, "room_before_next_pool" if room >= 0 else "over_by",
          abs(room))


if __name__ == "__main__":
    main()
