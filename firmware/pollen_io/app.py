# The node application: config.json -> adapters -> protocol core under
# asyncio. Talks to its host over the console (stdin/stdout; the USB serial
# port on a board) in newline-delimited JSON; see docs/console.md.
# firmware/main.py (what a board runs at boot) only calls main() here, so the
# board compiles nothing big at boot: this module ships as .mpy.
import sys
import gc
import json
import asyncio
import time
import os
import random
import binascii

from pollen._compat import unload
from pollen.ids import ConfigError

CONFIG = "config.json"


def emit(event, **fields):
    # streamed to the console: no event is ever built whole as one string
    # (a status or a long list would need a big block of a small heap)
    fields["event"] = event
    json.dump(fields, sys.stdout)
    sys.stdout.write("\n")


def runtime():
    v = sys.implementation.version
    return "%s %d.%d.%d" % (sys.implementation.name, v[0], v[1], v[2])


class Clock:
    # Milliseconds since start that never wrap (ticks_ms wraps after ~12 days).
    def __init__(self):
        self.last = time.ticks_ms()
        self.ms = 0

    def now(self):
        t = time.ticks_ms()
        self.ms += time.ticks_diff(t, self.last)
        self.last = t
        return self.ms


class App:
    def __init__(self, settings, radio, storage, status_interval_ms):
        random.seed(int.from_bytes(os.urandom(4), "big"))
        self.clock = Clock()
        from pollen.node import Node  # loaded after the start-up code has left the heap
        self.node = Node(settings, storage, random)
        self.radio = radio
        radio.on_busy = self.channel_busy
        self.wake = asyncio.Event()
        self.status_interval_ms = status_interval_ms
        self.peak_heap = 0
        self.small_heap = gc.mem_free() + gc.mem_alloc() < 262144  # see main()
        self.next_heap_check_ms = 0
        self.next_battery_ms = 0

    def run_actions(self):
        now = self.clock.now()
        try:
            actions = self.node.poll(now)
        except MemoryError:
            # a full heap must not end the node: what it holds is in storage
            # and in its tables; counted, and tried again at the next wake
            self.node._drop("memory")
            gc.collect()
            return
        for a in actions:
            if a[0] == "tx":
                self.radio.transmit(a[1])
            else:
                info = a[1]
                if a[0] == "telemetry":  # the host decodes it (pollen/status_wire.py)
                    info["data"] = binascii.hexlify(info["data"]).decode()
                emit(a[0], **info)
        if now >= self.next_heap_check_ms:
            # live heap: collect first, or garbage not yet swept counts as used
            self.next_heap_check_ms = now + 1000
            gc.collect()
            used = gc.mem_alloc()
            if used > self.peak_heap:
                self.peak_heap = used
            self.node.heap_free_bytes = gc.mem_free()  # for its status frames
            read_mv = getattr(self.radio, "battery_mv", None)
            if read_mv is not None and now >= self.next_battery_ms:
                self.next_battery_ms = now + 60000
                try:
                    self.node.battery_mv = read_mv()
                except Exception as e:  # a bad reading must not stop the node
                    sys.print_exception(e, sys.stderr)

    def channel_busy(self, airtime_ms):
        now = self.clock.now()
        self.node.channel_busy(now + airtime_ms, now)
        self.wake.set()

    async def radio_loop(self):
        while True:
            try:
                # receiving allocates too (the frame, the socket read): a full
                # heap there loses that frame, never the radio task
                frame, rssi, snr = await self.radio.receive()
                self.node.on_frame(frame, rssi, snr, self.clock.now())
                frame = None
                if self.small_heap:
                    gc.collect()  # see main()
            except Exception as e:
                frame = None
                self.failed(e, "radio")
                e = None
                # and let the other tasks run before trying again: the frame
                # may still wait in the radio, and retrying at once spun
                # the CPU for good (seen at 128K: a silent node at 100 %)
                await asyncio.sleep_ms(20)
            self.wake.set()

    def failed(self, e, task):
        # A task's step failed: counted, and the task goes on (the node would
        # stop hearing, or stop). The rest (waits.py, loaded only now): said
        # on the console, and a wait that failed half-way undone
        try:
            if isinstance(e, MemoryError):
                self.node._drop("memory")
            gc.collect()
            from pollen_io import waits
            waits.failed(self.node, e, task)
        except Exception:
            gc.collect()  # no heap even for this: tried again at the next failure

    async def console_loop(self):
        # the console's reader (asyncio loads its stream code on first use):
        # a full heap then must not end this task, for the node stops when
        # it ends (a power-cut run saw nodes at 128K exit here at start)
        reader = None
        while reader is None:
            try:
                reader = asyncio.StreamReader(sys.stdin)
            except MemoryError:
                gc.collect()
                await asyncio.sleep_ms(50)
        while True:
            try:
                line = await reader.readline()
            except Exception as e:  # that line is lost (the host times out), not the node
                self.failed(e, "console")
                e = None
                await asyncio.sleep_ms(20)  # (as radio_loop: no spinning on a full heap)
                continue
            if not line:
                self.wake.set()  # host closed the console: stop the node now
                return
            line = line.strip()
            if line:
                try:
                    self.command(line)
                except Exception as e:  # even its error event did not fit: the node goes on
                    line = None
                    self.failed(e, "console")
                    e = None
                self.wake.set()

    def command(self, line):
        # a console line (docs/console.md); the commands' code is loaded
        # once the node has started (main) and kept: loaded for every line, a
        # status went unanswered on a nearly full heap
        from pollen_io import console_commands
        try:
            console_commands.run(self, line)
        finally:
            # what it loaded for the line: file commands, the status code
            _unload("pollen_io.file_console", "pollen.file_requests", "pollen.node_report",
                    "pollen_io.config_console")

    async def status_loop(self):
        while True:
            await asyncio.sleep_ms(self.status_interval_ms)
            try:
                from pollen_io import console_commands  # kept (command())
                try:
                    console_commands.emit_status(self)
                finally:
                    _unload("pollen.node_report")
            except Exception as e:  # a status line lost, not the task
                self.failed(e, "status")
                e = None

    async def main(self):
        self.node.start(self.clock.now())
        # the console's commands (1.9 KB), loaded once the start is over: the
        # start's heap is a node's peak (a node with a full store did not
        # start at 128K for them), and loaded later, at a first command on a
        # fragmented heap, they often did not load (a mute console)
        try:
            from pollen_io import console_commands  # noqa: F401 (kept)
        except MemoryError:
            gc.collect()  # loaded at the first command then
        emit("started", id="%08x" % self.node.id, name=self.node.s.name, runtime=runtime())
        asyncio.create_task(self.radio_loop())
        console = asyncio.create_task(self.console_loop())
        if self.status_interval_ms:
            asyncio.create_task(self.status_loop())
        while not console.done():
            try:
                self.run_actions()
            except Exception as e:  # an event line lost (a full heap), not the node
                self.failed(e, "main")
                e = None
            delay = self.node.next_wake_ms - self.clock.now()
            if delay > 0:
                try:
                    await asyncio.wait_for_ms(self.wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                except Exception as e:  # waiting allocates too: a wait lost, not the node
                    self.failed(e, "main")
                    e = None
                    await asyncio.sleep_ms(20)
            self.wake.clear()


def fail(e):
    sys.stderr.write("pollen: %s\n" % e)
    emit("error", error=str(e), fatal=True)
    sys.exit(2)


def main(path=CONFIG):
    from pollen_io import boot  # config checking and set-up: freed once the node runs
    try:
        settings, radio_cfg, folder, interval = boot.load_config(path)
        radio = boot.make_radio(settings, radio_cfg)
        storage = boot.open_storage(folder)
    except ConfigError as e:
        fail(e)
    boot = None
    _unload("pollen_io.boot", "pollen.settings")
    app = App(settings, radio, storage, interval)
    # A small heap (128K in emulation, about 110 KB on an ESP32 without
    # PSRAM) fragments: garbage left lying about makes long-lived objects
    # land all over it, and later a few hundred bytes in one piece are not
    # to be had with 10 KB free. Collecting often (after a quarter of what
    # is free has been allocated, and after each frame handled) keeps what
    # lives packed low. On a PSRAM board a collection is slow and the heap
    # is large: left to MicroPython.
    if app.small_heap and hasattr(gc, "threshold"):
        gc.threshold(gc.mem_free() // 4)
    try:
        asyncio.run(app.main())
    except KeyboardInterrupt:
        pass


def _unload(*names):
    # Drop modules only needed at start, so their code leaves the heap
    # (bytecode loaded from .mpy lives in RAM; pollen._compat.unload)
    for name in names:
        unload(name)
    gc.collect()
