"""Community network files and writing a node's config.json — the steps of
`pollen network create` and `pollen provision`. Installing the app bundle
(`pollen flash`) is board/install.py."""
from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

from pollen.airtime import PRESETS
from pollen.region import REGIONS
from pollen.settings import ConfigError, Settings
from pollen_controller.board.install import (  # noqa: F401  (re-exported: callers and tests)
    check_filesystem, check_installed, install_bundle)
from pollen_controller.board.transport import Board, BoardError
from pollen_controller.errors import NetworkError
from pollen_controller.files_atomic import write_atomic

NETWORK_VERSION = 1
# frequency range each radio chip can tune (datasheets)
_CHIP_RANGE_MHZ = {"sx1261": (150, 960), "sx1262": (150, 960), "sx1276": (137, 1020),
                   "sx1278": (137, 525)}
SHARE_PREFIX = "pollen1:"


# ---- community network files -----------------------------------------------

def create_network(name: str, region: str = "EU868", preset: str = "LongFast") -> dict:
    net = {"version": NETWORK_VERSION, "name": name, "region": region, "preset": preset,
           "key": secrets.token_hex(32)}
    check_network(net, "new network")
    return net


def check_network(net, source: str) -> dict:
    def bad(field, expected, got):
        raise NetworkError(f"network {source}: field '{field}': expected {expected}, got {got!r}")

    if not isinstance(net, dict):
        raise NetworkError(f"network {source}: expected a JSON object")
    if net.get("version") != NETWORK_VERSION:
        bad("version", NETWORK_VERSION, net.get("version"))
    if not isinstance(net.get("name"), str) or not 0 < len(net["name"]) <= 32:
        bad("name", "text of 1..32 characters", net.get("name"))
    if net.get("region") not in REGIONS:
        bad("region", "one of " + ", ".join(REGIONS), net.get("region"))
    if net.get("preset") not in PRESETS:
        bad("preset", "one of " + ", ".join(PRESETS), net.get("preset"))
    key = net.get("key")
    if not isinstance(key, str) or len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        bad("key", "64 lowercase hex digits", "(hidden)")
    try:  # the firmware's own rules (e.g. the preset must fit the region's dwell time)
        Settings({"node_id": 0x101, "network_key": key, "region": net["region"],
                  "preset": net["preset"]})
    except ConfigError as e:
        raise NetworkError(f"network {source}: {e}") from None
    return net


def save_network(net: dict, path: Path):
    write_atomic(path, json.dumps(net, indent=1) + "\n", mode=0o600)  # it holds the key


def load_network(path: Path) -> dict:
    path = Path(path)
    try:
        net = json.loads(path.read_text())
    except OSError as e:
        raise NetworkError(f"network file {path}: cannot be read ({e.strerror})") from None
    except ValueError:
        raise NetworkError(f"network file {path}: corrupt (not JSON); ask for the network "
                           "string again and import it") from None
    return check_network(net, f"file {path}")


def share_string(net: dict) -> str:
    """A compact string to pass a network on in the field (it contains the key)."""
    compact = json.dumps([net["name"], net["region"], net["preset"], net["key"]],
                         separators=(",", ":")).encode()
    return SHARE_PREFIX + base64.urlsafe_b64encode(compact).decode().rstrip("=")


def parse_share_string(s: str) -> dict:
    s = s.strip()
    if not s.startswith(SHARE_PREFIX):
        raise NetworkError(f"network string: expected it to start with {SHARE_PREFIX!r}")
    body = s[len(SHARE_PREFIX):]
    try:
        name, region, preset, key = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        raise NetworkError("network string: damaged (check it was copied whole)") from None
    return check_network({"version": NETWORK_VERSION, "name": name, "region": region,
                          "preset": preset, "key": key}, "string")


# ---- config.json ------------------------------------------------------------

def provision(board: Board, net: dict, name: str, node_id: int | None = None,
              radio: dict | None = None) -> dict:
    """Write the node's config.json (atomically) and return it."""
    if node_id is None:
        node_id = secrets.randbelow(0xFFFFFF00) + 0x100
        if node_id & 0xFF == 0:
            node_id += 1
    profile = board.read("board.json")
    try:
        profile = json.loads(profile) if profile else {}
    except ValueError:
        raise BoardError(f"{board.port}: board.json on the board is damaged (not JSON); "
                         "run pollen flash again") from None
    board_id = profile.get("id")
    chip = (profile.get("radio") or {}).get("chip")
    freq_mhz = REGIONS[net["region"]][0] // 1000000
    if chip in _CHIP_RANGE_MHZ:
        lo, hi = _CHIP_RANGE_MHZ[chip]
        if not lo <= freq_mhz <= hi:
            raise NetworkError(f"network {net['name']!r} is for {net['region']} ({freq_mhz} MHz), "
                               f"but this board's {chip} covers {lo}-{hi} MHz; use a network "
                               "for this board's band, or a board for that region")
    if radio is None:
        radio = {"kind": "lora"} if board_id else {"kind": "udp"}
    cfg = {"node_id": f"{node_id:08x}", "name": name, "network_key": net["key"],
           "region": net["region"], "preset": net["preset"], "radio": radio,
           "network": net["name"], "board": board_id}
    Settings({k: v for k, v in cfg.items()
              if k not in ("radio", "network", "board")})  # names a bad field
    board.write_atomic("config.json", (json.dumps(cfg) + "\n").encode())
    return cfg
