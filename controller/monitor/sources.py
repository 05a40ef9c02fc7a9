"""Where `pollen monitor` gets its events: an attached node on a serial port,
an MQTT broker that gateways publish to (docs/gateway.md), or the emulated
mesh of `pollen demo`; a Meshtastic device beside any of them
(meshtastic_source.py), merged by Sources. Every source has the same small
interface:

    item = source.get(timeout_s)   # (event, t) or None; t in Unix seconds
    source.notes()                 # lines for the screen (state, problems)
    source.done(view)              # --once: enough has been heard
    source.close()

and pump() feeds a source's events to a MeshView and the history.
"""
from __future__ import annotations

import json
import queue
import secrets
import threading
import time

from pollen_controller.errors import RemoteError
from pollen_controller.monitor.mesh_view import unix_time
from pollen_controller.node.events import decode_event
from pollen_controller.node.link import LinkError
from pollen_controller.untrusted import safe_text

STATUS_EVERY_S = 5.0       # how often the attached node is asked for its status
_REOPEN_EVERY_S = 2.0      # a serial port that went away is tried again this often
QUEUE_LIMIT = 10000        # events waiting for the monitor (MQTT, Meshtastic); beyond: dropped, counted
MAX_PAYLOAD_BYTES = 65536  # a gateway's publication (a status with its neighbours: a few KiB)
_ELSEWHERE_MAX = 8           # other networks named when ours is silent
_ELSEWHERE_TOPICS = ("pollen/+/+/status", "pollen/+/+/telemetry")
_QUIET_NOTE_S = 2.0        # connected this long with nothing on the network's topics: say so
_MERGE_SLEEP_S = 0.05      # Sources: the longest an event waits when several sources are merged


def pump(source, view, history, seconds: float, stop=None, on_event=None) -> int:
    """Apply the source's events to view (and record them in history, each in
    its own transaction) for `seconds`, or until stop() is true. Returns how
    many events came."""
    end = time.monotonic() + seconds
    n = 0
    while True:
        left = end - time.monotonic()
        if left <= 0 or (stop is not None and stop()):
            return n
        item = source.get(min(left, 0.25))
        if item is None:
            continue
        ev, t = item
        n += 1
        u = view.apply(ev, t)
        if history is not None:
            history.record(ev, t, u, view.states(u.touched))
        source.seen(view)
        if on_event is not None:
            on_event(ev, t)


class Source:
    description = "?"

    def get(self, timeout_s: float):
        raise NotImplementedError

    def notes(self) -> list[str]:
        return []

    def done(self, view) -> bool:
        return False

    def failed(self) -> str | None:
        """After --once: why nothing could be heard at all, or None."""
        return None

    def seen(self, view):
        pass

    def row_extras(self) -> dict:
        return {}

    def close(self):
        pass


class Sources(Source):
    """Several sources as one: a pollen source (--port, --mqtt or --demo)
    beside a Meshtastic device (--meshtastic). Each is asked in turn without
    waiting; with nothing from any, the monitor sleeps _MERGE_SLEEP_S."""

    def __init__(self, sources: list):
        self.sources = list(sources)
        self.description = " + ".join(s.description for s in self.sources)
        self._turn = 0
        self._partial: list[str] = []   # after --once: the sources that heard nothing

    def get(self, timeout_s):
        end = time.monotonic() + timeout_s
        while True:
            for _ in self.sources:
                src = self.sources[self._turn]
                self._turn = (self._turn + 1) % len(self.sources)
                item = src.get(0)
                if item is not None:
                    return item
            left = end - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(left, _MERGE_SLEEP_S))

    def notes(self):
        return [n for s in self.sources for n in s.notes()] + self._partial

    def done(self, view) -> bool:
        return all(s.done(view) for s in self.sources)

    def failed(self):
        """Why nothing could be heard, when no source heard anything; one
        that did not, beside one that did, is said in notes() instead."""
        problems = [p for p in (s.failed() for s in self.sources) if p]
        if len(problems) == len(self.sources):
            return "; ".join(problems)
        self._partial = problems
        return None

    def seen(self, view):
        for s in self.sources:
            s.seen(view)

    def row_extras(self) -> dict:
        out = {}
        for s in self.sources:
            out.update(s.row_extras())
        return out

    def close(self):
        for s in reversed(self.sources):
            s.close()


