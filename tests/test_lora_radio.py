"""The LoRa radio adapter (firmware/pollen_io/lora_radio.py) against a fake of
micropython-lib's async modem and of machine.Pin (tests/fakes)."""
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pollen.airtime import PRESETS, preset_time_on_air_us
from pollen.settings import Settings, ConfigError
from pollen_io.lora_radio import LoraRadio, lora_config, driver_kwargs, board_modem
from fakes.fake_lora_modem import FakeLoraModem, FakePins, BW_HZ

ROOT = Path(__file__).resolve().parent.parent
KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def settings(region="EU868", preset="LongFast"):
    return Settings({"node_id": "0a0b0c01", "network_key": KEY_HEX, "region": region, "preset": preset})


def sx1262_board(**radio):
    # shaped like a Heltec WiFi LoRa 32 V3 profile
    r = {"chip": "sx1262", "spi": {"id": 1, "sck": 9, "mosi": 10, "miso": 11, "baudrate": 8000000},
         "cs": 8, "reset": 12, "busy": 13, "dio0": None, "dio1": 14, "tcxo_mv": 1800,
         "dio2_rf_switch": True, "rxen": None, "txen": None, "max_power_dbm": 22}
    r.update(radio)
    return {"mcu": "esp32s3", "radio": r, "power_enable": [{"pin": 36, "value": 0, "what": "Vext"}],
            "led": {"pin": 35, "active_high": True}}


def sx1276_board(**radio):
    # shaped like a TTGO LoRa32 v2.1 profile
    r = {"chip": "sx1276", "spi": {"id": 1, "sck": 5, "mosi": 27, "miso": 19}, "cs": 18, "reset": 23,
         "busy": None, "dio0": 26, "dio1": 33, "tcxo_mv": None, "dio2_rf_switch": False,
         "rxen": None, "txen": None, "max_power_dbm": 20}
    r.update(radio)
    return {"mcu": "esp32", "radio": r, "power_enable": [], "led": {"pin": 25, "active_high": True}}


def make(board=None, radio_cfg=None, s=None, modem=None, pins=None):
    board = board or sx1262_board()
    modem = modem or FakeLoraModem(board["radio"]["chip"])
    pins = pins or FakePins()
    seen = []

    def factory(board_radio, pin):
        seen.append((board_radio, pin))
        return modem

    r = LoraRadio(s or settings(), radio_cfg or {"kind": "lora"}, board, modem_factory=factory,
                  pin_factory=pins, i2c_factory=_FakeI2C)
    assert seen == [(board["radio"], pins)]
    return r, modem, pins


def run(coro):
    return asyncio.run(coro)


# ---- lora_cfg from preset, region, config and board -------------------------------

# (region, preset, board max dBm, requested dBm) -> (freq_khz, bw, output_power)
CFG_CASES = [
    ("EU868", "LongFast", 22, None, 868100, "250", 14),    # region limit 14 dBm
    ("EU868-10", "LongFast", 22, None, 869525, "250", 22),  # board limit below the region's 27
    ("EU433", "LongSlow", 22, None, 433175, "125", 10),
    ("US915", "MediumFast", 22, None, 915000, "250", 22),
    ("US915", "MediumFast", 20, None, 915000, "250", 20),
    ("US915", "ShortFast", 22, 10, 915000, "250", 10),       # asked for less
    ("EU868", "LongModerate", 22, 20, 868100, "125", 14),   # asked for more than the region allows
    ("AS923", "MediumSlow", 22, None, 923200, "250", 16),
]


@pytest.mark.parametrize("region,preset,board_max,asked,freq_khz,bw,power", CFG_CASES)
def test_lora_cfg_from_region_and_preset(region, preset, board_max, asked, freq_khz, bw, power):
    radio_cfg = {"kind": "lora"} if asked is None else {"kind": "lora", "power_dbm": asked}
    board = sx1262_board(max_power_dbm=board_max)
    cfg = lora_config(PRESETS[preset], region, radio_cfg, board["radio"])
    sf, bw_hz, cr, preamble = PRESETS[preset]
    assert cfg["freq_khz"] == freq_khz
    assert cfg["output_power"] == power
    assert (cfg["sf"], cfg["bw"], cfg["coding_rate"], cfg["preamble_len"]) == (sf, bw, cr, preamble)
    assert cfg["syncword"] == 0x12 and cfg["crc_en"] is True and cfg["implicit_header"] is False


