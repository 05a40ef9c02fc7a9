# The "udp" radio: frames go to and come from the virtual radio medium that
# the controller runs on 127.0.0.1 (controller/medium.py documents the
# datagrams). The same small interface as the LoRa adapter:
#   radio.transmit(frame)              put a frame on the air now
#   await radio.receive() -> (frame, rssi_dbm, snr_db)
#   radio.on_busy = fn(airtime_ms)     called when another transmission starts
import socket
import asyncio
from pollen.wire import be32, MAX_FRAME_BYTES

_DATAGRAM_BYTES = 4 + MAX_FRAME_BYTES  # every datagram from the medium: "R"/"B", fields, frame, zeros
_POLL_MS = 10  # how often the socket is looked at while nothing waits


class UdpRadio:
    def __init__(self, node_id, host="127.0.0.1", port=47000):
        self.medium = socket.getaddrinfo(host, port)[0][-1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
        self.sock.setblocking(False)
        self.hello = b"H" + be32(node_id)
        self.sock.sendto(self.hello, self.medium)
        self.on_busy = None
        # one buffer for every datagram, made at start: reading one then
        # allocates nothing. With recv(), which needs a new block each time,
        # a full, fragmented heap failed on the same datagram again and
        # again (up to 3,600 times a minute at 128K): a deaf node. Now a
        # datagram always leaves the socket; at worst the copy of its frame
        # fails and that one frame is lost
        self._buf = bytearray(_DATAGRAM_BYTES)

    def transmit(self, frame):
        self.sock.sendto(b"T" + frame, self.medium)

    async def receive(self):
        d = self._buf
        while True:
            try:
                # a stream read: it goes on to the next datagram until the
                # buffer is full, so the medium fills every datagram to its size
                n = self.sock.readinto(d)
            except OSError:
                n = None
            if n is None:
                # nothing waiting: looked at again shortly. Not parked on
                # asyncio's poller: parking allocates (an entry in its
                # table), and one that failed half-way on a full heap left the
                # table inconsistent, so every later wait failed. A sleep
                # allocates nothing
                await asyncio.sleep_ms(_POLL_MS)
                continue
            if n != _DATAGRAM_BYTES:
                continue  # not from the medium
            if d[0] == 0x52 and 0 < d[3] <= MAX_FRAME_BYTES:  # "R" rssi snr length frame
                rssi = d[1] - 256 if d[1] > 127 else d[1]
                snr = d[2] - 256 if d[2] > 127 else d[2]
                return bytes(memoryview(d)[4:4 + d[3]]), rssi, snr / 4
            if d[0] == 0x42 and self.on_busy:  # "B" airtime_ms
                self.on_busy((d[1] << 8) | d[2])
