# The "udp" radio: frames go to and come from the virtual radio medium that
# the controller runs on 127.0.0.1 (controller/emulation/medium.py documents the
# datagrams). The same small interface as the LoRa adapter:
#   radio.transmit(frame)              put a frame on the air now
#   await radio.receive() -> (frame, rssi_dbm, snr_db)
#   radio.on_busy = fn(airtime_ms)     called when another transmission starts
import socket
from pollen.wire import be32
from pollen._compat import const
from asyncio import core

_DATAGRAM_BYTES = const(3 + 255)  # "R", rssi, snr, frame (wire.MAX_FRAME_BYTES)


class UdpRadio:
    def __init__(self, node_id, host="127.0.0.1", port=47000):
        self.medium = socket.getaddrinfo(host, port)[0][-1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
        self.sock.setblocking(False)
        self.hello = b"H" + be32(node_id)
        self.sock.sendto(self.hello, self.medium)
        self.on_busy = None
        self._failed = False  # the last read failed for want of heap

    def transmit(self, frame):
        self.sock.sendto(b"T" + frame, self.medium)

    async def _readable(self):
        # Park until the socket has a datagram. Not StreamReader.read(): a
        # stream read fills its buffer from several datagrams at once.
        yield core._io_queue.queue_read(self.sock)

    async def receive(self):
        while True:
            try:
                d = self.sock.recv(_DATAGRAM_BYTES)  # exactly one datagram
            except OSError:  # nothing waiting (EAGAIN)
                await self._readable()
                continue
            except MemoryError:
                # no room in a full, fragmented heap. The read fails before
                # it takes the datagram (its buffer) or after (its bytes
                # object). Left waiting, a datagram failed again and again
                # (3,600 times a minute at 128K: a deaf node spinning its
                # CPU), so after a second failure in a row (the app collects
                # between) it is dropped: a 1-byte read takes it off the
                # socket, one frame lost, not every frame after it. Not after
                # the first: that one may have taken it, and the next
                # datagram is another frame
                if self._failed:
                    try:
                        self.sock.recv(1)
                    except OSError:  # (nothing waiting)
                        pass
                self._failed = not self._failed
                raise
            self._failed = False
            if d and len(d) > 3 and d[0] == 0x52:  # "R" rssi snr frame
                rssi = d[1] - 256 if d[1] > 127 else d[1]
                snr = d[2] - 256 if d[2] > 127 else d[2]
                return d[3:], rssi, snr / 4
            if d and len(d) == 3 and d[0] == 0x42 and self.on_busy:  # "B" airtime_ms
                self.on_busy((d[1] << 8) | d[2])