def test_driver_units_bandwidth_in_khz_text_and_coding_rate_denominator():
    # The driver looks bandwidth up as str(bw) in kHz ("62.5", "125", ...) and
    # takes the coding rate as N of 4/N; a custom preset exercises 62.5 kHz.
    s = Settings({"node_id": "0a0b0c01", "network_key": KEY_HEX,
                  "preset": {"sf": 9, "bw_hz": 62500, "cr": 7, "preamble": 10}})
    cfg = lora_config(s.preset, s.region, {}, sx1262_board()["radio"])
    assert cfg["bw"] == "62.5" and cfg["coding_rate"] == 7 and cfg["preamble_len"] == 10
    for name, preset in PRESETS.items():
        cfg = lora_config(preset, "EU868-10", {}, sx1262_board()["radio"])
        assert BW_HZ[cfg["bw"]] == preset[1], name


@pytest.mark.parametrize("board", [sx1262_board(), sx1276_board()], ids=["sx1262", "sx1276"])
def test_the_configured_modem_times_frames_as_the_core_does(board):
    # what the modem is told gives the same time on air as the core's
    # airtime budget assumes (both follow Semtech's formula)
    for name, preset in PRESETS.items():
        modem = FakeLoraModem(board["radio"]["chip"])
        modem.configure(lora_config(preset, "EU868-10", {}, board["radio"]))
        for n in (24, 90, 255):
            assert modem.get_time_on_air_us(n) == preset_time_on_air_us(n, preset), (name, n)


def test_chip_specific_keys():
    hi = lora_config(PRESETS["LongFast"], "EU868", {}, sx1262_board()["radio"])
    lo = lora_config(PRESETS["LongFast"], "EU868", {}, sx1276_board()["radio"])
    assert hi["rx_boost"] is True and "tx_ant" not in hi
    # SX127x boards wire PA_BOOST; the driver's rx_boost needs a key it does not document
    assert lo["tx_ant"] == "PA_BOOST" and "rx_boost" not in lo
    assert lora_config(PRESETS["LongFast"], "EU868", {}, sx1276_board(tx_ant="RFO")["radio"])["tx_ant"] == "RFO"
    # the fake refuses keys its chip's driver does not read
    FakeLoraModem("sx1262").configure(hi)
    FakeLoraModem("sx1276").configure(lo)
    with pytest.raises(KeyError):
        FakeLoraModem("sx1276").configure(dict(lo, rx_boost=True))


def test_config_overrides_frequency_and_sync_word():
    cfg = lora_config(PRESETS["LongFast"], "EU868", {"freq_khz": 869000, "sync_word": 0x2B},
                      sx1262_board()["radio"])
    assert cfg["freq_khz"] == 869000 and cfg["syncword"] == 0x2B


@pytest.mark.parametrize("radio_cfg,field", [
    ({"power_dbm": "14"}, "radio.power_dbm"),
    ({"power_dbm": True}, "radio.power_dbm"),
    ({"sync_word": 0x1424}, "radio.sync_word"),
    ({"freq_khz": 868.1}, "radio.freq_khz"),
    ({"freq_khz": 2400000}, "radio.freq_khz"),
])
def test_bad_radio_config_names_the_field(radio_cfg, field):
    with pytest.raises(ConfigError, match="'%s'" % field):
        lora_config(PRESETS["LongFast"], "EU868", radio_cfg, sx1262_board()["radio"])


def test_sf6_is_refused():
    with pytest.raises(ConfigError, match="sf 7..12"):
        lora_config((6, 125000, 5, 16), "EU868", {}, sx1262_board()["radio"])


def test_unknown_chip_is_refused():
    board = sx1262_board(chip="cc1101")
    with pytest.raises(ConfigError, match="'radio.chip'"):
        LoraRadio(settings(), {"kind": "lora"}, board, modem_factory=lambda rb, pin: FakeLoraModem(),
                  pin_factory=FakePins())


# ---- board wiring ---------------------------------------------------------------------