class _LinkSource(Source):
    """An attached node's console: events as they come, and its status asked
    for every STATUS_EVERY_S."""

    def __init__(self, status_every_s: float = STATUS_EVERY_S):
        self.status_every_s = status_every_s
        self.link = None
        self.next_status = 0.0
        self.status_at = None        # monotonic time the first status came
        self.problem = None

    def _poll(self):
        if time.monotonic() >= self.next_status:
            self.next_status = time.monotonic() + self.status_every_s
            self.link.command({"cmd": "status", "ref": "monitor"})

    def _next(self, timeout_s):
        self._poll()
        try:
            ev = self.link.events.get(timeout=timeout_s)
        except queue.Empty:
            self.link._check_alive()
            return None
        if ev.get("event") == "status" and self.status_at is None:
            self.status_at = time.monotonic()
        return ev, time.time()  # telemetry comes decoded: links decode as they read

    def done(self, view) -> bool:
        return self.status_at is not None and time.monotonic() - self.status_at >= 2.0

    def failed(self):
        if self.status_at is None:
            return self.problem or f"{self.description}: the node did not answer a status request"
        return None

    def notes(self):
        return [self.problem] if self.problem else []


class SerialSource(_LinkSource):
    def __init__(self, port: str, status_every_s: float = STATUS_EVERY_S):
        from pollen_controller.node.link import SerialLink

        super().__init__(status_every_s)
        self.port = port
        self.description = f"serial {port}"
        self._open = lambda: SerialLink(port)
        self.link = self._open()     # a port that cannot be opened at start is an error
        self.reopen_at = None

    def get(self, timeout_s):
        if self.link is None:
            if time.monotonic() < self.reopen_at:
                time.sleep(min(timeout_s, self.reopen_at - time.monotonic()))
                return None
            try:
                self.link = self._open()
                self.problem = None
                self.next_status = 0.0
            except LinkError as e:
                self.problem = f"{e}; trying again every {_REOPEN_EVERY_S:.0f} s"
                self.reopen_at = time.monotonic() + _REOPEN_EVERY_S
                return None
        try:
            return self._next(timeout_s)
        except LinkError as e:
            # unplugged, or the board reset: keep the view, try again
            self.problem = f"{e}; trying again every {_REOPEN_EVERY_S:.0f} s"
            self.link.close()
            self.link = None
            self.reopen_at = time.monotonic() + _REOPEN_EVERY_S
            return None

    def close(self):
        if self.link is not None:
            self.link.close()
            self.link = None


# ---- MQTT ------------------------------------------------------------------------------

def mqtt_event(topic: str, payload: bytes, network: str, now: float):
    """A message from pollen/NETWORK/... -> (event, t), or None for topics
    that are not node status, telemetry or messages. RemoteError for a payload
    that is not a JSON object, or whose `t` is there but not a time (NaN and
    Infinity pass json.loads; mesh_view.unix_time). t is the gateway's `t`
    unless that is missing or lies more than a minute in the future (then: now)."""
    prefix = f"pollen/{network}/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    if len(parts) != 2 or parts[1] not in ("status", "telemetry", "message"):
        return None
    node, kind = parts
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RemoteError(f"{topic}: payload over {MAX_PAYLOAD_BYTES} bytes")
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise RemoteError(f"{topic}: payload is not JSON") from None
    if not isinstance(body, dict):
        raise RemoteError(f"{topic}: payload is not a JSON object")
    t = body.get("t")
    if t is not None and unix_time(t) is None:
        raise RemoteError(f"{topic}: t is not a time: {str(t)[:40]}")
    if t is None or t > now + 60:
        t = now
    if kind == "message":
        ev = dict(body, event="received")
        ev.setdefault("from", node)
    else:
        ev = decode_event(dict(body, event=kind))
        ev.setdefault("id", node)
    return ev, float(t)


