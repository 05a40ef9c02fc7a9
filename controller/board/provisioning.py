"""Community network files, installing the app bundle onto a board, and
writing a node's config.json — the steps of `pollen network create`,
`pollen flash` (app part) and `pollen provision`."""
from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

from pollen.airtime import PRESETS
from pollen.region import REGIONS
from pollen.settings import ConfigError, Settings
from pollen_controller.board.build import MANIFEST, load_manifest
from pollen_controller.board.transport import Board, BoardError
from pollen_controller.errors import NetworkError
from pollen_controller.files_atomic import write_atomic
from pollen_controller.node.lines import node_json

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


# ---- app bundle -------------------------------------------------------------

def install_bundle(board: Board, bundle: Path, progress=None, romfs: str = "auto") -> dict:
    """Copy a bundle's files onto a board, skipping those whose hash matches;
    every written file is read back and verified. The manifest goes last, so a
    run cut short is finished by running again.

    romfs ("auto", "on", "off"): a bundle built with a ROMFS image puts it in
    the board's ROMFS partition where there is one large enough ("on": or
    fails), and then copies only the files outside its packages, removing
    copies of them left on the filesystem by an earlier install (they would
    take the heap again). Without one, the .mpy files are copied."""
    from pollen_controller.board import romfs_partition

    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    _check_mpy(board, manifest)
    filesystem = check_filesystem(board)
    rom = manifest.get("romfs")
    if romfs == "on" and not rom:
        raise BoardError(f"{bundle}: the bundle has no ROMFS image (pollen build --romfs)")
    rom_state = "not used"
    files = manifest["files"]
    if rom and romfs != "off":
        size = romfs_partition.partition_bytes(board)
        if size >= rom["size_bytes"]:
            rom_state = romfs_partition.deploy(board, (bundle / rom["path"]).read_bytes())
            in_rom = tuple(name + "/" for name in rom["packages"])
            for f in files:
                if f["path"].startswith(in_rom) and board.sha256(f["path"]) is not None:
                    board.remove(f["path"])
            files = [f for f in files if not f["path"].startswith(in_rom)]
        elif romfs == "on":
            raise BoardError(f"{board.port}: the ROMFS image is {rom['size_bytes']} bytes, the "
                             f"board's ROMFS partition {size} bytes" if size else
                             f"{board.port}: the board's MicroPython has no ROMFS partition "
                             "(docs/boards.md, 'ROMFS'); flash with --romfs auto or off")
        else:
            rom_state = f"no partition for it ({size} bytes)" if size else "no partition"
    written, skipped = [], []
    for i, f in enumerate(files):
        if progress:
            progress(i, len(files), f["path"])
        if board.sha256(f["path"]) == f["sha256"]:
            skipped.append(f["path"])
            continue
        board.write_atomic(f["path"], (bundle / f["path"]).read_bytes())
        written.append(f["path"])
    board.write_atomic(MANIFEST, (bundle / MANIFEST).read_bytes())
    if progress:
        progress(len(files), len(files), "")
    return {"written": written, "skipped": skipped, "files": len(files), "filesystem": filesystem,
            "romfs": rom_state}


# The filesystem the node's records live on (root). Records are replaced by
# writing NAME.tmp and renaming it over NAME: atomic on LittleFS (the
# default on ESP32 and RP2040 builds) and on the unix port's POSIX files, but
# FAT's rename over an existing file is delete-then-rename, so a power cut
# between the two loses the record (the id counter among them: then the
# message ids, and the cipher's nonces, could repeat). docs/boards.md.
_ATOMIC_FS = ("VfsLfs2", "VfsLfs1", "VfsPosix")
_FS_PROBE = ("try:\n import vfs\n print([type(f).__name__ for f, p in vfs.mount() if p == '/'][0])\n"
             "except Exception:\n print('?')")


def check_filesystem(board: Board) -> str:
    """The class name of the board's root filesystem; BoardError if it is FAT
    (renames are not atomic there). '?' where the board cannot say (a
    MicroPython without vfs.mount())."""
    kind = board.exec(_FS_PROBE).strip() or "?"
    if kind == "VfsFat":
        raise BoardError(f"{board.port}: the board's filesystem is FAT; pollen needs LittleFS "
                         "(FAT renames over a file as delete-then-rename, so a power cut can lose "
                         "a record, the message id counter among them). Reformat the flash as "
                         "LittleFS (docs/boards.md, 'Storage') and flash again")
    return kind


def _check_mpy(board: Board, manifest: dict):
    version, (major, minor) = board.version()
    want_major, want_minor = (int(x) for x in manifest["mpy_version"].split("."))
    if major and (major != want_major or minor < want_minor):
        raise BoardError(f"{board.port}: MicroPython {version} reads .mpy {major}.{minor}, the bundle "
                         f"is .mpy {manifest['mpy_version']}; flash a newer MicroPython "
                         "(pollen flash --micropython IMAGE)")


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
    board.write_atomic("config.json", (node_json(cfg) + "\n").encode())
    return cfg
