"""An emulated mesh at demo pace, for whatever shows pollen without hardware:
`pollen demo`, `pollen gateway --demo` and `pollen monitor --demo`. Its nodes
beacon every 5 s, so neighbours are found in seconds, and a Chatter has some
of them post now and then, so there is traffic to see."""
from __future__ import annotations

import secrets
import threading
import time

from pollen_controller.emulation.mesh import Emulation
from pollen_controller.errors import EmulationError

# Demo timings: short beacons so neighbours are found in seconds, not minutes.
DEMO_NODE_SETTINGS = {"beacon_interval_ms": 5000, "lifetime_ms": 300000,
                      "neighbour_expiry_ms": 30000}


class MeshDidNotStart(EmulationError):
    def __init__(self, missing: list[int]):
        self.missing = missing
        super().__init__("emulated nodes did not start: " + ", ".join(f"{i:08x}" for i in missing))


def start_demo_mesh(topology, workdir, settings: dict | None = None, on_transmit=None,
                    network_key_hex: str | None = None, **emulation_args) -> Emulation:
    """An Emulation of topology with a fresh network key (or the one given) and the node settings
    given (default: DEMO_NODE_SETTINGS), started, every node up; the caller
    closes it. on_transmit(sender, frame, t_start) sees every frame on the
    medium. MeshDidNotStart, with nothing left running, when a node did not
    start."""
    emu = Emulation(topology, workdir, network_key_hex or secrets.token_hex(32),
                    node_settings=DEMO_NODE_SETTINGS if settings is None else settings,
                    **emulation_args)
    if on_transmit is not None:
        emu.medium.on_transmit = on_transmit
    emu.start()
    try:
        missing = emu.wait_started()
        if missing:
            raise MeshDidNotStart(missing)
    except BaseException:
        emu.close()
        raise
    return emu


class Chatter:
    """Nodes of an emulated mesh posting now and then: post k (from 1) goes
    out once (k - 1) * every_s have passed, from talkers[k % len(talkers)],
    as message(k, src) -> (to, text). A talker switched off says nothing."""

    def __init__(self, emu: Emulation, talkers: list[int], every_s: float, message):
        self.emu = emu
        self.talkers = list(talkers)
        self.every_s = every_s
        self.message = message
        self.started = time.monotonic()
        self.posts = 0

    def step(self):
        """Send the post that is due, if one is (call it at least every every_s)."""
        if time.monotonic() - self.started < self.posts * self.every_s:
            return
        self.posts += 1
        src = self.talkers[self.posts % len(self.talkers)]
        to, text = self.message(self.posts, src)
        try:
            self.emu.nodes[src].command({"cmd": "send", "to": to, "text": text})
        except (RuntimeError, OSError):
            pass

    def start(self, stop: threading.Event) -> threading.Thread:
        """step() in a thread of its own until stop is set."""
        def run():
            while not stop.wait(min(self.every_s, 1.0)):
                self.step()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t
