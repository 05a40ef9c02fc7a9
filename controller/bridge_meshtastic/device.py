"""The Meshtastic side of the bridge: one device through the `meshtastic`
package (SerialInterface on a serial port, TCPInterface to a networked node
or meshtasticd), kept through the device going away (docs/meshtastic.md).

  up      texts arrive (pubsub "meshtastic.receive.text") and are sent
  away    the interface is closed; it is made again after 1 s, then 2, 4 ..
          every 30 s (a new interface does the whole want_config handshake)

The package's client reads on its own thread and publishes what it hears
on pypubsub's topics, which are global: a handler gets the packets of every
interface in the process, so each Device keeps only its own.
"""
from __future__ import annotations

import logging
import re
import threading
import time

from pollen_controller.bridge_meshtastic.relay import bridge_in_name
from pollen_controller.errors import InputError, MeshtasticError

DEFAULT_TCP_PORT = 4403   # meshtastic.tcp_interface.DEFAULT_TCP_PORT
_FIRST_DELAY_S = 1.0
_MAX_DELAY_S = 30.0
_CONNECT_TIMEOUT_S = 20   # waitForConfig after the handshake (the handshake itself: the package waits 30 s)
_SCAN_EVERY_S = 60.0      # the node database read for bridges on MQTT this often
# a QueueStatus res that says the device took the packet: 0, or the firmware's
# ERRNO_SHOULD_RELEASE (src/mesh/MeshTypes.h: handled, the caller frees it)
_TAKEN = (0, 35)
# A bridge on a device says "pollen bridge ID" on its channel (announce()) in a
# packet of this port, the one Meshtastic keeps for private applications, when it
# connects; apps show nothing of it. The package publishes what it hears of that
# port on this topic.
ANNOUNCE_PORT = "PRIVATE_APP"
_ANNOUNCE_TOPIC = "meshtastic.receive.data." + ANNOUNCE_PORT


def parse_host(value: str, option: str = "--meshtastic-host") -> tuple[str, int]:
    """HOST[:PORT] -> (host, port); InputError naming the option."""
    host, colon, port = value.rpartition(":")
    if not colon or "]" in port:
        host, port = value, str(DEFAULT_TCP_PORT)
    host = host.strip("[]")
    if not host:
        raise InputError(f"{option} {value!r}: no host name or address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{option} {value!r}: port {port!r} is not a number 1..65535")
    return host, int(port)


def parse_where(value: str, option: str) -> dict:
    """PORT|HOST[:PORT] in one option (`pollen monitor --meshtastic`) ->
    Device's keywords: a path (it has a / or \\) or COMn is a serial port,
    anything else a host for the TCP API. InputError naming the option."""
    value = value.strip()
    if "/" in value or "\\" in value or re.fullmatch(r"(?i)com\d+", value):
        return {"serial_port": value}
    host, port = parse_host(value, option)
    return {"host": host, "tcp_port": port}


class _PackageLog(logging.Handler):
    """The package's own warnings and errors (a frame it could not parse, a
    port that went away), counted and said through the bridge's log, not
    printed raw by Python's last-resort handler."""

    def __init__(self, device):
        super().__init__(logging.WARNING)
        self.device = device

    def emit(self, record):
        self.device.stats["package_errors" if record.levelno >= logging.ERROR
                          else "package_warnings"] += 1
        self.device.log(f"meshtastic package: {record.getMessage()}")


