# Stand-ins for the board side of the LoRa adapter: micropython-lib's async
# LoRa modem (lora.AsyncSX1262 / lora.AsyncSX1276) and machine.Pin. They
# mirror the public API and behaviour the adapter relies on, as read from
# micropython-lib (micropython/lora: README.md, lora/modem.py,
# lora-async/lora/async_modem.py, lora-sx126x/lora/sx126x.py,
# lora-sx127x/lora/sx127x.py):
#   configure(lora_cfg)      keys left out keep their value; refused while receiving
#   await send(buf)          -> time.ticks_ms() when done, False if aborted
#   recv_continuous()        async iterator of RxPacket until standby()/sleep()
#   await recv(timeout_ms)   one RxPacket, or None on timeout
#   RxPacket                 a bytearray with .rssi (dBm), .snr (dB * 4),
#                            .ticks_ms, .valid_crc, and .crc_error set by the driver
#   crc_errors, rx_crc_error packets failing CRC/header checks are counted and
#                            dropped unless rx_crc_error is True
# Stricter than the driver where that catches our mistakes: unknown lora_cfg
# keys are refused (the driver ignores them silently), as are two sends at once.
# Runs under CPython and the MicroPython unix port.
import asyncio

try:
    from time import ticks_ms
except ImportError:  # CPython
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000) & 0x3FFFFFFF

# driver bandwidth keys (str of the value in kHz) -> Hz, as both drivers map them
BW_HZ = {"7.8": 7800, "10.4": 10400, "15.6": 15600, "20.8": 20800, "31.25": 31250,
         "41.7": 41700, "62.5": 62500, "125": 125000, "250": 250000, "500": 500000}
_COMMON_KEYS = ("freq_khz", "sf", "bw", "coding_rate", "preamble_len", "output_power", "syncword",
                "implicit_header", "crc_en", "invert_iq_tx", "invert_iq_rx", "rx_boost", "pa_ramp_us")
_SX127X_KEYS = ("tx_ant", "auto_image_cal", "lna_gain", "lna_boost_hf")


class RxPacket(bytearray):
    # as lora.RxPacket: the payload, plus metadata attributes
    def __init__(self, payload, ticks_ms=None, snr=None, rssi=None, valid_crc=True):
        super().__init__(payload)
        self.ticks_ms = ticks_ms
        self.snr = snr
        self.rssi = rssi
        self.valid_crc = valid_crc


