"""Board profiles (hardware/boards/*.json) and their loader, pollen_controller.board.profiles."""
import json
import os
import subprocess
import sys

import pytest

from pollen_controller.board.profiles import BOARD_DIR, BoardError, board_ids, list_boards, load_board

REQUIRED = {"heltec-wifi-lora-32-v3", "lilygo-t3-s3", "lilygo-ttgo-lora32-v21",
            "lilygo-t-beam-sx1276", "lilygo-t-beam-sx1262", "rpi-pico-waveshare-sx1262",
            "rpi-picow-waveshare-sx1262", "rak11310"}

# The radio wiring of each board, as the sources in each profile give it. A change
# to a profile's pins must change this table too, on purpose.
#   board: (chip, spi id, sck, mosi, miso, cs, reset, busy, dio0, dio1)
RADIO_PINS = {
    "heltec-wifi-lora-32-v3": ("sx1262", 1, 9, 10, 11, 8, 12, 13, None, 14),
    "lilygo-t3-s3": ("sx1262", 1, 5, 6, 3, 7, 8, 34, None, 33),
    "lilygo-ttgo-lora32-v21": ("sx1276", 1, 5, 27, 19, 18, 23, None, 26, 33),
    "lilygo-t-beam-sx1276": ("sx1276", 1, 5, 27, 19, 18, 23, None, 26, 33),
    "lilygo-t-beam-sx1262": ("sx1262", 1, 5, 27, 19, 18, 23, 32, None, 33),
    "rpi-pico-waveshare-sx1262": ("sx1262", 1, 10, 11, 12, 3, 15, 2, None, 20),
    "rpi-picow-waveshare-sx1262": ("sx1262", 1, 10, 11, 12, 3, 15, 2, None, 20),
    "rak11310": ("sx1262", 1, 10, 11, 12, 13, 14, 15, None, 29),
}

# mcu: (MicroPython port, mpy arch, flash method, esptool offset)
PER_MCU = {
    "esp32": ("esp32", "xtensawin", "esptool", "0x1000"),
    "esp32s3": ("esp32", "xtensawin", "esptool", "0x0"),
    "rp2040": ("rp2", "armv6m", "uf2", None),
}


# --- the shipped profiles ------------------------------------------------------

def test_the_required_boards_are_there():
    assert REQUIRED <= set(board_ids())
    assert set(RADIO_PINS) == set(board_ids()), "every profile needs a row in RADIO_PINS"


@pytest.mark.parametrize("board_id", board_ids())
def test_every_profile_loads(board_id):
    b = load_board(board_id)
    assert b.id == board_id and b.path == BOARD_DIR / f"{board_id}.json"
    assert b.name and b.notes and b.sources
    assert load_board(b.path) == b           # by path as by id


def test_list_boards_returns_every_profile_sorted_by_id():
    assert [b.id for b in list_boards()] == sorted(REQUIRED | set(board_ids()))


@pytest.mark.parametrize("board_id", sorted(RADIO_PINS))
def test_radio_pins(board_id):
    r = load_board(board_id).radio
    spi = r["spi"]
    assert (r["chip"], spi["id"], spi["sck"], spi["mosi"], spi["miso"], r["cs"], r["reset"],
            r["busy"], r["dio0"], r["dio1"]) == RADIO_PINS[board_id]


@pytest.mark.parametrize("board_id", board_ids())
def test_micropython_image_and_flashing_follow_the_mcu(board_id):
    b = load_board(board_id)
    port, arch, method, offset = PER_MCU[b.mcu]
    assert (b.micropython["port"], b.micropython["mpy_arch"], b.flash["method"]) == (port, arch,
                                                                                      method)
    if method == "esptool":
        assert (b.flash["chip"], b.flash["offset"], b.flash["baud"]) == (b.mcu, offset, 460800)
    else:
        assert b.flash == {"method": "uf2", "drive_label": "RPI-RP2"}


@pytest.mark.parametrize("board_id", board_ids())
def test_sx1262_boards_name_tcxo_and_rf_switch_sx1276_boards_do_not(board_id):
    r = load_board(board_id).radio
    if r["chip"] == "sx1262":
        assert (r["tcxo_mv"], r["dio2_rf_switch"], r["max_power_dbm"], r["tx_ant"]) == (1800, True,
                                                                                      22, None)
    else:   # LilyGO wires only PA_BOOST
        assert (r["tcxo_mv"], r["dio2_rf_switch"], r["max_power_dbm"], r["tx_ant"]) == (
            None, False, 20, "PA_BOOST")
    assert r["spi"]["baudrate"] == 2_000_000   # RadioLib's and the adapter's default


