"""Installing the app bundle onto a board and writing a node's config.json:
the steps of `pollen flash` (app part) and `pollen provision`. Network files
and shared strings are in network_files.py (re-exported here)."""
from __future__ import annotations

import json
from pathlib import Path

from pollen_controller.board.build import MANIFEST, load_manifest
from pollen_controller.board.network_files import (  # noqa: F401  (their old home)
    NETWORK_VERSION, SHARE_PREFIX, check_network, create_network, load_network,
    parse_share_string, save_network, share_string)
from pollen_controller.board.node_config import make_config
from pollen_controller.board.transport import Board, BoardError
from pollen_controller.errors import NetworkError  # noqa: F401  (callers catch it here)


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

def provision(board: Board, net: dict, name: str | None = None, node_id: int | None = None,
              radio: dict | None = None, kept: list | None = None) -> dict:
    """Write the node's config.json (atomically) and return it. Id, name,
    radio and other settings the board's config.json has are kept unless
    given (node_config.make_config); their fields are appended to `kept`."""
    profile = _read_json(board, "board.json", "run pollen flash again")
    try:
        old = _read_json(board, "config.json", "give --node-id and --name to write a new one")
    except BoardError:
        if node_id is None or name is None:
            raise
        old = {}   # damaged, and both given: a new one
    cfg, kept_fields = make_config(old, net, profile, name, node_id, radio)
    board.write_atomic("config.json", (json.dumps(cfg) + "\n").encode())
    if kept is not None:
        kept += kept_fields
    return cfg


def _read_json(board: Board, path: str, what_to_do: str) -> dict:
    raw = board.read(path)
    try:
        d = json.loads(raw) if raw else {}
    except ValueError:
        d = None
    if not isinstance(d, dict):
        raise BoardError(f"{board.port}: {path} on the board is damaged (not a JSON object); "
                         f"{what_to_do}")
    return d