class FakeLoraModem:
    def __init__(self, chip="sx1262", send_s=0.0):
        self.chip = chip
        self.send_s = send_s          # how long a send keeps the "air" busy
        self.cfg = {}                 # everything configured so far, merged
        self.configure_calls = []     # each lora_cfg as passed
        self.calibrations = []        # "calibrate" / "calibrate_image", in order
        self.sent = []                # payloads as bytes, in the order they went out
        self.log = []                 # ("tx start" | "tx end" | "rx", bytes)
        self.crc_errors = 0
        self.rx_crc_error = False
        self.missed = 0               # injected while sending: a half-duplex radio hears nothing
        self.fail_next_send = None    # an exception the next send() raises
        self.max_concurrent_sends = 0
        self._sending = 0
        self._rx = False
        self._incoming = []           # (RxPacket, crc_ok)
        self._arrived = asyncio.Event()

    # ---- configuration --------------------------------------------------------

    def configure(self, lora_cfg):
        if self._rx:
            raise RuntimeError("Receiving")
        known = _COMMON_KEYS + (_SX127X_KEYS if self.chip.startswith("sx127") else ())
        for k in lora_cfg:
            if k not in known:
                raise KeyError("lora_cfg key %r is not one the %s driver reads" % (k, self.chip))
        c = dict(self.cfg)
        c.update(lora_cfg)
        if "bw" in lora_cfg:
            BW_HZ[str(lora_cfg["bw"])]  # the drivers index a table by str(bw): KeyError otherwise
        if "sf" in lora_cfg and not 6 <= lora_cfg["sf"] <= 12:
            raise ValueError("Invalid lora_cfg sf")
        if "coding_rate" in lora_cfg and not 5 <= lora_cfg["coding_rate"] <= 8:
            raise ValueError("Invalid lora_cfg coding_rate")
        if self.chip.startswith("sx127"):
            if c.get("sf") == 6 and not c.get("implicit_header"):
                raise ValueError("Invalid lora_cfg SF6 requires implicit_header mode")
            if "rx_boost" in lora_cfg:
                lora_cfg["lna_boost_hf"]  # the SX127x driver reads this key when rx_boost is set
        self.cfg = c
        self.configure_calls.append(dict(lora_cfg))

    def calibrate(self):
        self.calibrations.append("calibrate")

    def calibrate_image(self):
        self.calibrations.append("calibrate_image")

    def get_time_on_air_us(self, payload_len):
        from pollen.airtime import time_on_air_us
        c = self.cfg
        return time_on_air_us(payload_len, c.get("sf", 7), BW_HZ[str(c.get("bw", "125"))],
                              c.get("coding_rate", 5), c.get("preamble_len", 12))

    # ---- send -------------------------------------------------------------------

    async def send(self, packet, tx_at_ms=None):
        if len(packet) > 255:
            raise ValueError("packet too long")
        self._sending += 1
        self.max_concurrent_sends = max(self.max_concurrent_sends, self._sending)
        try:
            if self.fail_next_send is not None:
                e, self.fail_next_send = self.fail_next_send, None
                raise e
            self.log.append(("tx start", bytes(packet)))
            await asyncio.sleep(self.send_s)
            self.sent.append(bytes(packet))
            self.log.append(("tx end", bytes(packet)))
            return ticks_ms()
        finally:
            self._sending -= 1

    # ---- receive ----------------------------------------------------------------

    def inject(self, payload, rssi_dbm=-90, snr_db=6.0, crc_ok=True):
        # A packet arrives over the air (the test's side of the fake).
        if self._sending:
            self.missed += 1
            return
        pkt = RxPacket(payload, ticks_ms(), int(snr_db * 4), rssi_dbm)
        self._incoming.append((pkt, crc_ok))
        self._arrived.set()

    async def _next(self, timeout_s=None):
        # As poll_recv(): a packet failing its check is counted, and dropped
        # unless rx_crc_error asks for it (then .crc_error is True).
        while self._rx:
            while self._incoming:
                pkt, ok = self._incoming.pop(0)
                if not ok:
                    self.crc_errors += 1
                    if not self.rx_crc_error:
                        continue
                pkt.crc_error = not ok
                self.log.append(("rx", bytes(pkt)))
                return pkt
            self._arrived.clear()
            if timeout_s is None:
                await self._arrived.wait()
            else:
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout_s)
                except asyncio.TimeoutError:
                    return None
        return None

    def recv_continuous(self, rx_length=0xFF, rx_packet=None):
        self._rx = True
        return _ContinuousReceiver(self)

    async def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        self._rx = True
        try:
            return await self._next(None if timeout_ms is None else timeout_ms / 1000)
        finally:
            self._rx = False

    def standby(self):
        # aborts receiving: a blocked recv returns None, recv_continuous stops
        self._rx = False
        self._arrived.set()

    def sleep(self):
        self.standby()


class _ContinuousReceiver:
    def __init__(self, modem):
        self.modem = modem

    def __aiter__(self):
        return self

    async def __anext__(self):
        pkt = await self.modem._next()
        if pkt is None:
            raise StopAsyncIteration
        return pkt


class FakePin:
    # machine.Pin as the adapter and the drivers use it: constructor, init(),
    # calling it to read or write, irq(). Every level written is kept.
    OUT = 1
    IN = 0

    def __init__(self, pin_id, mode=-1, pull=-1, value=None):
        self.id = pin_id
        self.mode = mode
        self.levels = [] if value is None else [value]

    def init(self, mode=-1, pull=-1, value=None):
        self.mode = mode
        if value is not None:
            self.levels.append(value)

    def __call__(self, v=None):
        if v is None:
            return self.levels[-1] if self.levels else 0
        self.levels.append(1 if v else 0)

    def value(self, v=None):
        return self(v)

    def irq(self, handler=None, trigger=None):
        self.handler = handler


class FakePins:
    # A pin factory with machine.Pin's constructor that remembers each pin by number.
    OUT = FakePin.OUT
    IN = FakePin.IN

    def __init__(self):
        self.made = {}

    def __call__(self, pin_id, mode=-1, pull=-1, value=None):
        p = FakePin(pin_id, mode, pull, value)
        self.made[pin_id] = p
        return p
