"""A node's config.json as `pollen provision` writes it, decided without IO:
the node keeps its id, name, radio and other settings from the config it
has unless the user gives new ones; every field is checked, naming it; a
network outside the board's radio band is refused, naming both.
provisioning.provision() reads the board and writes the result."""
from __future__ import annotations

import secrets

from pollen.ids import ConfigError, parse_node_id
from pollen.region import REGIONS
from pollen.settings import Settings
from pollen_controller.board.profiles import (CHIP_RANGE_MHZ, bands_text, board_ids, in_bands,
                                              load_board)
from pollen_controller.errors import BoardError, InputError, NetworkError

MAX_NAME_BYTES = 16
_OWN_KEYS = ("node_id", "name", "network_key", "region", "preset", "radio", "network", "board",
             "identity_key")
_IO_KEYS = ("radio", "network", "board", "storage_dir", "status_interval_ms")  # not Settings'


def check_name(name, field: str = "name") -> str:
    """A node name: printable (no control, format or line characters), not
    blank, 1..16 bytes of UTF-8 (what a beacon carries)."""
    if not isinstance(name, str):
        raise InputError(f"{field}: expected a name (text), got {name!r}")
    size = len(name.encode("utf-8", "surrogatepass"))
    if not name.strip():
        raise InputError(f"{field}: expected a name that is not blank, got {name!r}")
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        raise InputError(f"{field}: expected printable characters, got {name!r} "
                         f"(U+{ord(bad):04X} is a control or format character)")
    if size > MAX_NAME_BYTES:
        raise InputError(f"{field}: expected at most {MAX_NAME_BYTES} bytes of UTF-8, got "
                         f"{name!r} ({size} bytes)")
    return name


def parse_radio(text: str, field: str = "--radio") -> dict:
    """'lora' or 'udp:PORT' (PORT 1..65535) -> config.json's radio object."""
    if text == "lora":
        return {"kind": "lora"}
    port = text[4:] if isinstance(text, str) and text.startswith("udp:") else None
    if port is not None and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535:
        return {"kind": "udp", "port": int(port)}
    raise InputError(f"{field}: expected 'lora' or 'udp:PORT' with PORT 1..65535 (the virtual "
                     f"radio medium's UDP port), got {text!r}")


def new_node_id() -> int:
    node_id = secrets.randbelow(0xFFFFFF00) + 0x100
    return node_id + 1 if node_id & 0xFF == 0 else node_id


def new_identity(secret: bytes | None = None) -> tuple[str, int]:
    """A node identity (docs/identity.md) as config.json's identity_key: an
    X25519 secret (random unless given), then its public key, 128 hex
    digits; and the node id the public key gives."""
    from pollen.identity import node_id_from_public
    from pollen.x25519 import public_key
    secret = secrets.token_bytes(32) if secret is None else secret
    public = public_key(secret)
    return (secret + public).hex(), node_id_from_public(public)


def identity_id(key_hex) -> int:
    """The node id of a config's identity_key (refused, naming the field, if
    it is no key, or its public key is not its secret's)."""
    from pollen.settings import _hex_key
    key = _hex_key(key_hex, "identity_key", 64)
    key_hex, node_id = new_identity(key[:32])
    if bytes.fromhex(key_hex) != key:
        raise BoardError("the board's config.json has an identity_key whose public key is not "
                         "its secret's; give the node a new identity (--new-identity)")
    return node_id


def board_bands(profile: dict) -> tuple[list, str] | None:
    """The MHz ranges the board's radio works in, and where that was read:
    board.json's radio.bands_mhz; else the host's profile of the same id
    (a board flashed before profiles stated a band); else what its chip
    can tune. None for a board without a profile (a virtual board)."""
    radio = profile.get("radio") if isinstance(profile.get("radio"), dict) else {}
    board_id = profile.get("id")
    if radio.get("bands_mhz"):
        return radio["bands_mhz"], f"board {board_id}"
    if isinstance(board_id, str) and board_id in board_ids():
        return load_board(board_id).radio["bands_mhz"], f"board {board_id}"
    chip = radio.get("chip")
    if chip in CHIP_RANGE_MHZ:
        return [list(CHIP_RANGE_MHZ[chip])], f"this board's {chip}"
    return None


def check_band(net: dict, profile: dict):
    found = board_bands(profile)
    freq_hz = REGIONS[net["region"]][0]
    if found and not in_bands(freq_hz, found[0]):
        bands, what = found
        raise NetworkError(f"network {net['name']!r} is for {net['region']} ({freq_hz / 1e6:g} "
                           f"MHz), but {what} works in {bands_text(bands)}; use a network for "
                           "the board's band, or a board built for that region")


def make_config(old: dict, net: dict, profile: dict, name: str | None = None,
                node_id: int | None = None, radio: dict | None = None,
                identity: bool = False) -> tuple[dict, list]:
    """config.json for a node whose current config is `old` ({} if none) on a
    board whose board.json is `profile` ({} if none), and the fields kept
    from `old`. Id, name and radio are kept unless given; the radio only if
    the board is the one it was set for. Other settings are kept as they are.

    Identity (docs/identity.md): a node's identity key is kept, and its id is
    that key's. A new node gets one (and the id it gives) unless node_id is
    given (a node without an identity: no private messages); a node that has
    an id but no identity gets one (a new id) only if `identity` is asked."""
    kept = []
    key = old.get("identity_key")
    if key is not None:
        if node_id is not None:
            raise InputError("--node-id: this node has an identity, and its id is its key's "
                             f"({identity_id(key):08x}); it cannot be chosen")
        node_id = identity_id(key)
        kept.append("identity_key")
    elif identity or node_id is None and "node_id" not in old:
        if node_id is not None:
            raise InputError("--node-id: a node with an identity has its key's id; "
                             "give one or the other")
        key, node_id = new_identity()
    if node_id is None and "node_id" in old:
        try:
            node_id = parse_node_id(old["node_id"], "node_id")
        except ConfigError:
            raise BoardError("the board's config.json has a bad node_id "
                             f"({old['node_id']!r}); give --node-id") from None
        kept.append("node_id")
    if name is None and old.get("name") is not None:
        name, kept = old["name"], kept + ["name"]
    if name is None:
        raise InputError("--name: required, since the board has no name yet "
                         "(no config.json with one)")
    check_name(name, "the name in the board's config.json (give --name)" if "name" in kept
               else "name")
    board_id = profile.get("id")
    check_band(net, profile)
    if radio is None and isinstance(old.get("radio"), dict) and old.get("board") == board_id:
        radio, kept = old["radio"], kept + ["radio"]
    has_lora = bool(profile.get("radio"))  # the virtual board's profile has none
    if radio is None:
        radio = {"kind": "lora"} if has_lora else {"kind": "udp"}
    elif radio.get("kind") == "lora" and not has_lora:
        raise BoardError(f"--radio lora: this board has no LoRa radio in its profile "
                         f"({board_id or 'none installed'}); use --radio udp:PORT")
    others = {k: v for k, v in old.items() if k not in _OWN_KEYS}
    cfg = {"node_id": f"{node_id if node_id is not None else new_node_id():08x}", "name": name,
           "network_key": net["key"], "region": net["region"], "preset": net["preset"],
           "radio": radio, "network": net["name"], "board": board_id, **others}
    if key is not None:
        cfg["identity_key"] = key
    Settings({k: v for k, v in cfg.items() if k not in _IO_KEYS})  # names a bad field
    return cfg, kept + sorted(others)