class MqttSource(Source):
    """Subscribes to pollen/NETWORK/# at QoS 1. With a client_id the session
    is persistent: the broker keeps what was published while the monitor was
    away, and it arrives (and is recorded) when it is back."""

    def __init__(self, url: str, network: str = "mesh", username=None, password=None,
                 client_id: str | None = None):
        from pollen_controller.gateway.mqtt import mqtt_client, parse_mqtt_url

        self.host, self.port, tls = parse_mqtt_url(url)
        self.network = network
        self.description = f"MQTT {self.host}:{self.port} pollen/{network}/#"
        self.q: queue.Queue = queue.Queue(QUEUE_LIMIT)
        self.connected = threading.Event()
        self.problem = "connecting to the broker..."
        self.malformed = 0
        self.dropped = 0
        self.last_error = None
        self.arrived = 0             # messages on pollen/NETWORK/... (any kind)
        self.elsewhere: list[str] = []   # other networks gateways publish on here (a few)
        self.looking = False         # subscribed to every network's status, ours being silent
        self.connected_at = None     # monotonic time of the first connection
        self.started = time.monotonic()
        self.client = mqtt_client(client_id or f"pollen-monitor-{secrets.token_hex(4)}",
                                  client_id is None, username, password, tls)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        try:
            self.client.connect_async(self.host, self.port, keepalive=30)
        except OSError as e:
            raise LinkError(f"--mqtt {self.host}:{self.port}: {e}") from None
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.problem = f"the broker refused the connection: {reason_code}"
            return
        client.subscribe(f"pollen/{self.network}/#", qos=1)
        if not self.arrived:
            # until ours is heard, the networks gateways here publish on
            # (their status, telemetry), to name them if ours stays silent
            self.looking = True
            client.subscribe([(t, 0) for t in _ELSEWHERE_TOPICS])
        self.problem = None
        if self.connected_at is None:
            self.connected_at = time.monotonic()
        self.connected.set()

    def _on_connect_fail(self, client, userdata):
        self.problem = f"cannot reach the broker at {self.host}:{self.port}; retrying"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        self.problem = f"broker connection lost ({reason_code}); reconnecting"

    def _on_message(self, client, userdata, msg):
        network = msg.topic.split("/")[1] if msg.topic.count("/") >= 2 else None
        if network != self.network:
            if (network and network not in self.elsewhere
                    and len(self.elsewhere) < _ELSEWHERE_MAX):
                self.elsewhere.append(network)
            return
        if self.looking:
            # ours is heard after all: no more looking elsewhere; a copy that
            # came through the looking subscriptions (QoS 0) is not taken twice
            self.looking = False
            client.unsubscribe(list(_ELSEWHERE_TOPICS))
            if msg.qos == 0 and msg.topic.endswith(("/status", "/telemetry")):
                return
        self.arrived += 1
        if msg.topic == f"pollen/{self.network}/errors":
            try:
                self.last_error = str(json.loads(msg.payload).get("error"))[:200]
            except (ValueError, AttributeError):
                pass
            return
        try:
            item = mqtt_event(msg.topic, msg.payload, self.network, time.time())
        except RemoteError:
            self.malformed += 1   # the remote's fault: drop it, count it, carry on
            return
        if item is None:
            return
        try:
            self.q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def get(self, timeout_s):
        try:
            return self.q.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def failed(self):
        if not self.connected.is_set():
            return f"--mqtt {self.host}:{self.port}: {self.problem or 'not connected'}"
        return None

    def notes(self):
        out = [self.problem] if self.problem else []
        if self.connected_at is not None and not self.arrived:
            waited = time.monotonic() - self.connected_at
            if waited >= _QUIET_NOTE_S:
                out.append(f"nothing has arrived on pollen/{self.network}/# in {waited:.0f} s: "
                           f"is the network name right? (--network; a gateway publishes on "
                           f"pollen/<its network>/..., e.g. pollen gateway --network NAME)")
                if self.elsewhere:
                    names = ", ".join(safe_text(n, 40) for n in self.elsewhere)
                    out.append(f"gateways on this broker publish on: {names} "
                               f"(--network {safe_text(self.elsewhere[0], 40)})")
        if self.malformed:
            out.append(f"{self.malformed} MQTT payloads ignored "
                       "(not JSON objects, or no valid time)")
        if self.dropped:
            out.append(f"{self.dropped} MQTT events dropped (the monitor fell behind)")
        if self.last_error:
            out.append(f"a gateway refused a send: {self.last_error}")
        return out

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


# ---- the emulated mesh of `pollen demo` -------------------------------------------------

# names a village might give its nodes; ladder(3): columns (1,2) (3,4) (5,6)
_DEMO_NAMES = ("hall", "school", "mill", "bakery", "farm", "chapel")


