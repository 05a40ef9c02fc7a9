"""Board profiles: the pins, radio and flashing of each supported board.

One plain JSON file per board in hardware/boards/; `pollen flash` writes it onto
the board as board.json, where the radio adapter reads it with MicroPython's
json. Loading checks every field and raises BoardError naming the file, the
field and what was expected. A Board keeps each section as the dict the board
itself reads (optional keys filled with None); hardware/README.md describes them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pollen_controller
from pollen_controller.errors import BoardError

BOARD_DIR = Path(pollen_controller.__file__).resolve().parent.parent / "hardware" / "boards"


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    mcu: str                  # "esp32", "esp32s3" or "rp2040"
    micropython: dict         # port, board, variant, mpy_arch, min_version
    flash: dict               # method "esptool" (chip, offset, baud), "uf2" (drive_label)
                              # or "none" (the virtual board: no image to write)
    radio: dict | None        # chip, spi {id, sck, mosi, miso, baudrate}, cs, reset, busy, ...
                              # (None: the virtual board, whose radio is UDP)
    power_enable: list        # [{pin, value, what}], set before the radio is touched
    led: dict | None          # {pin, active_high}
    battery_adc: dict | None  # {pin, divider, enable_pin, enable_value}
    pmu: dict | None          # {chip, sda, scl, address, irq, radio_rail}: a radio fed by a PMU
    notes: str
    sources: list
    pins: dict = field(repr=False)                 # every GPIO used, by field: {"radio.cs": 8}
    path: Path = field(compare=False)
    raw: dict = field(repr=False, compare=False)   # the file as read: what goes onto the board


def bands_text(bands) -> str:
    """[[863, 928]] -> '863-928 MHz'; several ranges joined with ' or '."""
    return " or ".join(f"{lo:g}-{hi:g}" for lo, hi in bands) + " MHz"


def in_bands(freq_hz: int, bands) -> bool:
    return any(lo * 1e6 <= freq_hz <= hi * 1e6 for lo, hi in bands)


# the profile of `pollen virtual-board` (no LoRa radio: a UDP one to the
# virtual radio medium); not among the hardware boards board_ids() lists
VIRTUAL = "virtual"


def board_ids(virtual: bool = False) -> list[str]:
    """The hardware boards' profile ids (and the virtual board's with virtual=True)."""
    return sorted(p.stem for p in BOARD_DIR.glob("*.json") if virtual or p.stem != VIRTUAL)


def list_boards() -> list[Board]:
    return [load_board(BOARD_DIR / f"{i}.json") for i in board_ids()]


def load_board(id_or_path) -> Board:
    """A board id ("rak11310") is looked up in hardware/boards/; anything else is a path."""
    s = str(id_or_path)
    if isinstance(id_or_path, Path) or "/" in s or s.endswith(".json"):
        path = Path(s)
        if not path.exists():
            raise BoardError(f"board '{s}': no such file")
    else:
        path = BOARD_DIR / f"{s}.json"
        if not path.is_file():
            known = ", ".join(board_ids(virtual=True))
            raise BoardError(f"board '{s}': unknown board (known boards: {known})")
    from pollen_controller.bounded import read_small

    try:  # within a bound: /dev/zero named by mistake is not read into memory
        raw = json.loads(read_small(path, error=BoardError).decode("utf-8"))
    except json.JSONDecodeError as e:
        raise BoardError(f"board '{path.name}': not valid JSON at line {e.lineno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BoardError(f"board '{path.name}': cannot be read ({e})") from None
    return _Reader(path.name).board(raw, path)


# --- what each MCU and radio chip allows --------------------------------------

@dataclass(frozen=True)
class _Mcu:
    top: int                 # highest GPIO number
    missing: frozenset       # numbers in 0..top with no GPIO behind them
    flash: frozenset         # GPIOs wired to the SPI flash (or PSRAM) on every module
    input_only: frozenset
    adc: frozenset
    port: str                # MicroPython port
    mpy_arch: str
    spi_ids: tuple
    flash_method: str
    offset: str | None       # where esptool writes the MicroPython image


_MCUS = {
    "esp32": _Mcu(39, frozenset({20, 24, 28, 29, 30, 31}), frozenset(range(6, 12)),
                  frozenset(range(34, 40)),
                  frozenset({0, 2, 4, 12, 13, 14, 15, 25, 26, 27, *range(32, 40)}),
                  "esp32", "xtensawin", (1, 2), "esptool", "0x1000"),
    "esp32s3": _Mcu(48, frozenset(range(22, 26)), frozenset(range(26, 33)), frozenset(),
                    frozenset(range(1, 21)), "esp32", "xtensawin", (1, 2), "esptool", "0x0"),
    "rp2040": _Mcu(29, frozenset(), frozenset(), frozenset(), frozenset(range(26, 30)),
                   "rp2", "armv6m", (0, 1), "uf2", None),
    # the virtual board: no GPIOs, no radio chip, bytecode only, nothing to flash
    "unix": _Mcu(-1, frozenset(), frozenset(), frozenset(), frozenset(),
                 "unix", None, (), "none", None),
}
# chip: (highest SPI clock in Hz, highest output power in dBm; SX127x on PA_BOOST)
_CHIPS = {"sx1261": (16_000_000, 15), "sx1262": (16_000_000, 22),
          "sx1276": (10_000_000, 20), "sx1278": (10_000_000, 20)}
# what each chip can tune, in MHz (Semtech datasheets: SX1261/2 150-960; SX1276
# 137-1020 over its LF and HF ports; SX1278 LF only, 137-525). A board's own
# RF parts (filter, matching, antenna) narrow it to its radio.bands_mhz.
CHIP_RANGE_MHZ = {"sx1261": (150, 960), "sx1262": (150, 960), "sx1276": (137, 1020),
                  "sx1278": (137, 525)}
_TX_ANT = ("PA_BOOST", "RFO")                                 # the SX127x pin the antenna is on
_TCXO_MV = (1600, 1700, 1800, 2200, 2400, 2700, 3000, 3300)   # what an SX126x's DIO3 can supply
_RP2_SPI_ROLE = {"miso": 0, "sck": 2, "mosi": 3}   # RP2040 GPIO n: SPI(n >> 3 & 1), role n & 3
_BAUDS = (115200, 230400, 460800, 921600)
_UF2_LABEL = "RPI-RP2"
_MIN_MICROPYTHON = (1, 23, 0)
_PMU_CHIPS = ("axp192", "axp2101")
_NAME = re.compile(r"[A-Z0-9_]+\Z")
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)\Z")

_TOP = ("id", "name", "mcu", "micropython", "flash", "radio", "power_enable", "led",
        "battery_adc", "notes", "sources")
_RADIO = ("chip", "spi", "cs", "reset", "busy", "dio0", "dio1", "tcxo_mv", "dio2_rf_switch",
          "rxen", "txen", "max_power_dbm", "bands_mhz")


def _show(value) -> str:
    return json.dumps(value) if value is None or isinstance(value, bool) else repr(value)


def _join(path, key):
    return f"{path}.{key}" if path else key


class _Reader:
    """Checks one profile; every failure names the file and the field."""

    def __init__(self, src: str):
        self.src = src
        self.mcu: _Mcu | None = None   # known once the 'mcu' field is read
        self.mcu_name = ""
        self.used: dict[int, str] = {}   # GPIO -> the field that took it

    def fail(self, path, message):
        raise BoardError(f"board '{self.src}': field '{path}': {message}")

    def expect(self, path, expected, got):
        self.fail(path, f"expected {expected}, got {_show(got)}")

    # --- kinds of value ------------------------------------------------------

    def obj(self, path, value, keys, optional=()) -> dict:
        """A copy of an object with exactly these keys; optional ones default to None."""
        if not isinstance(value, dict):
            self.expect(path or "(top level)", "an object", value)
        for k in value:
            if k not in keys and k not in optional:
                known = ", ".join(keys + optional)
                self.fail(_join(path, k), f"unknown field (expected one of: {known})")
        for k in keys:
            if k not in value:
                self.fail(_join(path, k), "missing")
        return {**dict.fromkeys(optional), **value}

    def text(self, path, value):
        if not isinstance(value, str) or not value.strip():
            self.expect(path, "a non-empty string", value)
        return value

    def choice(self, path, value, choices):
        if value not in choices:
            self.expect(path, "one of " + ", ".join(map(_show, choices)), value)
        return value

    def integer(self, path, value, lo, hi):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.expect(path, f"an integer {lo}..{hi}", value)
        return value

    def boolean(self, path, value):
        if not isinstance(value, bool):
            self.expect(path, "true or false", value)
        return value

    def null(self, path, value, why):
        if value is not None:
            self.expect(path, f"null ({why})", value)
        return None

    def name(self, path, value, example, nullable=False):
        if value is None and nullable:
            return None
        if not (isinstance(value, str) and _NAME.match(value)):
            self.expect(path, ("null or " if nullable else "") + f"a name like {example!r}", value)
        return value

    def pin(self, path, value, *, output=False, adc=False, nullable=False):
        if value is None and nullable:
            return None
        m, mcu = self.mcu, self.mcu_name
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= m.top:
            self.expect(path, f"a GPIO number 0..{m.top}", value)
        if value in m.missing:
            self.fail(path, f"GPIO {value} does not exist on the {mcu}")
        if value in m.flash:
            self.fail(path, f"GPIO {value} is wired to the {mcu}'s SPI flash")
        if output and value in m.input_only:
            self.fail(path, f"GPIO {value} is input-only on the {mcu}, but this pin is driven")
        if adc and value not in m.adc:
            pins = ", ".join(map(str, sorted(m.adc)))
            self.fail(path, f"GPIO {value} has no ADC on the {mcu} (ADC pins: {pins})")
        if value in self.used:
            self.fail(path, f"GPIO {value} is already used by '{self.used[value]}'")
        self.used[value] = path
        return value

    # --- the sections of a profile -------------------------------------------

    def board(self, raw, path: Path) -> Board:
        d = self.obj("", raw, _TOP, optional=("pmu", "watchdog_ms"))
        wd = raw.get("watchdog_ms", 0)   # absent: the firmware's default, 8000
        if wd != 0 and (isinstance(wd, bool) or not isinstance(wd, int) or not 1000 <= wd <= 8388):
            # RP2040's watchdog counts to 8.3 s at most; ESP32's further
            self.expect("watchdog_ms", "0 (no watchdog) or an integer 1000..8388", wd)
        if self.text("id", d["id"]) != path.stem:
            self.expect("id", f"{path.stem!r} (the file name)", d["id"])
        self.text("name", d["name"])
        self.mcu_name = self.choice("mcu", d["mcu"], tuple(_MCUS))
        self.mcu = _MCUS[self.mcu_name]
        sections = dict(micropython=self.micropython(d["micropython"]),
                        flash=self.flash(d["flash"]), radio=self.radio(d["radio"]),
                        power_enable=self.power_enable(d["power_enable"]), led=self.led(d["led"]),
                        battery_adc=self.battery_adc(d["battery_adc"]), pmu=self.pmu(d["pmu"]))
        self.text("notes", d["notes"])
        sources = d["sources"]
        if not isinstance(sources, list) or not sources:
            self.expect("sources", "a non-empty list of where each pin number came from", sources)
        for i, s in enumerate(sources):
            self.text(f"sources[{i}]", s)
        pins = {where: gpio for gpio, where in self.used.items()}
        return Board(d["id"], d["name"], d["mcu"], notes=d["notes"], sources=list(sources),
                     pins=pins, path=path, raw=raw, **sections)

    def micropython(self, value) -> dict:
        p, m = "micropython", self.mcu
        d = self.obj(p, value, ("port", "board", "mpy_arch", "min_version"), optional=("variant",))
        self.choice(p + ".port", d["port"], (m.port,))
        self.name(p + ".board", d["board"], "ESP32_GENERIC_S3")
        self.name(p + ".variant", d["variant"], "SPIRAM", nullable=True)
        self.choice(p + ".mpy_arch", d["mpy_arch"], (m.mpy_arch,))
        v = d["min_version"]
        match = _VERSION.match(v) if isinstance(v, str) else None
        if not match or tuple(map(int, match.groups())) < _MIN_MICROPYTHON:
            least = ".".join(map(str, _MIN_MICROPYTHON))
            self.expect(p + ".min_version", f"a version 'X.Y.Z', at least {least}", v)
        return d

    def flash(self, value) -> dict:
        m = self.mcu
        if not isinstance(value, dict):
            self.expect("flash", "an object", value)
        if value.get("method") != m.flash_method:
            self.expect("flash.method", f"{m.flash_method!r} for an {self.mcu_name}",
                        value.get("method"))
        if m.flash_method == "none":
            return self.obj("flash", value, ("method",))
        if m.flash_method == "uf2":
            d = self.obj("flash", value, ("method", "drive_label"))
            self.choice("flash.drive_label", d["drive_label"], (_UF2_LABEL,))
            return d
        d = self.obj("flash", value, ("method", "chip", "offset", "baud"))
        self.choice("flash.chip", d["chip"], (self.mcu_name,))
        if d["offset"] != m.offset:
            self.expect("flash.offset", f"{m.offset!r} (where the {self.mcu_name} image starts)",
                        d["offset"])
        self.choice("flash.baud", d["baud"], _BAUDS)
        return d

    def radio(self, value) -> dict | None:
        if self.mcu_name == "unix":
            return self.null("radio", value, "the virtual board's radio is UDP")
        d = self.obj("radio", value, _RADIO, optional=("tx_ant",))
        chip = self.choice("radio.chip", d["chip"], tuple(_CHIPS))
        max_hz, max_dbm = _CHIPS[chip]
        d["spi"] = self.spi(d["spi"], max_hz)
        pin = self.pin
        pin("radio.cs", d["cs"], output=True)
        pin("radio.reset", d["reset"], output=True)
        if chip.startswith("sx126"):
            pin("radio.busy", d["busy"])
            self.null("radio.dio0", d["dio0"], f"the {chip} has no DIO0")
            pin("radio.dio1", d["dio1"])
            if d["tcxo_mv"] is not None:
                self.choice("radio.tcxo_mv", d["tcxo_mv"], _TCXO_MV)
            self.boolean("radio.dio2_rf_switch", d["dio2_rf_switch"])
            self.null("radio.tx_ant", d["tx_ant"], "only an sx127x has a choice of PA pins")
        else:
            self.null("radio.busy", d["busy"], f"the {chip} has no BUSY line")
            pin("radio.dio0", d["dio0"])
            pin("radio.dio1", d["dio1"], nullable=True)
            self.null("radio.tcxo_mv", d["tcxo_mv"], "set only for an sx126x TCXO on DIO3")
            if d["dio2_rf_switch"] is not False:
                self.expect("radio.dio2_rf_switch",
                            "false (only an sx126x drives a switch from DIO2)", d["dio2_rf_switch"])
            if d["tx_ant"] is not None:
                self.choice("radio.tx_ant", d["tx_ant"], _TX_ANT)
        pin("radio.rxen", d["rxen"], output=True, nullable=True)
        pin("radio.txen", d["txen"], output=True, nullable=True)
        self.integer("radio.max_power_dbm", d["max_power_dbm"], 1, max_dbm)
        self.bands(d["bands_mhz"], chip)
        return d

    def bands(self, value, chip):
        lo_chip, hi_chip = CHIP_RANGE_MHZ[chip]
        if not isinstance(value, list) or not value:
            self.expect("radio.bands_mhz", "a non-empty list of [low, high] MHz ranges the "
                        "board's RF parts are built for, e.g. [[863, 928]]", value)
        for i, band in enumerate(value):
            p = f"radio.bands_mhz[{i}]"
            if not (isinstance(band, list) and len(band) == 2
                    and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in band)
                    and band[0] < band[1]):
                self.expect(p, "[low, high] in MHz with low < high", band)
            if band[0] < lo_chip or band[1] > hi_chip:
                self.fail(p, f"{bands_text([band])} is outside what the {chip} can tune "
                             f"({lo_chip}-{hi_chip} MHz)")

    def spi(self, value, max_hz) -> dict:
        d = self.obj("radio.spi", value, ("id", "sck", "mosi", "miso", "baudrate"))
        bus = self.choice("radio.spi.id", d["id"], self.mcu.spi_ids)
        for k in ("sck", "mosi", "miso"):
            n = self.pin(f"radio.spi.{k}", d[k], output=(k != "miso"))
            if self.mcu_name == "rp2040" and (n >> 3 & 1, n & 3) != (bus, _RP2_SPI_ROLE[k]):
                ok = [g for g in range(30) if (g >> 3 & 1, g & 3) == (bus, _RP2_SPI_ROLE[k])]
                self.expect(f"radio.spi.{k}", f"an SPI{bus} {k.upper()} pin "
                            f"({', '.join(map(str, ok))})", n)
        self.integer("radio.spi.baudrate", d["baudrate"], 100_000, max_hz)
        return d

    def power_enable(self, value) -> list:
        if not isinstance(value, list):
            self.expect("power_enable", "a list (may be empty)", value)
        out = []
        for i, item in enumerate(value):
            p = f"power_enable[{i}]"
            d = self.obj(p, item, ("pin", "value", "what"))
            self.pin(p + ".pin", d["pin"], output=True)
            self.choice(p + ".value", d["value"], (0, 1))
            self.text(p + ".what", d["what"])
            out.append(d)
        return out

    def led(self, value) -> dict | None:
        if value is None:
            return None
        d = self.obj("led", value, ("pin", "active_high"))
        self.pin("led.pin", d["pin"], output=True)
        self.boolean("led.active_high", d["active_high"])
        return d

    def battery_adc(self, value) -> dict | None:
        if value is None:
            return None
        p = "battery_adc"
        d = self.obj(p, value, ("pin", "divider", "enable_pin"), optional=("enable_value",))
        self.pin(p + ".pin", d["pin"], adc=True)
        div = d["divider"]
        if isinstance(div, bool) or not isinstance(div, (int, float)) or not 1.0 <= div <= 20.0:
            self.expect(p + ".divider", "a number 1.0..20.0 (battery volts per ADC volt)", div)
        if self.pin(p + ".enable_pin", d["enable_pin"], output=True, nullable=True) is None:
            self.null(p + ".enable_value", d["enable_value"], "there is no enable_pin")
        elif d["enable_value"] is not None:   # null: the level depends on the revision (notes)
            self.choice(p + ".enable_value", d["enable_value"], (0, 1))
        return d

    def pmu(self, value) -> dict | None:
        if value is None:
            return None
        d = self.obj("pmu", value, ("chip", "sda", "scl", "address", "irq", "radio_rail"))
        self.choice("pmu.chip", d["chip"], _PMU_CHIPS)
        self.pin("pmu.sda", d["sda"], output=True)
        self.pin("pmu.scl", d["scl"], output=True)
        self.integer("pmu.address", d["address"], 0x08, 0x77)
        self.pin("pmu.irq", d["irq"], nullable=True)
        self.text("pmu.radio_rail", d["radio_rail"])
        return d