def test_board_specifics():
    t_beam = [load_board(i) for i in ("lilygo-t-beam-sx1276", "lilygo-t-beam-sx1262")]
    for b in t_beam:   # AXP192: radio on LDO2 over I2C, battery through the PMU
        assert (b.pmu["chip"], b.pmu["address"], b.pmu["radio_rail"]) == ("axp192", 0x34, "LDO2")
        assert b.battery_adc is None and "AXP192" in b.notes
    heltec = load_board("heltec-wifi-lora-32-v3").battery_adc
    assert (heltec["enable_pin"], heltec["enable_value"]) == (37, None)   # polarity per revision
    assert load_board("rpi-picow-waveshare-sx1262").led is None   # the LED is on the CYW43
    rak = load_board("rak11310")
    assert [(p["pin"], p["value"]) for p in rak.power_enable] == [(25, 1)]
    assert load_board("lilygo-t3-s3").micropython["variant"] == "FLASH_4M"   # 4 MB flash


def test_sections_fill_optional_keys_and_raw_is_the_file():
    b = load_board("heltec-wifi-lora-32-v3")
    assert b.raw == json.loads(b.path.read_text())
    assert "tx_ant" not in b.raw["radio"] and b.radio["tx_ant"] is None
    assert b.pmu is None and b.raw["pmu"] is None


def test_pins_lists_every_gpio_once_by_field():
    b = load_board("rak11310")
    assert b.pins["radio.dio1"] == 29 and b.pins["power_enable[0].pin"] == 25
    assert len(set(b.pins.values())) == len(b.pins)


def test_unknown_board_id_lists_the_known_boards():
    with pytest.raises(BoardError) as e:
        load_board("heltec-v9")
    msg = str(e.value)
    assert msg.startswith("board 'heltec-v9': unknown board (known boards: ")
    assert all(i in msg for i in board_ids())


def test_missing_file_is_named(tmp_path):
    with pytest.raises(BoardError, match=r"board '.*/nope.json': no such file"):
        load_board(tmp_path / "nope.json")


