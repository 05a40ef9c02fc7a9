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

from pollen import VERSION
from pollen.settings import Settings, ConfigError, parse_node_id
from pollen.node import Node
from pollen.wire import BROADCAST

CONFIG = "config.json"
# config.json keys that are the adapters' business rather than the core's
_IO_FIELDS = ("radio", "storage_dir", "status_interval_ms", "network", "board")


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")


def runtime():
    v = sys.implementation.version
    return "%s %d.%d.%d" % (sys.implementation.name, v[0], v[1], v[2])


def load_config(path):
    try:
        with open(path) as f:
            raw = f.read()
    except OSError:
        raise ConfigError("%s: cannot be read" % path)
    try:
        d = json.loads(raw)
    except ValueError:
        raise ConfigError("%s: not valid JSON" % path)
    if not isinstance(d, dict):
        raise ConfigError("%s: expected a JSON object" % path)
    io = {}
    for k in _IO_FIELDS:
        if k in d:
            io[k] = d.pop(k)
    radio = io.get("radio", {"kind": "udp"})
    if not isinstance(radio, dict) or radio.get("kind") not in ("udp", "lora"):
        raise ConfigError("config field 'radio': expected {\"kind\": \"lora\"} or {\"kind\": \"udp\", \"port\": ...}, got %r" % (radio,))
    if radio["kind"] == "lora":
        return Settings(d), radio, _folder(io), _interval(io)
    port = radio.get("port", 47000)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError("config field 'radio.port': expected a UDP port 1..65535, got %r" % (port,))
    host = radio.get("host", "127.0.0.1")
    # the virtual medium runs on this machine; the radio only talks on loopback
    if host not in ("127.0.0.1", "localhost"):
        raise ConfigError("config field 'radio.host': expected 127.0.0.1 or localhost (the virtual medium), got %r" % (host,))
    return Settings(d), radio, _folder(io), _interval(io)


def _folder(io):
    folder = io.get("storage_dir", "store")
    if not isinstance(folder, str) or not folder:
        raise ConfigError("config field 'storage_dir': expected a folder name, got %r" % (folder,))
    return folder


def _interval(io):
    interval = io.get("status_interval_ms", 0)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 0:
        raise ConfigError("config field 'status_interval_ms': expected an integer >= 0, got %r" % (interval,))
    return interval


def make_radio(settings, radio):
    if radio["kind"] == "lora":
        return _lora_radio(settings, radio)
    from pollen_io.udp_radio import UdpRadio
    try:
        return UdpRadio(settings.node_id, radio.get("host", "127.0.0.1"), radio.get("port", 47000))
    except OSError as e:
        raise ConfigError("config field 'radio.host': expected a host name this machine resolves, got %r (%s)"
                          % (radio.get("host"), e))


def _lora_radio(settings, radio):
    # the board profile that pollen flash installed next to config.json
    try:
        with open("board.json") as f:
            board = json.loads(f.read())
    except (OSError, ValueError):
        raise ConfigError("config field 'radio': kind 'lora' needs board.json (run pollen flash --board B)")
    from pollen_io.lora_radio import LoraRadio
    return LoraRadio(settings, radio, board)


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
        self.node = Node(settings, storage, random)
        self.radio = radio
        radio.on_busy = self.channel_busy
        self.wake = asyncio.Event()
        self.status_interval_ms = status_interval_ms
        self.peak_heap = 0
        self.next_heap_check_ms = 0

    def run_actions(self):
        now = self.clock.now()
        for a in self.node.poll(now):
            if a[0] == "tx":
                self.radio.transmit(a[1])
            else:
                info = a[1]
                emit(a[0], **info)
        if now >= self.next_heap_check_ms:
            # live heap: collect first, or garbage not yet swept counts as used
            self.next_heap_check_ms = now + 1000
            gc.collect()
            used = gc.mem_alloc()
            if used > self.peak_heap:
                self.peak_heap = used

    def channel_busy(self, airtime_ms):
        now = self.clock.now()
        self.node.channel_busy(now + airtime_ms, now)
        self.wake.set()

    async def radio_loop(self):
        while True:
            frame, rssi, snr = await self.radio.receive()
            self.node.on_frame(frame, rssi, snr, self.clock.now())
            self.wake.set()

    async def console_loop(self):
        reader = asyncio.StreamReader(sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                self.wake.set()  # host closed the console: stop the node now
                return
            line = line.strip()
            if line:
                self.command(line)
                self.wake.set()

    def command(self, line):
        try:
            c = json.loads(line)
        except ValueError:
            emit("error", error="command is not valid JSON")
            return
        if not isinstance(c, dict) or not isinstance(c.get("cmd"), str):
            emit("error", error="command needs a \"cmd\" field")
            return
        ref = c.get("ref")
        cmd = c["cmd"]
        try:
            if cmd == "send":
                self.cmd_send(c, ref)
            elif cmd == "status":
                self.emit_status(ref)
            else:
                emit("error", error="unknown cmd %r (known: send, status)" % cmd, ref=ref)
        except (ValueError, TypeError) as e:
            emit("error", error="%s: %s" % (cmd, e), ref=ref)

    def cmd_send(self, c, ref):
        to = c.get("to", "all")
        text = c.get("text")
        if not isinstance(text, str):
            raise ValueError("field 'text': expected a string")
        if to == "all":
            dest = BROADCAST
        else:
            try:
                dest = parse_node_id(to, "to")
            except ConfigError as e:
                raise ValueError(str(e).replace("config field", "field"))
        msg_id = self.node.send(dest, text, self.clock.now())
        emit("sent", id=msg_id, to="all" if dest == BROADCAST else "%08x" % dest, ref=ref)

    def emit_status(self, ref=None):
        s = self.node.status(self.clock.now())
        s["heap_bytes"] = gc.mem_alloc()
        s["heap_free_bytes"] = gc.mem_free()
        s["peak_heap_bytes"] = self.peak_heap
        s["runtime"] = runtime()
        s["version"] = VERSION
        if ref is not None:
            s["ref"] = ref
        emit("status", **s)

    async def status_loop(self):
        while True:
            await asyncio.sleep_ms(self.status_interval_ms)
            self.emit_status()

    async def main(self):
        self.node.start(self.clock.now())
        emit("started", id="%08x" % self.node.id, name=self.node.s.name, runtime=runtime())
        asyncio.create_task(self.radio_loop())
        console = asyncio.create_task(self.console_loop())
        if self.status_interval_ms:
            asyncio.create_task(self.status_loop())
        while not console.done():
            self.run_actions()
            delay = self.node.next_wake_ms - self.clock.now()
            if delay > 0:
                try:
                    await asyncio.wait_for_ms(self.wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
            self.wake.clear()


def fail(e):
    sys.stderr.write("pollen: %s\n" % e)
    emit("error", error=str(e), fatal=True)
    sys.exit(2)


def main(path=CONFIG):
    try:
        settings, radio_cfg, folder, interval = load_config(path)
        radio = make_radio(settings, radio_cfg)
    except ConfigError as e:
        fail(e)
    from pollen_io.filestore import FileStorage
    try:
        storage = FileStorage(folder)
    except OSError as e:
        fail(ConfigError("config field 'storage_dir': expected a folder the node can write, got %r (%s)"
                         % (folder, e)))
    app = App(settings, radio, storage, interval)
    try:
        asyncio.run(app.main())
    except KeyboardInterrupt:
        pass
