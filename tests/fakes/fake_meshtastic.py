# A stand-in for a Meshtastic device, speaking its client stream protocol on
# a pseudo-terminal (as a USB serial port) or on a TCP port (as a networked
# node or meshtasticd on 4403), for the host's tests with the real
# `meshtastic` package (docs/meshtastic.md, "Tested").
#
# The protocol, as the package's own client reads and writes it (meshtastic
# 2.7: stream_interface.py and mesh_interface.py, read for this):
#   framing       0x94 0xC3, a 2-byte big-endian length (at most 512), then
#                 a protobuf: ToRadio from the client, FromRadio from the
#                 device. Bytes outside a frame are the device's log text
#                 (the client also writes 32 x 0xC3 first, to wake it)
#   handshake     the client sends ToRadio.want_config_id = N; the device
#                 answers my_info, a node_info per node it knows (itself
#                 first), a channel per channel, then config_complete_id = N.
#                 SerialInterface/TCPInterface wait for all of it (myInfo,
#                 nodes, channels) before their constructor returns
#   packets       FromRadio.packet: a MeshPacket (from, to, channel, id,
#                 decoded: Data with portnum TEXT_MESSAGE_APP and the UTF-8
#                 text as payload); the client publishes it on pubsub topic
#                 meshtastic.receive.text. ToRadio.packet is what the client
#                 sends; the device answers each with a QueueStatus
# Every protobuf is the package's own class (meshtastic.protobuf.*_pb2).
#
#   FakeMeshtastic(folder)        the device; .serial() puts it on a pty behind
#                                 folder/ttyMESH, .tcp() on a free 127.0.0.1 port
#   text(from_num, text, ...)     a text heard from the air, to the client
#   telemetry(from_num, ...)      a device-metrics packet (TELEMETRY_APP) heard
#   user(from_num, short, long)   a node-info packet (NODEINFO_APP): its names
#   sent                          queue of (to, channel, text) the client sent
#   data                          queue of (to, channel, port name, payload) of its other packets
#   packet(from_num, port, b)     a packet of another port (a PortNum name) heard, to the client
#   unplug() / plug()             the port goes away (pty closed, symlink gone;
#                                 TCP: listener and connections closed) and back
#   garbage(b)                    raw bytes on the line (log text, noise)
#   queued                        texts handed over right after the next handshake
#   swallow = True                packets from the client vanish (no QueueStatus):
#                                 a connection dead before either side noticed
#   refuse = "DUTY_CYCLE_LIMIT"   packets from the client refused with that
#                                 Routing.Error in their QueueStatus (res), not sent
#   refused                       list of (to, text, error name) refused
# A packet is refused TOO_LARGE as the firmware refuses it (src/mesh/Router.cpp
# perhapsEncode): its Data, with the bitfield the firmware adds to every packet
# from its client, over 255 - 16 (header) bytes, or over 255 - 16 - 12
# (MESHTASTIC_PKC_OVERHEAD) for a direct message (PKI-encrypted: the
# destination's key known, as for any node of firmware 2.5 on).
# Runs under CPython only.
import os
import pty
import queue
import select
import socket
import threading
import time
import tty

from meshtastic.protobuf import channel_pb2, mesh_pb2, portnums_pb2, telemetry_pb2

_START1, _START2 = 0x94, 0xC3
_MAX_FRAME = 512
BROADCAST = 0xFFFFFFFF

# (node num, short name, long name[, node database fields]): the device
# itself first. The optional dict sets what the handshake's NodeInfo says of
# the node (mesh.proto NodeInfo, telemetry.proto DeviceMetrics): last_heard,
# snr, hops_away, hw_model (a HardwareModel name) and battery_level, voltage,
# air_util_tx, uptime_seconds; without it: snr 5.0, last_heard 1765000000
NODES = [(0xA1B2C3D4, "BASE", "Base station"),
         (0x11223344, "ANNA", "Anna's handheld"),
         (0x55667788, "🌻SF", "Sunflower farm")]
