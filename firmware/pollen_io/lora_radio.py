# The "lora" radio: frames go on the air through a Semtech SX126x or SX127x
# modem, driven by micropython-lib's LoRa driver (packages lora-async plus
# lora-sx126x or lora-sx127x, installed on the board with mip; not part of
# this repository). The same small interface as the UDP adapter:
#   radio.transmit(frame)              queue a frame; one task sends them in turn
#   await radio.receive() -> (frame, rssi_dbm, snr_db)
#   radio.on_busy = fn(airtime_ms)     never called yet: the driver offers no
#                                      channel activity detection (CAD)
# The modulation comes from the node's preset and region, the wiring from the
# board profile (board.json). docs/radio.md describes both.
import time
import asyncio
from pollen._compat import const
from pollen.region import REGIONS
from pollen.ids import ConfigError

_MAX_FRAME_BYTES = const(255)  # one LoRa packet: its length is one byte
_TX_QUEUE_FRAMES = const(8)    # waiting for the air; when full a new frame is dropped,
                               # as the emulated medium does (docs/emulation.md)
_FLASH_S = 0.03                # LED blink for a received frame
_RAIL_SETTLE_MS = const(20)    # after switching the radio's power rail on
_SYNC_PRIVATE = const(0x12)    # LoRa private-network sync word (0x1424 on SX126x)

# preset bandwidth (Hz) -> the driver's "bw": kHz, looked up as str(bw)
_BW_KHZ = {62500: "62.5", 125000: "125", 250000: "250", 500000: "500"}
# board chip -> micropython-lib async modem class
_DRIVERS = {
    "sx1261": "AsyncSX1261",
    "sx1262": "AsyncSX1262",
    "sx1276": "AsyncSX1276",
    "sx1278": "AsyncSX1278",
}


def _int(v, field, lo, hi, where="config"):
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError("%s field '%s': expected an integer %d..%d, got %r" % (where, field, lo, hi, v))
    return v


def _board_radio(board):
    rb = board.get("radio") if isinstance(board, dict) else None
    if not isinstance(rb, dict) or rb.get("chip") not in _DRIVERS:
        raise ConfigError("board field 'radio.chip': expected one of %s, got %r"
                          % (", ".join(sorted(_DRIVERS)), rb.get("chip") if isinstance(rb, dict) else rb))
    return rb


