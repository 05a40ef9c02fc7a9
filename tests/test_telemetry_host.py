"""The host side of telemetry: a node's battery reading (pollen_io/battery.py,
with a fake ADC) and the decoding of `telemetry` console events
(controller/node/events.py)."""
from pollen.node import Node
from pollen.storage import MemoryStorage
from pollen_controller.node.events import decode_event
from pollen_io import battery

KEY_HEX = "00" * 32


class FakeAdc:
    def __init__(self, uv=None, u16=None):
        self.uv, self.u16 = uv, u16
        self.reads = 0

    def read_uv(self):
        self.reads += 1
        return self.uv


class FakeAdc16:
    def read_u16(self):
        return 65535 // 2


class FakePin:
    def __init__(self):
        self.values = []

    def value(self, v):
        self.values.append(v)


def test_battery_from_the_board_divider_and_switch():
    adc, pin = FakeAdc(uv=800000), FakePin()
    read = battery.reader({"pin": 1, "divider": 4.9, "enable_pin": 37, "enable_value": 0},
                          adc_factory=lambda p: adc, pin_factory=lambda p: pin)
    assert read() == 3920            # 0.8 V x 4.9
    assert pin.values == [0, 1]      # divider switched on to measure, off after
    rp2 = battery.reader({"pin": 29, "divider": 3}, adc_factory=lambda p: FakeAdc16(),
                         pin_factory=None)
    assert 4940 <= rp2() <= 4960     # half of 3.3 V x 3
    assert battery.reader(None) is None
    # Heltec V3: the switch's polarity depends on the revision: probed first
    heltec = {"pin": 1, "divider": 4.9, "enable_pin": 37, "enable_value": None}
    for floats_high, enable in ((1, 0), (0, 1)):
        pin = FakePin()
        read = battery.reader(heltec, adc_factory=lambda p: adc, pin_factory=lambda p: pin,
                              read_pin=lambda p: floats_high)
        assert read() == 3920 and pin.values == [enable, 1 - enable]


def _node(name="hilltop"):
    n = Node({"node_id": 0x0A0B0C01, "name": name, "network_key": KEY_HEX,
              "preset": "ShortFast"}, MemoryStorage(), __import__("random"))
    n.start(0)
    return n


def test_a_telemetry_event_is_decoded_into_named_fields():
    n = _node()
    n.battery_mv = 3950
    n.neigh.heard(0x0A0B0C02, -97, 5.25, 1000)
    payload = n._status_payload(61000)
    ev = {"event": "telemetry", "id": "0a0b0c01", "hops": 2, "rssi_dbm": -90, "snr_db": 7,
          "data": payload.hex()}
    decode_event(ev)
    assert "data" not in ev and "malformed" not in ev
    assert ev["name"] == "hilltop" and ev["uptime_s"] == 61 and ev["battery_mv"] == 3950
    assert ev["hops"] == 2 and ev["rssi_dbm"] == -90   # the receiver's, not overwritten
    assert ev["neighbours"] == [{"id": "0a0b0c02", "rssi_dbm": -97, "snr_db": 5.25}]
    assert set(ev["counters"]) == {"rx", "tx", "relayed", "duplicates", "dropped", "auth_failed"}


def test_a_telemetry_event_that_does_not_decode_is_marked():
    for data in ("zz", "01", ""):
        ev = decode_event({"event": "telemetry", "id": "0000000c", "data": data})
        assert ev["malformed"] is True and ev["data"] == data
    other = {"event": "status", "data": "01"}
    assert decode_event(dict(other)) == other


def test_floats_a_node_writes_with_17_digits_read_as_meant():
    # the node's MicroPython prints round(999 / 10, 1) as 99.90000000000001
    from pollen_controller.node.events import parse_line

    ev = parse_line('{"event": "status", "duty_headroom_pct": 99.90000000000001, '
                    '"airtime_pct": 0.30000000000000004, "uptime_s": 12}')
    assert ev == {"event": "status", "duty_headroom_pct": 99.9, "airtime_pct": 0.3, "uptime_s": 12}
    assert repr(ev["duty_headroom_pct"]) == "99.9"
