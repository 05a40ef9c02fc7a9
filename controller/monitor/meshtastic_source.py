"""`pollen monitor --meshtastic PORT|HOST[:PORT]`: the nodes a Meshtastic
device knows, through the `meshtastic` package, as `meshtastic_node` events
for MeshView (docs/monitor.md, "Meshtastic nodes").

The package keeps what its device told it in `interface.nodesByNum`: the
node database the device hands over in its handshake (a NodeInfo per node:
user names, last_heard, snr, device_metrics, hops_away), then updated in
place from the packets heard (names from NODEINFO_APP, battery from
TELEMETRY_APP; meshtastic/__init__.py's `protocols`) before each packet is
published on pubsub "meshtastic.receive[.*]". So this source

  reads the whole database after each connection (the first, and each after
  the device was away),
  reads a node again for each packet from it: heard now (the packet's
  rx_time when the device has a clock), with that packet's SNR, RSSI and
  hops (hop_start - hop_limit),
  says the device itself is there every DEVICE_EVERY_S (hops 0, as pollen's
  attached node).

Connecting, noticing the device going and connecting again with back-off are
bridge_meshtastic/device.py's Device, shared with `pollen bridge meshtastic`.
node_event() is pure: a node as the package keeps it in, an event out.
"""
from __future__ import annotations

import queue
import time

from pollen_controller.monitor.mesh_view import fmt_age, unix_time
from pollen_controller.monitor.sources import QUEUE_LIMIT, Source

DEVICE_EVERY_S = 5.0     # the device's own row is refreshed this often while connected
_TELEMETRY = "TELEMETRY_APP"


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _metrics(node) -> dict | None:
    m = node.get("deviceMetrics")
    if not isinstance(m, dict):
        return None
    return {"battery_pct": _num(m.get("batteryLevel")), "voltage_v": _num(m.get("voltage")),
            "air_util_tx_pct": _num(m.get("airUtilTx")), "uptime_s": _num(m.get("uptimeSeconds"))}


def node_event(node: dict, device: str, now: float, packet: dict | None = None) -> dict | None:
    """One entry of interface.nodesByNum (MessageToDict's camelCase keys) ->
    a meshtastic_node event, or None without a node number. `device` is the
    attached device's id (!xxxxxxxx); `packet` the packet just heard from
    this node, if that is why it is read. Values are passed as the package
    has them: MeshView checks them (names from the air included)."""
    num = node.get("num")
    if not isinstance(num, int) or isinstance(num, bool) or not 0 < num < 0xFFFFFFFF:
        return None
    nid = f"!{num:08x}"
    user = node.get("user") if isinstance(node.get("user"), dict) else {}
    hops_away = _num(node.get("hopsAway"))
    ev = {"event": "meshtastic_node", "device": device, "id": nid,
          "name": user.get("longName") or user.get("shortName"),
          "short_name": user.get("shortName"), "hw_model": user.get("hwModel"),
          "attached": nid == device, "heard_t": _num(node.get("lastHeard")),
          # hops_away 0 is a neighbour the device heard directly: 1 hop, as in pollen's rows
          "hops": int(hops_away) + 1 if hops_away is not None and hops_away >= 0 else None,
          "snr_db": _num(node.get("snr")), "rssi_dbm": None}
    metrics = _metrics(node)
    if metrics is not None:
        ev["metrics"], ev["report_t"] = metrics, ev["heard_t"]
    if packet is not None:
        rx_time = unix_time(packet.get("rxTime"))   # 0 (absent): the device has no clock
        ev["heard_t"] = rx_time if rx_time is not None and rx_time <= now + 60 else now
        if not packet.get("viaMqtt"):   # (one that came through MQTT has no radio figures)
            ev["snr_db"] = _num(packet.get("rxSnr"))
            ev["rssi_dbm"] = _num(packet.get("rxRssi"))
        hop_start = _num(packet.get("hopStart"))     # firmware 2.3 on; hop_limit 0 is left out
        hop_limit = _num(packet.get("hopLimit")) or 0
        if hop_start and hop_start >= hop_limit:
            ev["hops"] = int(hop_start - hop_limit) + 1
        decoded = packet.get("decoded") if isinstance(packet.get("decoded"), dict) else {}
        if decoded.get("portnum") == _TELEMETRY and metrics is not None:
            ev["report_t"] = ev["heard_t"]       # the metrics are this packet's
    return ev