def test_sx1262_driver_arguments():
    pins = FakePins()
    kw = driver_kwargs(sx1262_board()["radio"], pins)
    assert sorted(kw) == ["busy", "cs", "dio1", "dio2_rf_sw", "dio3_tcxo_millivolts", "reset"]
    assert (kw["cs"].id, kw["busy"].id, kw["dio1"].id, kw["reset"].id) == (8, 13, 14, 12)
    assert kw["dio2_rf_sw"] is True and kw["dio3_tcxo_millivolts"] == 1800
    with pytest.raises(ConfigError, match="'radio.busy'"):
        driver_kwargs(sx1262_board(busy=None)["radio"], pins)


def test_sx1276_driver_arguments():
    kw = driver_kwargs(sx1276_board()["radio"], FakePins())
    assert sorted(kw) == ["cs", "dio0", "dio1", "reset"]
    assert (kw["cs"].id, kw["dio0"].id, kw["dio1"].id, kw["reset"].id) == (18, 26, 33, 23)


def test_rxen_txen_become_an_antenna_switch():
    pins = FakePins()
    kw = driver_kwargs(sx1262_board(rxen=4, txen=5, dio2_rf_switch=False)["radio"], pins)
    sw = kw["ant_sw"]
    sw.rx()
    sw.tx(True)
    sw.idle()
    assert pins.made[4].levels == [0, 1, 0, 0]
    assert pins.made[5].levels == [0, 0, 1, 0]
    assert kw["dio2_rf_sw"] is False


def test_without_the_driver_the_error_says_what_to_install():
    with pytest.raises(ConfigError, match="mip install lora-async lora-sx126x"):
        board_modem(sx1262_board()["radio"], FakePins())


# the hardware boards' profiles (the virtual board's has no LoRa radio)
BOARD_FILES = sorted(p for p in (ROOT / "hardware" / "boards").glob("*.json") if p.stem != "virtual")


@pytest.mark.skipif(not BOARD_FILES, reason="no board profiles in hardware/boards")
@pytest.mark.parametrize("path", BOARD_FILES, ids=[p.stem for p in BOARD_FILES])
def test_every_board_profile_starts_the_adapter(path):
    import json
    board = json.loads(path.read_text())
    pins = FakePins()
    r, modem, _ = make(board, pins=pins)
    driver_kwargs(board["radio"], pins)  # the real driver's arguments can be built too
    assert modem.cfg["output_power"] <= board["radio"]["max_power_dbm"]
    for p in board.get("power_enable") or ():
        assert pins.made[p["pin"]].levels == [p["value"]]


def test_power_rail_is_on_before_the_modem_is_made():
    pins = FakePins()
    modem = FakeLoraModem()
    order = []

    def factory(board_radio, pin):
        order.append(("modem", list(pins.made)))
        return modem

    LoraRadio(settings(), {"kind": "lora"}, sx1262_board(), modem_factory=factory, pin_factory=pins)
    assert order == [("modem", [36, 35])]  # Vext and the LED were set up first
    assert pins.made[36].levels == [0] and pins.made[36].mode == FakePins.OUT


def test_modem_is_configured_and_calibrated():
    r, modem, _ = make()
    assert modem.configure_calls == [r.lora_cfg]
    assert modem.calibrations == ["calibrate", "calibrate_image"]
    _, modem, _ = make(sx1276_board())
    assert modem.calibrations == ["calibrate"]  # SX127x calibrate() is its image calibration


def test_a_radio_that_does_not_answer_is_a_clear_error():
    def factory(board_radio, pin):
        raise RuntimeError("BUSY timeout", 8000)

    with pytest.raises(ConfigError, match="sx1262 did not start"):
        LoraRadio(settings(), {"kind": "lora"}, sx1262_board(), modem_factory=factory, pin_factory=FakePins())


# ---- transmit -------------------------------------------------------------------------

