# Starting a node: read and check config.json, make the radio and the
# storage. Only needed at start: app.main() drops this module (and the
# settings validator) afterwards, so their code does not stay in the heap.
import json

from pollen._compat import const
from pollen.ids import ConfigError
from pollen.settings import plain as Settings  # checked, as plain values

# config.json keys that are the adapters' business rather than the core's
_IO_FIELDS = const(("radio", "storage_dir", "status_interval_ms", "network", "board"))


def load_config(path):
    try:
        with open(path) as f:
            raw = f.read()
    except OSError:
        raise ConfigError("%s: cannot be read" % path)
    try:
        d = json.loads(raw)
    except ValueError:
        raise ConfigError("%s: not valid JSON" % path)
    if not isinstance(d, dict):
        raise ConfigError("%s: expected a JSON object" % path)
    io = {}
    for k in _IO_FIELDS:
        if k in d:
            io[k] = d.pop(k)
    radio = io.get("radio", {"kind": "udp"})
    if not isinstance(radio, dict) or radio.get("kind") not in ("udp", "lora"):
        raise ConfigError("config field 'radio': expected {\"kind\": \"lora\"} or {\"kind\": \"udp\", \"port\": ...}, got %r" % (radio,))
    if radio["kind"] == "lora":
        return Settings(d), radio, _folder(io), _interval(io)
    port = radio.get("port", 47000)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError("config field 'radio.port': expected a UDP port 1..65535, got %r" % (port,))
    host = radio.get("host", "127.0.0.1")
    # the virtual medium runs on this machine; the radio only talks on loopback
    if host not in ("127.0.0.1", "localhost"):
        raise ConfigError("config field 'radio.host': expected 127.0.0.1 or localhost (the virtual medium), got %r" % (host,))
    return Settings(d), radio, _folder(io), _interval(io)


def _folder(io):
    folder = io.get("storage_dir", "store")
    if not isinstance(folder, str) or not folder:
        raise ConfigError("config field 'storage_dir': expected a folder name, got %r" % (folder,))
    return folder


def _interval(io):
    interval = io.get("status_interval_ms", 0)
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 0:
        raise ConfigError("config field 'status_interval_ms': expected an integer >= 0, got %r" % (interval,))
    return interval


def make_radio(settings, radio):
    if radio["kind"] == "lora":
        return _lora_radio(settings, radio)
    from pollen_io.udp_radio import UdpRadio
    try:
        return UdpRadio(settings.node_id, radio.get("host", "127.0.0.1"), radio.get("port", 47000))
    except OSError as e:
        raise ConfigError("config field 'radio.host': expected a host name this machine resolves, got %r (%s)"
                          % (radio.get("host"), e))


def _lora_radio(settings, radio):
    # the board profile that pollen flash installed next to config.json
    try:
        with open("board.json") as f:
            board = json.loads(f.read())
    except (OSError, ValueError):
        raise ConfigError("config field 'radio': kind 'lora' needs board.json (run pollen flash --board B)")
    from pollen_io.lora_radio import LoraRadio
    from pollen_io import battery
    r = LoraRadio(settings, radio, board)
    r.battery_mv = battery.reader(board.get("battery_adc"))  # None: not measured
    timeout_ms = board.get("watchdog_ms", 8000)  # 0: none
    if timeout_ms:
        from pollen_io import watchdog
        watchdog.start(timeout_ms)
    return r


def open_storage(folder):
    from pollen_io.filestore import FileStorage
    try:
        return FileStorage(folder)
    except OSError as e:
        raise ConfigError("config field 'storage_dir': expected a folder the node can write, got %r (%s)"
                          % (folder, e))