class MeshtasticSource(Source):
    """A Meshtastic device on a serial port or its TCP API (`where`: the
    Device keywords from bridge_meshtastic.device.parse_where). It must be
    there at start (MeshtasticError otherwise); later it may go and come
    back, and its rows stay meanwhile."""

    def __init__(self, where: dict, first_delay_s: float = 1.0, max_delay_s: float = 30.0,
                 device_every_s: float = DEVICE_EVERY_S):
        from pollen_controller.bridge_meshtastic.device import Device

        self.q: queue.Queue = queue.Queue(QUEUE_LIMIT)
        self.dropped = 0
        self.device_every_s = device_every_s
        self._next_own = 0.0
        self._connects = 0            # the device's connections read so far
        self._metrics: dict = {}      # node -> the metrics last passed on
        self.last_package_line = None  # the package's last warning or error
        self.device = Device(self._on_packet, **where, log=self._log, first_delay_s=first_delay_s,
                             max_delay_s=max_delay_s, topic="meshtastic.receive")
        self.description = f"Meshtastic {self.device.where}"
        try:
            self.device.open()
        except BaseException:
            self.device.close()
            raise
        self.description = f"Meshtastic {self.device.where} ({self.device.node_id})"

    def _log(self, line: str):
        # the Device's lines: its own (away, back: said by notes() instead)
        # and the package's warnings and errors, of which the last is shown
        if line.startswith("meshtastic package: "):
            self.last_package_line = line

    # ---- events ---------------------------------------------------------------------

    def _put(self, ev, telemetry: bool = False):
        if ev is None:
            return
        m = ev.get("metrics")
        if m is not None:
            if self._metrics.get(ev["id"]) == m and not telemetry:
                del ev["metrics"], ev["report_t"]   # nothing new: its report keeps its time
            else:
                self._metrics[ev["id"]] = m
        try:
            self.q.put_nowait((ev, time.time()))
        except queue.Full:
            self.dropped += 1

    def _on_packet(self, packet, device):
        # on the package's publishing thread, after the package updated its
        # database from this packet
        num = packet.get("from") if isinstance(packet, dict) else None
        iface = device.iface
        if not isinstance(num, int) or iface is None:
            return
        node = dict((iface.nodesByNum or {}).get(num) or {"num": num})
        decoded = packet.get("decoded") if isinstance(packet.get("decoded"), dict) else {}
        self._put(node_event(node, device.node_id, time.time(), packet),
                  telemetry=decoded.get("portnum") == _TELEMETRY)

    def _read_all(self):
        iface = self.device.iface
        if iface is None:
            return
        now = time.time()
        for node in list((iface.nodesByNum or {}).values()):
            self._put(node_event(dict(node), self.device.node_id, now))

    def get(self, timeout_s):
        self.device.poll()
        connects = self.device.stats["connects"]
        if connects != self._connects and self.device.iface is not None:
            self._connects = connects      # a new connection: the whole database again
            self._read_all()
        if self.device.up and time.monotonic() >= self._next_own:
            self._next_own = time.monotonic() + self.device_every_s
            iface = self.device.iface
            own = (iface.nodesByNum or {}).get(self.device.num) if iface is not None else None
            self._put(node_event(dict(own or {"num": self.device.num}), self.device.node_id,
                                 time.time()))
        try:
            return self.q.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def done(self, view) -> bool:
        # --once: the database has been read and passed on
        return self._connects > 0 and self.q.empty()

    def notes(self) -> list[str]:
        out = []
        d = self.device
        if not d.up:
            away = time.time() - d.away_since if d.away_since else 0
            why = f" ({d.last_error})" if d.last_error else ""
            out.append(f"Meshtastic device {d.where} away for {fmt_age(away)}{why}; connecting "
                       f"again every {d.first_delay_s:g}..{d.max_delay_s:g} s; its nodes stay as "
                       "last heard")
        if d.stats["lost"]:
            out.append(f"Meshtastic device: connections lost {d.stats['lost']}, "
                       f"made {d.stats['connects']}")
        errors, warnings = d.stats["package_errors"], d.stats["package_warnings"]
        if errors or warnings:
            out.append(f"the meshtastic package said {errors} errors and {warnings} warnings "
                       "(frames it could not read, a port that went away); last: "
                       f"{(self.last_package_line or '').removeprefix('meshtastic package: ')[:120]}")
        if self.dropped:
            out.append(f"{self.dropped} Meshtastic events dropped (the monitor fell behind)")
        return out

    def close(self):
        self.device.close()
