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

import queue
import shutil
import time
from pathlib import Path

from pollen_controller.board.firmware import ROMFS_PACKAGES, compile_firmware, romfs_image
from pollen_controller.emulation.medium import Medium
from pollen_controller.emulation.node_process import NodeProcess
from pollen_controller.errors import EmulationError
from pollen_controller.files_atomic import write_atomic


class Emulation:
    """A running emulated mesh: medium + node processes, closed as a unit."""

    def __init__(self, topology, workdir: Path, network_key_hex: str, preset="ShortFast",
                 loss: float = 0.0, seed: int | None = None, heap: str = "128K",
                 node_settings: dict | None = None, names: dict | None = None, on_event=None,
                 region: str = "EU868-10", romfs: bool = False, identities: dict | None = None):
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
        self.identities = identities or {}  # node id -> its identity_key (hex): private messages
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
            if node_id in self.identities:
                cfg["identity_key"] = self.identities[node_id]
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
                    raise EmulationError(f"node {i:08x} exited: " + " | ".join(n.stderr_lines[-5:]))
            time.sleep(0.02)
        for i, evs in seen.items():  # give back what we read past
            for ev in evs:
                self.nodes[i].events.put(ev)
        return sorted(pending)