class Device:
    """One Meshtastic device. on_text(packet, device) is called on the
    package's publishing thread for each text packet this device hears (each
    packet of any kind with topic="meshtastic.receive", as the monitor does)."""

    def __init__(self, on_text, serial_port: str | None = None, host: str | None = None,
                 tcp_port: int = DEFAULT_TCP_PORT, log=None,
                 first_delay_s: float = _FIRST_DELAY_S, max_delay_s: float = _MAX_DELAY_S,
                 topic: str = "meshtastic.receive.text"):
        if (serial_port is None) == (host is None):
            raise InputError("give --meshtastic-port DEV or --meshtastic-host HOST[:PORT]")
        self.on_text = on_text
        self.on_bridge = None   # set by the bridge: (num, pollen id) of a bridge on MQTT it knows
        self._next_scan = 0.0
        self.serial_port, self.host, self.tcp_port = serial_port, host, tcp_port
        self.where = serial_port or f"{host}:{tcp_port}"
        self.log = log or (lambda s: None)
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self.iface = None
        self.num: int | None = None
        self._pending = None              # the interface being connected
        self._early: list | None = None   # texts it published before it was ours
        self._early_lock = threading.Lock()
        self._connector: threading.Thread | None = None   # connecting in the background
        self._closed = False
        self._delay_s = first_delay_s
        self._next_try = 0.0
        self._last_error = None
        self.away_since: float | None = None
        self.stats = {"connects": 0, "lost": 0, "package_errors": 0, "package_warnings": 0}
        # the package logs to the "meshtastic" logger (in this process: with
        # two devices, each counts the other's too)
        self._package_log = _PackageLog(self)
        logging.getLogger("meshtastic").addHandler(self._package_log)
        from pubsub import pub

        self.topic = topic   # "meshtastic.receive": every packet (pubsub passes on subtopics)
        pub.subscribe(self._on_text, topic)
        pub.subscribe(self._on_announce, _ANNOUNCE_TOPIC)

    # ---- connecting ---------------------------------------------------------------

    def open(self):
        """Connect now; MeshtasticError with the reason if it fails."""
        error = self._connect()
        if error:
            raise MeshtasticError(f"Meshtastic device {self.where}: {error}")

    def _connect(self) -> str | None:
        # As the package's constructor does with connectNow=True (connect,
        # then waitForConfig), but with the interface known first: a device
        # hands over what it kept for its client as soon as the handshake
        # ends, before the constructor would have returned, and those texts
        # are kept (self._early) and passed on once the interface is ours.
        try:
            if self.serial_port:
                from meshtastic.serial_interface import SerialInterface

                iface = SerialInterface(devPath=self.serial_port, connectNow=False,
                                        timeout=_CONNECT_TIMEOUT_S)
            else:
                from meshtastic.tcp_interface import TCPInterface

                iface = TCPInterface(self.host, portNumber=self.tcp_port, connectNow=False,
                                     timeout=_CONNECT_TIMEOUT_S)
            with self._early_lock:
                self._pending, self._early = iface, []
            try:
                iface.connect()
                iface.waitForConfig()
            except BaseException:
                with self._early_lock:
                    self._pending, self._early = None, None
                try:
                    iface.close()
                except Exception:  # noqa: BLE001 - closing what did not open
                    pass
                raise
        except Exception as e:  # noqa: BLE001 - the package raises many kinds; each is "not there"
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if self._closed:   # closed while this connected
            iface.close()
            return "closed"
        with self._early_lock:  # texts published meanwhile wait for these to be passed on
            self.iface, self.num = iface, iface.myInfo.my_node_num
            self._next_scan = 0.0
            early, self._pending, self._early = self._early, None, None
            self.stats["connects"] += 1
            for packet in early:
                self.on_text(packet, self)
        return None

    @property
    def up(self) -> bool:
        iface = self.iface
        if iface is None or not iface.isConnected.is_set():
            return False
        # the package writes nothing, silently, while its stream or socket is gone
        return getattr(iface, "stream", None) is not None or getattr(iface, "socket", None) is not None

    def poll(self):
        """Notice the device going; make the interface again when it is time,
        on a thread of its own (a port that opens and stays silent holds the
        package about 30 s), so the bridge's loop goes on meanwhile."""
        if self.iface is not None and not self.up:
            self._lost("the connection went away")
        if self.iface is not None:
            if time.monotonic() >= self._next_scan:
                self._next_scan = time.monotonic() + _SCAN_EVERY_S
                self._scan_bridges()
            return
        if self._connector is not None:
            if self._connector.is_alive():
                return
            self._connector = None
        elif time.monotonic() >= self._next_try and not self._closed:
            self._connector = threading.Thread(target=self._connect_in_background, daemon=True,
                                               name="meshtastic connect")
            self._connector.start()

    def _connect_in_background(self):
        self._tried(self._connect())

    def _tried(self, error: str | None):
        if error is None:
            away = time.time() - (self.away_since or time.time())
            self.log(f"Meshtastic device {self.where} (node {self.node_id}) is back"
                     f" after {away:.0f} s")
            self._delay_s, self._last_error, self.away_since = self.first_delay_s, None, None
            return
        if error != self._last_error:   # say why once, not every try
            self._last_error = error
            self.log(f"Meshtastic device {self.where}: {error}; trying again")
        self._delay_s = min(self._delay_s * 2, self.max_delay_s)
        self._next_try = time.monotonic() + self._delay_s

    def _scan_bridges(self):
        # bridges on MQTT publish their node info as "pollen bridge ID"
        # (mqtt_side.py); a device that heard one (a gateway put it on the
        # air) has it in its node database: it counts in the hold-back ranks
        iface = self.iface
        if self.on_bridge is None or iface is None:
            return
        for num, node in list((iface.nodesByNum or {}).items()):
            pollen_id = bridge_in_name(((node or {}).get("user") or {}).get("longName"))
            if pollen_id is not None and num != self.num:
                self.on_bridge(num, pollen_id, None)

    def announce(self, text: str, channel: int, reply_to: int | None = None) -> bool:
        """Say `text` (a bridge's "pollen bridge ID") to the channel, in a
        packet of ANNOUNCE_PORT; reply_to: the id of the announce this
        answers (Data.reply_id), so it is not answered in turn. False if it
        could not be handed over now."""
        if not self.up:
            return False
        from meshtastic.protobuf import portnums_pb2

        try:
            self.iface.sendData(text.encode(), destinationId="^all",
                                portNum=portnums_pb2.PortNum.Value(ANNOUNCE_PORT),
                                channelIndex=channel, replyId=reply_to or None)
        except Exception as e:  # noqa: BLE001 - a write to a device going away
            self._lost(f"a send failed ({type(e).__name__}: {e})")
            return False
        return True

    def _on_announce(self, packet, interface=None):
        # another bridge's announce() heard: (num, its pollen id) to on_bridge
        if interface is None or interface is not self.iface or self.on_bridge is None:
            return
        num, payload = packet.get("from"), (packet.get("decoded") or {}).get("payload")
        if not isinstance(num, int) or num == self.num or not isinstance(payload, bytes):
            return
        pollen_id = bridge_in_name(payload.decode("utf-8", errors="replace"))
        if pollen_id is not None:   # an announce is answered (its id); an answer is not
            answered = (packet.get("decoded") or {}).get("replyId")
            self.on_bridge(num, pollen_id, None if answered else packet.get("id"))

    def drop(self, why: str):
        """Take the device as gone (it stopped confirming): connect again."""
        if self.iface is not None:
            self._lost(why)

    def _lost(self, why: str):
        iface, self.iface = self.iface, None
        self.stats["lost"] += 1
        self.away_since = time.time()
        self._delay_s = self.first_delay_s
        self._next_try = time.monotonic() + self._delay_s
        self.log(f"Meshtastic device {self.where}: {why}; texts for it wait; connecting again"
                 f" every {self.first_delay_s:g}..{self.max_delay_s:g} s")
        try:
            iface.close()
        except Exception:  # noqa: BLE001 - closing what is already gone
            pass

    @property
    def last_error(self) -> str | None:
        """Why the last try to connect failed (None after one that worked)."""
        return self._last_error

    @property
    def node_id(self) -> str:
        return f"!{self.num:08x}" if self.num is not None else "?"

    def short_name(self, num: int) -> str | None:
        iface = self.iface
        node = (iface.nodesByNum or {}).get(num) if iface is not None else None
        return ((node or {}).get("user") or {}).get("shortName")

    # ---- texts --------------------------------------------------------------------

    def send(self, text: str, channel: int, to_num: int | None = None, ref=None) -> int | None:
        """Hand a text to the device (to the channel, or to one node): the
        packet's id, to ask confirmed() about; None if it could not be
        handed over now (the device away, or its transmit queue full). (ref,
        the outbox row, is not needed: the package numbers its packets.)"""
        if not self.up:
            return None
        queue_status = self.iface.queueStatus  # the device's last word on its transmit queue
        if queue_status is not None and queue_status.free <= 0:
            return None     # full: sendText would wait for room, holding up the bridge; try later
        try:
            # want_ack, as the Meshtastic apps send texts: the firmware sends a
            # broadcast again until it hears a relay of it (implicit ack), a
            # direct message until its destination acks it (ReliableRouter)
            packet = self.iface.sendText(text, destinationId=to_num if to_num is not None else "^all",
                                         wantAck=True, channelIndex=channel)
        except Exception as e:  # noqa: BLE001 - a write to a device going away
            self._lost(f"a send failed ({type(e).__name__}: {e})")
            return None
        return packet.id

    def confirmed(self, packet_id: int) -> bool | None:
        """Did the device take the packet? True once a QueueStatus named it
        with res 0; False while not yet (or refused: refused() says why);
        None if this device has never sent a QueueStatus (a firmware too old
        to confirm). The package keeps the last QueueStatus as
        `queueStatus`, and one naming a packet it is no longer sending, with
        res 0, as `queue[id] = False`
        (MeshInterface._handleQueueStatusFromRadio); either says so."""
        iface = self.iface
        if iface is None:
            return False
        status = iface.queueStatus
        if status is None:
            return None
        if status.mesh_packet_id == packet_id:
            return status.res in _TAKEN
        return iface.queue.get(packet_id, None) is False

    def refused(self, packet_id: int) -> str | None:
        """Why the device refused the packet (a Routing.Error name, such as
        DUTY_CYCLE_LIMIT or TOO_LARGE), or None: the firmware answers each
        packet from its client with a QueueStatus whose res is what sending
        it gave (src/mesh/MeshService.cpp sendToMesh)."""
        iface = self.iface
        status = iface.queueStatus if iface is not None else None
        if status is None or status.mesh_packet_id != packet_id or status.res in _TAKEN:
            return None
        from meshtastic.protobuf import mesh_pb2

        try:
            return mesh_pb2.Routing.Error.Name(status.res)
        except ValueError:
            return f"error {status.res}"

    def report(self) -> dict:
        """The counters said when the bridge stops: the package's warnings and errors."""
        return {k: v for k, v in self.stats.items() if k.startswith("package")}

    def _on_text(self, packet, interface=None):
        if interface is None:
            return
        with self._early_lock:
            if interface is self._pending and self._early is not None:
                self._early.append(packet)   # the handshake has not finished here yet
                return
        if interface is self.iface:
            self.on_text(packet, self)

    def close(self):
        from pubsub import pub

        self._closed = True
        if self._connector is not None:
            self._connector.join(1.0)   # (one still waiting on a silent port closes what it gets)
        logging.getLogger("meshtastic").removeHandler(self._package_log)
        try:
            pub.unsubscribe(self._on_text, self.topic)
            pub.unsubscribe(self._on_announce, _ANNOUNCE_TOPIC)
        except Exception:  # noqa: BLE001 - not subscribed
            pass
        if self.iface is not None:
            iface, self.iface = self.iface, None
            try:
                iface.close()
            except Exception:  # noqa: BLE001
                pass
