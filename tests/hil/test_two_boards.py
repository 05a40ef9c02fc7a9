"""Hardware in the loop: two real boards, flashed and provisioned here, pass a
message and a broadcast over the air.

    pytest tests/hil --hil-port /dev/ttyUSB0 --hil-port /dev/ttyACM0 \
        --hil-board heltec-wifi-lora-32-v3 --hil-board rpi-pico-waveshare-sx1262

Both boards need MicroPython and the micropython-lib LoRa drivers
(mpremote mip install lora-sx126x lora-async, or lora-sx127x). Without ports
these tests are skipped."""
import json
import threading
import time

import pytest

from pollen_controller.board import provisioning as pv
from pollen_controller.board.build import build_bundle
from pollen_controller.board.transport import Board

NODE_IDS = (0x0000A101, 0x0000A102)


@pytest.fixture(scope="module")
def boards(request, tmp_path_factory):
    ports = request.config.getoption("--hil-port")
    if len(ports) < 2:
        pytest.skip("hardware-in-loop: needs two boards (pytest --hil-port A --hil-port B)")
    ids = request.config.getoption("--hil-board") or [None, None]
    net = pv.create_network("hil-test", "EU868", "ShortFast")
    d = tmp_path_factory.mktemp("hil")
    for i, (port, board_id) in enumerate(zip(ports[:2], ids)):
        bundle = d / f"bundle{i}"
        build_bundle(board_id, bundle)
        with Board(port) as b:
            pv.install_bundle(b, bundle)
            pv.provision(b, net, f"hil-{i}", NODE_IDS[i], {"kind": "lora"})
            b.reset()
    consoles = [_Console(p) for p in ports[:2]]
    for c in consoles:
        assert c.wait(lambda e: e.get("event") == "started", 20), f"{c.port} did not start"
    time.sleep(10)  # first beacons
    yield consoles
    for c in consoles:
        c.close()


class _Console:
    def __init__(self, port):
        import serial

        self.port = port
        self.s = serial.Serial(port, 115200, timeout=0.2)
        self.events = []
        self.stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while not self.stop.is_set():
            buf += self.s.read(256)
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass

    def send(self, cmd):
        self.s.write((json.dumps(cmd) + "\n").encode())

    def wait(self, pred, timeout_s):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if any(pred(e) for e in self.events):
                return True
            time.sleep(0.1)
        return False

    def close(self):
        self.stop.set()
        self.s.close()


def test_a_message_goes_over_the_air_and_is_acknowledged(boards):
    a, b = boards
    a.send({"cmd": "send", "to": f"{NODE_IDS[1]:08x}", "text": "over the air"})
    assert b.wait(lambda e: e.get("event") == "received" and e.get("text") == "over the air", 60)
    assert a.wait(lambda e: e.get("event") == "delivered", 60)


def test_a_broadcast_goes_over_the_air(boards):
    a, b = boards
    b.send({"cmd": "send", "to": "all", "text": "hello everyone"})
    assert a.wait(lambda e: e.get("event") == "received" and e.get("text") == "hello everyone", 60)