def test_frames_go_out_in_order_one_at_a_time():
    async def go():
        r, modem, _ = make(modem=FakeLoraModem(send_s=0.01))
        frames = [bytes([i]) * (20 + i) for i in range(5)]
        for f in frames:
            r.transmit(f)
        while len(modem.sent) < 5:
            await asyncio.sleep(0.005)
        return r, modem, frames

    r, modem, frames = run(go())
    assert modem.sent == frames
    assert modem.max_concurrent_sends == 1
    kinds = [k for k, _ in modem.log]
    assert kinds == ["tx start", "tx end"] * 5
    assert r.tx_frames == 5 and r.tx_dropped == 0 and r.tx_errors == 0


def test_a_full_queue_drops_new_frames():
    # as the emulated medium does: 8 frames wait, more are dropped
    async def go():
        r, modem, _ = make()
        for i in range(10):
            r.transmit(bytes([i]))
        while r.tx_frames + r.tx_dropped < 10:
            await asyncio.sleep(0.001)
        return r, modem

    r, modem = run(go())
    assert modem.sent == [bytes([i]) for i in range(8)]
    assert r.tx_dropped == 2


def test_a_failed_send_is_counted_and_the_next_frame_still_goes():
    async def go():
        r, modem, _ = make()
        modem.fail_next_send = RuntimeError("BUSY timeout")
        r.transmit(b"lost")
        r.transmit(b"sent")
        while len(modem.sent) < 1:
            await asyncio.sleep(0.001)
        return r, modem

    r, modem = run(go())
    assert modem.sent == [b"sent"] and r.tx_errors == 1 and r.tx_frames == 1


def test_frames_a_lora_packet_cannot_hold_are_refused():
    r, _, _ = make()
    with pytest.raises(ValueError):
        r.transmit(b"")
    with pytest.raises(ValueError):
        r.transmit(bytes(256))


def test_led_lights_while_sending():
    async def go():
        r, modem, pins = make(modem=FakeLoraModem(send_s=0.01))
        r.transmit(b"x" * 30)
        await asyncio.sleep(0.002)
        during = pins.made[35]()
        while not modem.sent:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0)
        return pins.made[35], during

    led, during = run(go())
    assert during == 1
    assert led.levels == [0, 1, 0]


# ---- receive --------------------------------------------------------------------------

def test_receive_returns_frame_rssi_and_snr():
    async def go():
        r, modem, _ = make()
        modem.inject(b"\x11hello", rssi_dbm=-97, snr_db=-7.25)
        return await asyncio.wait_for(r.receive(), 1)

    frame, rssi, snr = run(go())
    assert frame == b"\x11hello" and type(frame) is bytes
    assert rssi == -97 and snr == -7.25


def test_bad_crc_packets_are_dropped_and_counted():
    async def go(rx_crc_error):
        r, modem, _ = make()
        modem.rx_crc_error = rx_crc_error  # with it set the driver hands bad packets over, flagged
        modem.inject(b"garbled", crc_ok=False)
        modem.inject(b"good")
        got = await asyncio.wait_for(r.receive(), 1)
        return got[0], r

    for flag in (False, True):
        frame, r = run(go(flag))
        assert frame == b"good"
        assert r.crc_errors == 1 and r.rx_frames == 1
        assert r.counters()["crc_errors"] == 1


def test_receiving_resumes_after_the_modem_was_stopped():
    async def go():
        r, modem, _ = make()
        modem.inject(b"one")
        first = await asyncio.wait_for(r.receive(), 1)
        modem.standby()
        modem.inject(b"lost while stopped")  # not listening: a real radio hears nothing
        modem._incoming.clear()
        task = asyncio.create_task(r.receive())
        await asyncio.sleep(0.01)
        modem.inject(b"two")
        second = await asyncio.wait_for(task, 1)
        return first[0], second[0]

    assert run(go()) == (b"one", b"two")


def test_led_flashes_on_receive():
    async def go():
        board = sx1262_board()
        board["led"]["active_high"] = False  # lit by pulling the pin low
        r, modem, pins = make(board)
        modem.inject(b"ping")
        await asyncio.wait_for(r.receive(), 1)
        lit = pins.made[35]()
        await asyncio.sleep(0.06)
        return pins.made[35], lit

    led, lit = run(go())
    assert lit == 0 and led.levels == [1, 0, 1]