def test_micropython_reads_every_profile():
    # The files go onto boards as they are: MicroPython's json must read them alike.
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    script = ("import json, sys\n"
              "for p in sys.argv[1:]:\n"
              "    with open(p) as f:\n"
              "        b = json.load(f)\n"
              "    r = b['radio']\n"
              "    print(b['id'], r['chip'], r['cs'], r['dio1'], r['busy'], b['flash']['method'])\n")
    paths = [str(BOARD_DIR / f"{i}.json") for i in board_ids()]
    out = subprocess.run([exe, "-X", "heapsize=256K", "-c", script] + paths, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split("\n")
    want = [" ".join(str(x) for x in (b.id, b.radio["chip"], b.radio["cs"], b.radio["dio1"],
                                       b.radio["busy"], b.flash["method"])) for b in list_boards()]
    assert out[:-1] == want


# --- invalid profiles ----------------------------------------------------------

DROP = object()


def write_profile(tmp_path, board_id, path=None, value=None, file_id=None):
    """A copy of a shipped profile in tmp_path, with one field set (or dropped)."""
    data = json.loads((BOARD_DIR / f"{board_id}.json").read_text())
    if path:
        *parents, last = path.split(".")
        node = data
        for k in parents:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    out = tmp_path / f"{file_id or board_id}.json"
    out.write_text(json.dumps(data))
    return out


def test_a_valid_copy_loads(tmp_path):
    b = load_board(write_profile(tmp_path, "lilygo-t3-s3"))
    assert b == load_board("lilygo-t3-s3")


def test_bad_pin_message_names_file_field_and_expectation(tmp_path):
    p = write_profile(tmp_path, "heltec-wifi-lora-32-v3", "radio.cs", "A")
    with pytest.raises(BoardError) as e:
        load_board(p)
    assert str(e.value) == ("board 'heltec-wifi-lora-32-v3.json': field 'radio.cs': "
                            "expected a GPIO number 0..48, got 'A'")


BAD = [
    # (board, field set, value, the message after "field '<field>': ")
    ("rak11310", "watchdog_ms", 9000, "expected 0 (no watchdog) or an integer 1000..8388, got 9000"),
    ("rak11310", "watchdog_ms", "8s", "expected 0 (no watchdog) or an integer 1000..8388, got '8s'"),
    ("heltec-wifi-lora-32-v3", "radio.cs", 49, "expected a GPIO number 0..48, got 49"),
    ("heltec-wifi-lora-32-v3", "radio.cs", True, "expected a GPIO number 0..48, got true"),
    ("heltec-wifi-lora-32-v3", "radio.cs", None, "expected a GPIO number 0..48, got null"),
    ("lilygo-ttgo-lora32-v21", "radio.cs", 40, "expected a GPIO number 0..39, got 40"),
    ("rak11310", "radio.cs", 30, "expected a GPIO number 0..29, got 30"),
    ("lilygo-ttgo-lora32-v21", "radio.reset", 24, "GPIO 24 does not exist on the esp32"),
    ("lilygo-ttgo-lora32-v21", "radio.cs", 6, "GPIO 6 is wired to the esp32's SPI flash"),
    ("heltec-wifi-lora-32-v3", "radio.dio1", 30, "GPIO 30 is wired to the esp32s3's SPI flash"),
    ("lilygo-t-beam-sx1276", "led.pin", 36, "GPIO 36 is input-only on the esp32, but this pin is driven"),
    ("heltec-wifi-lora-32-v3", "led.pin", 8, "GPIO 8 is already used by 'radio.cs'"),
    ("rak11310", "power_enable.0.pin", 13, "GPIO 13 is already used by 'radio.cs'"),
    ("rpi-picow-waveshare-sx1262", "battery_adc.enable_pin", 20,
     "GPIO 20 is already used by 'radio.dio1'"),
    ("rpi-pico-waveshare-sx1262", "battery_adc.pin", 22, "GPIO 22 has no ADC on the rp2040"),
    ("rpi-pico-waveshare-sx1262", "radio.spi.sck", 9, "expected an SPI1 SCK pin (10, 14, 26), got 9"),
    ("rak11310", "radio.spi.miso", 9, "expected an SPI1 MISO pin (8, 12, 24, 28), got 9"),
    ("heltec-wifi-lora-32-v3", "radio.chip", "sx1280",
     "expected one of 'sx1261', 'sx1262', 'sx1276', 'sx1278', got 'sx1280'"),
    ("heltec-wifi-lora-32-v3", "radio.tx_ant", "RFO", "expected null (only an sx127x has a choice"),
    ("lilygo-t-beam-sx1276", "radio.tx_ant", "PA", "expected one of 'PA_BOOST', 'RFO', got 'PA'"),
    ("heltec-wifi-lora-32-v3", "mcu", "esp32c3", "expected one of 'esp32', 'esp32s3', 'rp2040'"),
    ("heltec-wifi-lora-32-v3", "radio.dio1", DROP, "missing"),
    ("heltec-wifi-lora-32-v3", "sources", DROP, "missing"),
    ("heltec-wifi-lora-32-v3", "radio.spi.baudrate", DROP, "missing"),
    ("heltec-wifi-lora-32-v3", "radio.antenna", 1, "unknown field"),
    ("heltec-wifi-lora-32-v3", "flash.offset", "0x1000", "expected '0x0' (where the esp32s3 image starts)"),
    ("lilygo-t-beam-sx1262", "flash.offset", "0x0", "expected '0x1000' (where the esp32 image starts)"),
    ("lilygo-t-beam-sx1262", "flash.chip", "esp32s3", "expected one of 'esp32', got 'esp32s3'"),
    ("rak11310", "flash.method", "esptool", "expected 'uf2' for an rp2040, got 'esptool'"),
    ("rak11310", "micropython.mpy_arch", "xtensawin", "expected one of 'armv6m'"),
    ("rak11310", "micropython.board", "rpi-pico", "expected a name like 'ESP32_GENERIC_S3'"),
    ("lilygo-t3-s3", "micropython.variant", "", "expected null or a name like 'SPIRAM', got ''"),
    ("rak11310", "micropython.min_version", "1.22.2",
     "expected a version 'X.Y.Z', at least 1.23.0, got '1.22.2'"),
    ("heltec-wifi-lora-32-v3", "radio.dio0", 4, "expected null (the sx1262 has no DIO0), got 4"),
    ("lilygo-t-beam-sx1276", "radio.busy", 32, "expected null (the sx1276 has no BUSY line), got 32"),
    ("lilygo-t-beam-sx1276", "radio.dio2_rf_switch", True, "expected false"),
    ("heltec-wifi-lora-32-v3", "radio.tcxo_mv", 1900, "expected one of 1600, 1700, 1800"),
    ("heltec-wifi-lora-32-v3", "radio.max_power_dbm", 23, "expected an integer 1..22, got 23"),
    ("lilygo-t-beam-sx1276", "radio.max_power_dbm", 22, "expected an integer 1..20, got 22"),
    ("lilygo-t-beam-sx1276", "radio.spi.baudrate", 16_000_000, "expected an integer 100000..10000000"),
    ("rpi-pico-waveshare-sx1262", "battery_adc.enable_value", 1, "expected null (there is no enable_pin)"),
    ("heltec-wifi-lora-32-v3", "battery_adc.divider", 0.5, "expected a number 1.0..20.0"),
    ("heltec-wifi-lora-32-v3", "power_enable", {}, "expected a list (may be empty)"),
    ("heltec-wifi-lora-32-v3", "sources", [], "expected a non-empty list"),
    ("heltec-wifi-lora-32-v3", "id", "heltec-v3", "expected 'heltec-wifi-lora-32-v3' (the file name)"),
    ("heltec-wifi-lora-32-v3", "radio.bands_mhz", DROP, "missing"),
    ("heltec-wifi-lora-32-v3", "radio.bands_mhz", [], "expected a non-empty list of [low, high] MHz"),
]


@pytest.mark.parametrize("board_id, field, value, message", BAD,
                         ids=[f"{b}:{f}={'drop' if v is DROP else v}" for b, f, v, _ in BAD])
def test_invalid_profile_is_rejected_naming_the_field(tmp_path, board_id, field, value, message):
    p = write_profile(tmp_path, board_id, field, value)
    with pytest.raises(BoardError) as e:
        load_board(p)
    shown = field.replace(".0.", "[0].")
    prefix = f"board '{board_id}.json': field '{shown}': "
    assert str(e.value).startswith(prefix + message), str(e.value)


def test_not_json_is_rejected_with_its_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{\n  "id": "broken",\n  "mcu": esp32\n}\n')
    with pytest.raises(BoardError, match=r"^board 'broken.json': not valid JSON at line 3"):
        load_board(p)


def test_top_level_must_be_an_object(tmp_path):
    p = tmp_path / "list.json"
    p.write_text("[]")
    with pytest.raises(BoardError, match=r"field '\(top level\)': expected an object, got \[\]"):
        load_board(p)


@pytest.mark.parametrize("board_id", board_ids())
def test_every_profile_states_its_radio_band(board_id):
    # all shipped profiles are the 868/915 MHz builds (docs/boards.md, 'Radio bands')
    from pollen.region import REGIONS
    from pollen_controller.board.profiles import in_bands

    bands = load_board(board_id).radio["bands_mhz"]
    assert bands == [[863, 928]]
    assert [r for r, (f, *_) in REGIONS.items() if not in_bands(f, bands)] == ["EU433"]


@pytest.mark.parametrize("board_id, bands, message", [
    ("lilygo-t-beam-sx1276", [[433, 1100]], "433-1100 MHz is outside what the sx1276 can tune "
                                            "(137-1020 MHz)"),
    ("rak11310", [[928, 863]], "expected [low, high] in MHz with low < high, got [928, 863]"),
    ("rak11310", [[863, "928"]], "expected [low, high] in MHz with low < high"),
])
def test_a_bad_band_is_refused_naming_the_range(tmp_path, board_id, bands, message):
    p = write_profile(tmp_path, board_id, "radio.bands_mhz", bands)
    with pytest.raises(BoardError) as e:
        load_board(p)
    assert str(e.value).startswith(f"board '{board_id}.json': field 'radio.bands_mhz[0]': "
                                   + message), str(e.value)


# --- the virtual board's profile -------------------------------------------------

def test_the_virtual_board_has_a_profile_without_radio_drivers_or_an_image():
    from pollen_controller.board.build import radio_packages
    from pollen_controller.board.flashing import write_image

    b = load_board("virtual")
    assert (b.mcu, b.radio, b.flash, b.micropython["mpy_arch"]) == ("unix", None,
                                                                    {"method": "none"}, None)
    assert radio_packages(b) == [] and b.pins == {}
    assert "virtual" not in board_ids() and "virtual" in board_ids(virtual=True)
    with pytest.raises(BoardError, match="no MicroPython image"):
        write_image(b, "/dev/null", BOARD_DIR / "virtual.json")
    with pytest.raises(BoardError, match="virtual"):
        load_board("nope")   # the known boards named include it


def test_a_radio_on_the_virtual_board_or_none_on_a_hardware_board_is_refused(tmp_path):
    raw = json.loads((BOARD_DIR / "virtual.json").read_text())
    raw["radio"] = json.loads((BOARD_DIR / "rak11310.json").read_text())["radio"]
    (tmp_path / "virtual.json").write_text(json.dumps(raw))
    with pytest.raises(BoardError, match=r"field 'radio': expected null \(the virtual"):
        load_board(tmp_path / "virtual.json")
    raw = json.loads((BOARD_DIR / "rak11310.json").read_text())
    raw["radio"] = None
    (tmp_path / "rak11310.json").write_text(json.dumps(raw))
    with pytest.raises(BoardError, match="field 'radio': expected an object"):
        load_board(tmp_path / "rak11310.json")