def lora_config(preset, region, radio_cfg, board_radio):
    # The driver's lora_cfg for this node: modulation from the preset,
    # frequency and power limit from the region, power also capped by the board.
    sf, bw_hz, cr, preamble = preset
    if sf < 7:
        # SF6 needs implicit headers on SX127x and differs between SX126x and SX127x
        raise ConfigError("config field 'preset': the LoRa radio needs sf 7..12, got sf %d" % sf)
    freq_hz, _, region_max_dbm, _ = REGIONS[region]
    freq_khz = _int(radio_cfg.get("freq_khz", freq_hz // 1000), "radio.freq_khz", 137000, 1020000)
    board_max = _int(board_radio.get("max_power_dbm", 14), "radio.max_power_dbm", -9, 30, "board")
    power = _int(radio_cfg.get("power_dbm", region_max_dbm), "radio.power_dbm", -9, 30)
    cfg = {
        "freq_khz": freq_khz,
        "sf": sf,
        "bw": _BW_KHZ[bw_hz],
        "coding_rate": cr,  # 5..8 means 4/5..4/8, as the preset has it
        "preamble_len": preamble,
        "output_power": min(power, region_max_dbm, board_max),
        "syncword": _int(radio_cfg.get("sync_word", _SYNC_PRIVATE), "radio.sync_word", 1, 0xFF),
        "implicit_header": False,
        "crc_en": True,
        "invert_iq_tx": False,
        "invert_iq_rx": False,
    }
    if board_radio["chip"].startswith("sx126"):
        cfg["rx_boost"] = True  # boosted LNA gain: a few dB of range for ~1 mA
    else:
        # SX127x boards wire the PA_BOOST pin almost always; on the other
        # pins (RFO) the signal is very weak
        cfg["tx_ant"] = board_radio.get("tx_ant") or "PA_BOOST"
    return cfg


class _AntennaSwitch:
    # RXEN/TXEN pins of modules whose RF switch is not driven by DIO2; the
    # driver calls tx/rx/idle around each operation.
    def __init__(self, rxen, txen):
        self.rxen = rxen
        self.txen = txen

    def _set(self, rx, tx):
        if self.rxen is not None:
            self.rxen(rx)
        if self.txen is not None:
            self.txen(tx)

    def tx(self, tx_arg):
        self._set(0, 1)

    def rx(self):
        self._set(1, 0)

    def idle(self):
        self._set(0, 0)


def driver_kwargs(board_radio, pin):
    # The modem constructor's pin arguments (all but spi) from the board
    # profile; pin is machine.Pin or a stand-in with the same constructor.
    rb = board_radio

    def opt(name):
        n = rb.get(name)
        return None if n is None else pin(n)

    if rb.get("cs") is None:
        raise ConfigError("board field 'radio.cs': expected a pin number, got None")
    kw = {"cs": pin(rb["cs"]), "dio1": opt("dio1"), "reset": opt("reset")}
    if rb["chip"].startswith("sx126"):
        if rb.get("busy") is None:
            raise ConfigError("board field 'radio.busy': expected a pin number (SX126x needs BUSY), got None")
        kw["busy"] = pin(rb["busy"])
        kw["dio2_rf_sw"] = bool(rb.get("dio2_rf_switch", True))
        kw["dio3_tcxo_millivolts"] = rb.get("tcxo_mv")
    else:
        kw["dio0"] = opt("dio0")
    if rb.get("rxen") is not None or rb.get("txen") is not None:
        kw["ant_sw"] = _AntennaSwitch(
            None if rb.get("rxen") is None else pin(rb["rxen"], pin.OUT, value=0),
            None if rb.get("txen") is None else pin(rb["txen"], pin.OUT, value=0))
    return kw


def board_modem(board_radio, pin):
    # The real modem: micropython-lib's async driver on the board's SPI bus.
    try:
        import lora
        cls = getattr(lora, _DRIVERS[board_radio["chip"]])
    except (ImportError, AttributeError):
        pkg = "lora-sx126x" if board_radio["chip"].startswith("sx126") else "lora-sx127x"
        raise ConfigError("config field 'radio': kind 'lora' needs micropython-lib's LoRa driver on the board"
                          " (mpremote mip install lora-async %s)" % pkg)
    from machine import SPI
    s = board_radio["spi"]
    spi = SPI(s["id"], baudrate=s.get("baudrate", 2000000), polarity=0, phase=0,
              sck=pin(s["sck"]), mosi=pin(s["mosi"]), miso=pin(s["miso"]))
    return cls(spi, **driver_kwargs(board_radio, pin))


def _sleep_ms(ms):
    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)
    else:  # CPython, in tests
        time.sleep(ms / 1000)


class LoraRadio:
    def __init__(self, settings, radio_cfg, board, modem_factory=None, pin_factory=None,
                 i2c_factory=None):
        rb = _board_radio(board)
        self.lora_cfg = lora_config(settings.preset, settings.region, radio_cfg, rb)
        if pin_factory is None:
            try:
                from machine import Pin as pin_factory
            except ImportError:  # the unix port: no pins, no radio
                raise ConfigError("config field 'radio': kind 'lora' needs a board with machine.Pin;"
                                  " use kind 'udp' here")
        # the radio's power rail first: the driver talks to the chip at once
        self._power = []
        for p in board.get("power_enable") or ():
            self._power.append(pin_factory(p["pin"], pin_factory.OUT, value=p.get("value", 1)))
        if board.get("pmu"):
            from pollen_io.pmu import radio_rail_on
            try:
                radio_rail_on(board["pmu"], i2c_factory)
            except (OSError, ValueError) as e:
                raise ConfigError("board 'pmu': cannot switch the radio rail on (%s)" % e)
            self._power.append(board["pmu"])
        if self._power:
            _sleep_ms(_RAIL_SETTLE_MS)
        led = board.get("led")
        self._led = None
        if led:
            self._led_on = 1 if led.get("active_high", True) else 0
            self._led = pin_factory(led["pin"], pin_factory.OUT, value=1 - self._led_on)
        try:
            self.modem = (modem_factory or board_modem)(rb, pin_factory)
            self.modem.configure(self.lora_cfg)
            # Image calibration for the band in use improves receive
            # sensitivity; SX127x calibrate() is image calibration itself.
            self.modem.calibrate()
            if rb["chip"].startswith("sx126"):
                try:
                    self.modem.calibrate_image()
                except ValueError:  # a frequency outside the bands Semtech lists
                    pass
        except (RuntimeError, OSError) as e:
            raise ConfigError("board field 'radio': the %s did not start (%s); check its pins and tcxo_mv"
                              % (rb["chip"], e))
        self.on_busy = None
        self._queue = []
        self._wake = asyncio.Event()
        self._sender = None
        self._sending = False
        self._rx = None
        self._flash_task = None
        self.tx_frames = 0    # sent
        self.tx_dropped = 0   # the queue was full
        self.tx_errors = 0    # the driver failed or aborted the send
        self.rx_frames = 0    # delivered to the core

    @property
    def crc_errors(self):
        # Packets received with a bad CRC or header. The driver counts and
        # drops them itself (unless modem.rx_crc_error is set).
        return self.modem.crc_errors

    def counters(self):
        return {"tx_frames": self.tx_frames, "tx_dropped": self.tx_dropped, "tx_errors": self.tx_errors,
                "rx_frames": self.rx_frames, "crc_errors": self.crc_errors}

    def _light(self, on):
        if self._led is not None:
            self._led(self._led_on if on else 1 - self._led_on)

    # ---- transmit -----------------------------------------------------------

    def transmit(self, frame):
        if not 0 < len(frame) <= _MAX_FRAME_BYTES:
            raise ValueError("frame of %d bytes: a LoRa packet holds 1..255" % len(frame))
        if len(self._queue) >= _TX_QUEUE_FRAMES:
            self.tx_dropped += 1
            return
        self._queue.append(frame)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_loop())
        self._wake.set()

    async def _send_loop(self):
        # The only caller of modem.send(): one frame on the air at a time. The
        # driver pauses receiving while it sends and resumes afterwards.
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            frame = self._queue.pop(0)
            self._sending = True
            self._light(True)
            try:
                done = await self.modem.send(frame)
            except Exception:  # SPI or chip trouble: this frame is lost, the next may go
                done = None
            self._sending = False
            self._light(False)
            if done is None or done is False:  # False: aborted by standby()/sleep()
                self.tx_errors += 1
            else:
                self.tx_frames += 1

    # ---- receive ------------------------------------------------------------

    async def receive(self):
        while True:
            if self._rx is None:
                # continuous receive: the modem keeps listening between packets
                self._rx = self.modem.recv_continuous()
            try:
                pkt = await self._rx.__anext__()
            except StopAsyncIteration:  # the modem was put in standby or sleep
                self._rx = None
                await asyncio.sleep(0)
                continue
            # Only seen if modem.rx_crc_error is set; the driver counted it.
            if getattr(pkt, "crc_error", False) or not getattr(pkt, "valid_crc", True):
                continue
            self.rx_frames += 1
            self._flash()
            # SNR comes in units of dB * 4
            return bytes(pkt), pkt.rssi, pkt.snr / 4

    def _flash(self):
        if self._led is None:
            return
        self._light(True)
        if self._flash_task is None:
            self._flash_task = asyncio.create_task(self._flash_off())

    async def _flash_off(self):
        await asyncio.sleep(_FLASH_S)
        self._flash_task = None
        if not self._sending:
            self._light(False)