def test_a_board_without_led_works():
    async def go():
        board = sx1262_board()
        board["led"] = None
        r, modem, _ = make(board)
        r.transmit(b"x")
        modem.inject(b"y")
        got = await asyncio.wait_for(r.receive(), 1)
        while not modem.sent:
            await asyncio.sleep(0.001)
        return got[0], modem.sent

    assert run(go()) == (b"y", [b"x"])


# ---- the same under MicroPython --------------------------------------------------------

MP_SCRIPT = """
import asyncio
from pollen.settings import Settings
from pollen_io.lora_radio import LoraRadio
from fakes.fake_lora_modem import FakeLoraModem, FakePins

board = {"radio": {"chip": "sx1262", "spi": {"id": 1, "sck": 9, "mosi": 10, "miso": 11},
                   "cs": 8, "reset": 12, "busy": 13, "dio1": 14, "tcxo_mv": 1800,
                   "dio2_rf_switch": True, "max_power_dbm": 22},
         "power_enable": [{"pin": 36, "value": 0}], "led": {"pin": 35, "active_high": True}}
s = Settings({"node_id": "0a0b0c01", "network_key": "%s", "region": "EU868"})
modem = FakeLoraModem("sx1262", send_s=0.01)
pins = FakePins()
r = LoraRadio(s, {"kind": "lora"}, board, modem_factory=lambda rb, pin: modem, pin_factory=pins)

async def main():
    for i in range(3):
        r.transmit(bytes([i]) * 10)
    modem.inject(b"bad", crc_ok=False)
    modem.inject(b"hello", -80, 5.5)
    frame, rssi, snr = await r.receive()
    while len(modem.sent) < 3:
        await asyncio.sleep(0.005)
    print(frame, rssi, snr, modem.sent, r.crc_errors, r.tx_frames, modem.max_concurrent_sends)
    print(r.lora_cfg["bw"], r.lora_cfg["freq_khz"], r.lora_cfg["output_power"], pins.made[35].levels)

asyncio.run(main())
""" % KEY_HEX


def test_adapter_runs_under_micropython():
    exe = Path(sys.executable).with_name("micropython")
    assert exe.exists(), "MicroPython unix port not found at %s" % exe
    env = dict(os.environ)
    env["MICROPYPATH"] = ".frozen:%s:%s" % (ROOT / "firmware", ROOT / "tests")
    r = subprocess.run([str(exe), "-X", "heapsize=256K", "-c", MP_SCRIPT], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "b'hello' -80 5.5 [b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00', " \
        "b'\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01', b'\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02\\x02'] 1 3 1", r.stdout
    cfg_and_led = lines[1].split(" ", 3)
    assert cfg_and_led[:3] == ["250", "868100", "14"], r.stdout
    assert cfg_and_led[3].startswith("[0, 1") and cfg_and_led[3].endswith(", 0]"), r.stdout  # off, lit, off


class _FakeI2C:
    # registers of an AXP192 as a previous firmware may have left them: LDO2 off
    def __init__(self, sda, scl):
        self.pins = (sda, scl)
        self.regs = {0x12: 0x4B & ~0x04, 0x28: 0x0C}

    def readfrom_mem(self, addr, reg, n):
        assert addr == 0x34
        return bytes((self.regs[reg],))

    def writeto_mem(self, addr, reg, data):
        assert addr == 0x34
        self.regs[reg] = data[0]


def test_t_beam_radio_rail_is_switched_on_through_the_axp192():
    from pollen_io.pmu import radio_rail_on

    made = []

    def factory(sda, scl):
        made.append(_FakeI2C(sda, scl))
        return made[-1]

    import json as _json
    from pathlib import Path as _Path

    board = _json.loads((_Path(__file__).parent.parent / "hardware" / "boards"
                         / "lilygo-t-beam-sx1276.json").read_text())
    assert radio_rail_on(board["pmu"], factory)
    (i2c,) = made
    assert i2c.pins == (21, 22)
    assert i2c.regs[0x12] & 0x04           # LDO2 on
    assert i2c.regs[0x12] & ~0x04 == 0x4B & ~0x04  # other outputs untouched
    assert i2c.regs[0x28] >> 4 == 0xF       # 3.3 V
    assert i2c.regs[0x28] & 0x0F == 0x0C    # LDO3 (GPS) untouched
    assert radio_rail_on(None, factory) is False