CHANNELS = [(0, "", channel_pb2.Channel.Role.PRIMARY), (1, "pollen", channel_pb2.Channel.Role.SECONDARY)]


def frame(msg) -> bytes:
    b = msg.SerializeToString()
    return bytes([_START1, _START2, len(b) >> 8, len(b) & 0xFF]) + b


class FrameReader:
    """Bytes in, ToRadio protobufs out; bytes outside a frame are skipped."""

    def __init__(self):
        self.buf = b""

    def feed(self, data: bytes) -> list:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(bytes([_START1, _START2]))
            if i < 0:
                self.buf = self.buf[-1:] if self.buf[-1:] == bytes([_START1]) else b""
                return out
            self.buf = self.buf[i:]
            if len(self.buf) < 4:
                return out
            n = (self.buf[2] << 8) | self.buf[3]
            if n > _MAX_FRAME:
                self.buf = self.buf[2:]
                continue
            if len(self.buf) < 4 + n:
                return out
            body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            msg = mesh_pb2.ToRadio()
            try:
                msg.ParseFromString(body)
            except Exception:  # noqa: BLE001 - garbage on the line: skipped, as a device does
                continue
            out.append(msg)


class FakeMeshtastic:
    def __init__(self, folder, nodes=NODES, channels=CHANNELS):
        self.path = str(folder / "ttyMESH")
        self.nodes, self.channels = nodes, channels
        self.num = nodes[0][0]
        self.sent: queue.Queue = queue.Queue()   # (to, channel, text) from the client
        self.data: queue.Queue = queue.Queue()   # (to, channel, port name, payload): other ports
        self.data_reply_ids: list = []           # the reply_id of each of those
        self.want_acks: list = []                # want_ack of each text sent
        self.configs = 0                         # handshakes answered
        self.queued: list = []                   # (from_num, text, channel) sent right after a handshake
        self.swallow = False                     # True: packets from the client vanish, unanswered
        self.swallowed = 0
        self.refuse = None                       # a Routing.Error name: every packet refused with it
        self.refused: list = []                  # (to, text, error name)
        self.next_id = 1
        self.kind = None
        self.tcp_port = None
        self._lock = threading.Lock()
        self._outs: list = []                    # write functions of the current connections
        self._stop = threading.Event()

    # ---- where it is ------------------------------------------------------------

    def serial(self):
        self.kind = "serial"
        return self.plug()

    def tcp(self):
        self.kind = "tcp"
        return self.plug()

    def plug(self):
        self._stop = threading.Event()
        if self.kind == "serial":
            master, slave = pty.openpty()
            tty.setraw(slave)
            self._fds = (master, slave)  # our slave end keeps the pty valid between opens
            with self._lock:
                self._outs = [lambda b: os.write(master, b)]
            threading.Thread(target=self._serve, args=(lambda: _read_fd(master, self._stop),
                                                       self._outs[0]), daemon=True).start()
            os.symlink(os.ttyname(slave), self.path)
        else:
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for _ in range(50):  # the port just closed may take a moment to be free again
                try:
                    srv.bind(("127.0.0.1", self.tcp_port or 0))
                    break
                except OSError:
                    time.sleep(0.1)
            srv.listen(4)
            self.tcp_port = srv.getsockname()[1]
            self._srv = srv
            threading.Thread(target=self._accept, args=(srv, self._stop), daemon=True).start()
        return self

    def unplug(self):
        self._stop.set()
        with self._lock:
            self._outs = []
            if self.kind == "serial":
                os.unlink(self.path)
                for fd in self._fds:
                    os.close(fd)
            else:
                self._srv.close()
                for c in getattr(self, "_conns", []):
                    try:
                        c.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    c.close()
                self._conns = []

    def _accept(self, srv, stop):
        self._conns = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            self._conns.append(conn)
            with self._lock:
                self._outs.append(conn.sendall)
            threading.Thread(target=self._serve_tcp, args=(conn, stop), daemon=True).start()

    def _serve_tcp(self, conn, stop):
        self._serve(lambda: _read_sock(conn, stop), conn.sendall)
        with self._lock:   # the client went (or said disconnect): closed, as a device does
            if conn.sendall in self._outs:
                self._outs.remove(conn.sendall)
        conn.close()

    # ---- what the device says -------------------------------------------------

    def _write(self, data: bytes, out=None):
        with self._lock:
            outs = [out] if out else list(self._outs)
            for w in outs:
                try:
                    w(data)
                except OSError:
                    pass
        if not outs:
            raise OSError("unplugged")

    def text(self, from_num: int, text: str, channel: int = 1, to: int = BROADCAST,
             packet_id: int | None = None):
        """A text message heard from the air, handed to the client."""
        if packet_id is None:
            packet_id, self.next_id = self.next_id, self.next_id + 1
        pkt = mesh_pb2.MeshPacket(**{"from": from_num}, to=to, channel=channel, id=packet_id,
                                  hop_limit=3, rx_snr=6.5, rx_rssi=-90)
        pkt.decoded.portnum = portnums_pb2.PortNum.TEXT_MESSAGE_APP
        pkt.decoded.payload = text.encode()
        self._write(frame(mesh_pb2.FromRadio(packet=pkt)))
        return packet_id

    def _packet(self, from_num, portnum, payload: bytes, hop_start=0, hop_limit=3, rx_time=0,
                rx_snr=6.5, rx_rssi=-90):
        packet_id, self.next_id = self.next_id, self.next_id + 1
        pkt = mesh_pb2.MeshPacket(**{"from": from_num}, to=BROADCAST, channel=0, id=packet_id,
                                  hop_limit=hop_limit, hop_start=hop_start, rx_time=rx_time,
                                  rx_snr=rx_snr, rx_rssi=rx_rssi)
        pkt.decoded.portnum = portnum
        pkt.decoded.payload = payload
        self._write(frame(mesh_pb2.FromRadio(packet=pkt)))
        return packet_id

    def telemetry(self, from_num: int, battery_level=None, voltage=None, air_util_tx=None,
                  uptime_seconds=None, **packet):
        """A device-metrics packet heard from the air (what a node broadcasts
        every 30 min by default); packet: hop_start, hop_limit, rx_time, rx_snr, rx_rssi."""
        t = telemetry_pb2.Telemetry(time=packet.get("rx_time", 0))
        for k, v in (("battery_level", battery_level), ("voltage", voltage),
                     ("air_util_tx", air_util_tx), ("uptime_seconds", uptime_seconds)):
            if v is not None:
                setattr(t.device_metrics, k, v)
        return self._packet(from_num, portnums_pb2.PortNum.TELEMETRY_APP, t.SerializeToString(),
                            **packet)

    def user(self, from_num: int, short: str, long: str, **packet):
        """A node-info packet heard from the air: the node's names."""
        u = mesh_pb2.User(id=f"!{from_num:08x}", short_name=short, long_name=long)
        return self._packet(from_num, portnums_pb2.PortNum.NODEINFO_APP, u.SerializeToString(),
                            **packet)

    def packet(self, from_num: int, port: str, payload: bytes, channel: int = 1, reply_id: int = 0):
        """A packet of another port heard from the air, to the client."""
        packet_id, self.next_id = self.next_id, self.next_id + 1
        pkt = mesh_pb2.MeshPacket(**{"from": from_num}, to=BROADCAST, channel=channel, id=packet_id,
                                  hop_limit=3, rx_snr=6.5, rx_rssi=-90)
        pkt.decoded.portnum = portnums_pb2.PortNum.Value(port)
        pkt.decoded.payload = payload
        pkt.decoded.reply_id = reply_id
        self._write(frame(mesh_pb2.FromRadio(packet=pkt)))
        return packet_id

    def garbage(self, data: bytes):
        self._write(data)

    def _handshake(self, config_id: int, out):
        msgs = [mesh_pb2.FromRadio(my_info=mesh_pb2.MyNodeInfo(my_node_num=self.num))]
        for num, short, long, *more in self.nodes:
            db = {"snr": 5.0, "last_heard": 1_765_000_000, **(more[0] if more else {})}
            info = mesh_pb2.NodeInfo(num=num, snr=db["snr"], last_heard=db["last_heard"])
            info.user.id = f"!{num:08x}"
            info.user.short_name, info.user.long_name = short, long
            if "hw_model" in db:
                info.user.hw_model = mesh_pb2.HardwareModel.Value(db["hw_model"])
            if "hops_away" in db:
                info.hops_away = db["hops_away"]
            for k in ("battery_level", "voltage", "air_util_tx", "uptime_seconds"):
                if k in db:
                    setattr(info.device_metrics, k, db[k])
            msgs.append(mesh_pb2.FromRadio(node_info=info))
        for index, name, role in self.channels:
            ch = channel_pb2.Channel(index=index, role=role)
            ch.settings.name = name
            msgs.append(mesh_pb2.FromRadio(channel=ch))
        msgs.append(mesh_pb2.FromRadio(config_complete_id=config_id))
        self._write(b"".join(frame(m) for m in msgs), out)
        self.configs += 1
        while self.queued:   # texts heard while no client was there, as a device keeps them
            self.text(*self.queued.pop(0))

    # ---- what the client says ------------------------------------------------------

    def _serve(self, read, out):
        reader = FrameReader()
        while True:
            data = read()
            if data is None:
                return
            for msg in reader.feed(data):
                try:
                    self._on_to_radio(msg, out)
                except OSError:
                    return

    def _on_to_radio(self, msg, out):
        kind = msg.WhichOneof("payload_variant")
        if kind == "disconnect" and self.kind == "tcp":
            raise OSError("the client said disconnect")
        if kind == "want_config_id":
            self._handshake(msg.want_config_id, out)
        elif kind == "packet":
            p = msg.packet
            if self.swallow:               # lost on the way, as into a connection already dead
                self.swallowed += 1
                return
            data = mesh_pb2.Data()
            data.CopyFrom(p.decoded)
            data.bitfield = data.bitfield            # present, as perhapsEncode sets has_bitfield
            room = 255 - 16 - (12 if p.to != BROADCAST else 0)
            error = self.refuse or ("TOO_LARGE" if len(data.SerializeToString()) > room else None)
            if error:
                self.refused.append((p.to, p.decoded.payload.decode(errors="replace"), error))
            elif p.decoded.portnum == portnums_pb2.PortNum.TEXT_MESSAGE_APP:
                self.want_acks.append(p.want_ack)
                self.sent.put((p.to, p.channel, p.decoded.payload.decode()))
            else:
                self.data.put((p.to, p.channel, portnums_pb2.PortNum.Name(p.decoded.portnum),
                               p.decoded.payload))
                self.data_reply_ids.append(p.decoded.reply_id)
            res = mesh_pb2.Routing.Error.Value(error) if error else 0
            status = mesh_pb2.QueueStatus(res=res, free=16, maxlen=16, mesh_packet_id=p.id)
            self._write(frame(mesh_pb2.FromRadio(queueStatus=status)), out)


def _read_fd(fd, stop):
    while not stop.is_set():
        try:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                return os.read(fd, 4096)
        except (OSError, ValueError):
            return None
    return None


def _read_sock(conn, stop):
    try:
        conn.settimeout(0.1)
    except OSError:        # closed meanwhile (unplugged)
        return None
    while not stop.is_set():
        try:
            data = conn.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            return None
        return data or None
    return None
