"""Community network files and the strings that pass them on in the field
(`pollen network create|share|import|info`).

A network file is JSON: version, name, region, preset and the 32-byte key.
Rotating a network (`pollen network rotate`) gives it a new key and keeps
everything else.
The shared string is `pollen2:` + base64url(compact JSON + a 4-byte
checksum): a character changed, lost or added anywhere is refused, and where
one single change explains it, its position is named. `pollen1:` strings
(before the checksum) are still read, since organisers have passed them on;
nothing catches a typo in them, so the key fingerprint is the check.
docs/config.md describes both."""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import secrets
import string
from pathlib import Path

from pollen.airtime import PRESETS
from pollen.region import REGIONS
from pollen.settings import ConfigError, Settings
from pollen_controller.errors import NetworkError
from pollen_controller.files_atomic import write_atomic

NETWORK_VERSION = 1
SHARE_PREFIX = "pollen2:"
OLD_SHARE_PREFIX = "pollen1:"   # no checksum; read, never written
_CHECK_BYTES = 4                # a random typo passes with odds of 1 in 2**32
_B64URL = string.ascii_letters + string.digits + "-_"
_SEARCH_MAX_CHARS = 600   # a real string is under 450 (a 32-character name, all escaped)


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
    name = net.get("name")
    if not (isinstance(name, str) and 0 < len(name) <= 32 and name.isprintable()
            and name.strip()):
        bad("name", "printable text of 1..32 characters, not blank", name)
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


def rotate_network(net: dict) -> dict:
    """The same network with a fresh random key: name, region, preset and
    any other field kept. Nodes re-provisioned with it keep their identity;
    a node that is not (a lost one) no longer reads or sends its frames."""
    new = dict(net)
    while new["key"] == net["key"]:   # (odds of 2**-256: the check costs nothing)
        new["key"] = secrets.token_hex(32)
    return check_network(new, "rotated")


def rotated_path(path: Path, today: datetime.date | None = None) -> Path:
    """Where a rotated network goes by default: beside the old file, dated,
    never over it: village.pollen-network.json -> village-2026-12-08.pollen-
    network.json (a date the old name already ends in is replaced)."""
    path = Path(path)
    day = (today or datetime.date.today()).isoformat()
    suffix = ".pollen-network.json" if path.name.endswith(".pollen-network.json") else path.suffix
    base = path.name[:len(path.name) - len(suffix)] if suffix else path.name
    base = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", base)
    return path.with_name(f"{base}-{day}{suffix}")


def key_fingerprint(key_hex: str) -> str:
    """16 hex digits in four groups, from a hash of the key: two organisers
    read theirs aloud to know they hold the same key (it does not reveal it)."""
    h = hashlib.sha256(b"pollen network key\0" + bytes.fromhex(key_hex)).hexdigest()[:16]
    return "-".join(h[i:i + 4] for i in range(0, 16, 4))


def default_path(net: dict) -> Path:
    """NAME.pollen-network.json in the current folder; InputError if the
    name (from a shared string: anyone's) would make it a path elsewhere."""
    name = net["name"]
    if "/" in name or "\\" in name or name.startswith("."):
        raise NetworkError(f"network name {name!r} cannot be a file name here (it has a '/', "
                           "'\\' or a leading '.'); give -o FILE")
    return Path(f"{name}.pollen-network.json")


def save_network(net: dict, path: Path):
    write_atomic(path, json.dumps(net, indent=1) + "\n", mode=0o600)  # it holds the key


def load_network(path: Path) -> dict:
    from pollen_controller.bounded import read_small

    path = Path(path)
    # within a bound: /dev/zero named by mistake is not read into memory
    raw = read_small(path, error=NetworkError, what="network file ")
    try:
        net = json.loads(raw)
    except ValueError:
        raise NetworkError(f"network file {path}: corrupt (not JSON); ask for the network "
                           "string again and import it") from None
    return check_network(net, f"file {path}")


# ---- the shared string --------------------------------------------------------

def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(SHARE_PREFIX.encode() + payload).digest()[:_CHECK_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def share_string(net: dict) -> str:
    """A compact string to pass a network on in the field (it contains the key)."""
    payload = json.dumps([net["name"], net["region"], net["preset"], net["key"]],
                         separators=(",", ":")).encode()
    return SHARE_PREFIX + _b64(payload + _checksum(payload))


def _unb64(body: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        return None


def _checked_payload(body: str) -> bytes | None:
    """The payload of a pollen2 body whose checksum matches and whose encoding
    is the one share_string writes (so no character is left unchecked), else None."""
    raw = _unb64(body)
    if raw is None or len(raw) <= _CHECK_BYTES or _b64(raw) != body:
        return None
    payload = raw[:-_CHECK_BYTES]
    return payload if _checksum(payload) == raw[-_CHECK_BYTES:] else None


def _one_change(body: str) -> str | None:
    """Where one character changed, added or lost would make the checksum
    match: described with its position in the whole string, if exactly one
    place does (about 20,000 tries for a usual string: milliseconds)."""
    if len(body) > _SEARCH_MAX_CHARS:
        return None
    at = len(SHARE_PREFIX) + 1
    found = set()
    for i in range(len(body) + 1):
        if i < len(body):
            if _checked_payload(body[:i] + body[i + 1:]):
                found.add(f"character {at + i} ({body[i]!r}) looks added")
            for c in _B64URL:
                if c != body[i] and _checked_payload(body[:i] + c + body[i + 1:]):
                    found.add(f"character {at + i} ({body[i]!r}) looks mistyped")
        for c in _B64URL:
            if _checked_payload(body[:i] + c + body[i:]):
                found.add(f"a character looks lost before character {at + i}")
        if len(found) > 1:
            return None
    return found.pop() if found else None


def _damaged(why: str) -> NetworkError:
    return NetworkError(f"network string: {why}; ask for it again (or scan its QR code), "
                        "it is not imported")


def parse_share_string(s: str) -> dict:
    """The network in a `pollen2:` string (checksum checked) or an old
    `pollen1:` one; NetworkError naming what is wrong. Whitespace inside (a
    string wrapped over lines) is ignored."""
    s = "".join(s.split())
    if s.startswith(OLD_SHARE_PREFIX):
        body = s[len(OLD_SHARE_PREFIX):]
        payload = _unb64(body)
    elif s.startswith(SHARE_PREFIX):
        body = s[len(SHARE_PREFIX):]
        for i, c in enumerate(body):
            if c not in _B64URL:
                raise _damaged(f"character {len(SHARE_PREFIX) + i + 1} ({c!r}) cannot be in one")
        payload = _checked_payload(body)
        if payload is None:
            where = _one_change(body)
            raise _damaged("its checksum does not match" + (f": {where}" if where else
                                                            " (characters changed, lost or added)"))
    else:
        raise NetworkError(f"network string: expected it to start with {SHARE_PREFIX!r} "
                           f"(or the older {OLD_SHARE_PREFIX!r})")
    try:
        name, region, preset, key = json.loads(payload)
    except (ValueError, TypeError):
        raise NetworkError("network string: damaged (check it was copied whole)") from None
    return check_network({"version": NETWORK_VERSION, "name": name, "region": region,
                          "preset": preset, "key": key}, "string")


def has_checksum(s: str) -> bool:
    return "".join(s.split()).startswith(SHARE_PREFIX)