class DemoSource(_LinkSource):
    """Six real MicroPython nodes in a ladder (two rows, three columns; the
    attached node 'hall' hears the first two columns). Two nodes are held back
    and switched on after hold_back_s: 'bakery', a direct neighbour of the
    attached node, and 'chapel', two hops away; how long the monitor takes to
    show each is measured (shown_after_s). The other nodes post now and then."""

    def __init__(self, workdir, hold_back_s: float = 25.0, status_every_s: float = STATUS_EVERY_S,
                 chatter_every_s: float = 8.0, say=None):
        from pollen import settings as fw_settings
        from pollen_controller.emulation.demo_mesh import DEMO_NODE_SETTINGS, Chatter, start_demo_mesh
        from pollen_controller.node.link import ProcessLink
        from pollen_controller.topology import ladder

        super().__init__(status_every_s)
        say = say or (lambda s: None)
        topo = ladder(3, rows=2)
        self.ids = sorted(topo.node_ids)
        self.attached = self.ids[0]
        self.held = {self.ids[3]: 1, self.ids[5]: 2}   # node -> hops from the attached node
        self.names = dict(zip(self.ids, _DEMO_NAMES))
        settings = dict(DEMO_NODE_SETTINGS)
        if "telemetry_interval_ms" in fw_settings.FIELDS:
            # demo pace: every 20 s, not 5 min, and 30 % of the airtime a
            # node may use, not 2 %: the interval stretches to fit the share
            # (about 25 s here instead of 4 min), so a status frame lost to a
            # collision is followed by another within the demo's wait
            settings["telemetry_interval_ms"] = 20000
            settings["telemetry_share_per_mille"] = 300
        # the held-back nodes are out of everyone's range while they start
        self._cut = {pair: link for pair, link in topo.links.items()
                     if pair[0] in self.held or pair[1] in self.held}
        for a, b in self._cut:
            topo.set_link(a, b, None, symmetric=False)
        self.description = (f"demo: {len(self.ids)} emulated nodes, attached to "
                            f"{self.names[self.attached]} ({self.attached:08x})")
        say("starting the emulated mesh...")
        self.emu = start_demo_mesh(topo, workdir, settings, names=self.names)
        try:
            for h in self.held:
                self.emu.nodes[h].stop(hard=True)   # switched off before anyone heard them
        except BaseException:
            self.emu.close()
            raise
        self.link = ProcessLink(self.emu.nodes[self.attached])
        self.started = time.time()
        self.switch_on_at = self.started + hold_back_s
        self.switched_on = None      # time.time() when the held nodes came on
        self.shown_after = {}        # node id hex -> seconds from switch-on to shown
        self.shown_by = {}
        # the others post now and then (one in three to the attached node)
        talkers = [i for i in self.ids[1:] if i not in self.held]
        self.chatter = Chatter(self.emu, talkers, chatter_every_s, self._chatter_message)
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._life, args=(chatter_every_s,), daemon=True)
        self._thread.start()

    def _chatter_message(self, k, src):
        return (f"{self.attached:08x}" if k % 3 == 0 else "all",
                f"{self.names[src]} says hello ({k})")

    def _life(self, chatter_every_s):
        while not self.stop.wait(min(chatter_every_s, 1.0)):
            if self.switched_on is None and time.time() >= self.switch_on_at:
                for (a, b), link in self._cut.items():
                    self.emu.medium.set_link(a, b, link, symmetric=False)
                for h in self.held:
                    self.emu.nodes[h].start()
                self.switched_on = time.time()
            for i, n in self.emu.nodes.items():   # the others' events: not watched, not kept
                if i != self.attached:
                    while not n.events.empty():
                        n.events.get_nowait()
            self.chatter.step()

    def get(self, timeout_s):
        return self._next(timeout_s)

    def seen(self, view):
        if self.switched_on is None:
            return
        for h in self.held:
            hid = f"{h:08x}"
            t = view.first_shown.get(hid)
            if hid not in self.shown_after and t is not None and t >= self.switched_on:
                self.shown_after[hid] = round(t - self.switched_on, 1)
                self.shown_by[hid] = view.nodes[hid]["heard_by"]

    def done(self, view) -> bool:
        return len(self.shown_after) == len(self.held)

    def notes(self):
        out = super().notes()
        now = time.time()
        for h, hops in self.held.items():
            hid = f"{h:08x}"
            who = f"{self.names[h]} ({hid}, {'a neighbour' if hops == 1 else f'{hops} hops away'})"
            if self.switched_on is None:
                out.append(f"{who} switches on in {self.switch_on_at - now:.0f} s")
            elif hid in self.shown_after:
                out.append(f"{who} shown {self.shown_after[hid]} s after it was switched on "
                           f"(by {self.shown_by[hid]})")
            else:
                out.append(f"{who} switched on {now - self.switched_on:.0f} s ago; not shown yet")
        return out

    def row_extras(self) -> dict:
        return {h: {"shown_after_s": s, "shown_by": self.shown_by[h]}
                for h, s in self.shown_after.items()}

    def close(self):
        self.stop.set()
        self._thread.join(3)
        self.emu.close()
