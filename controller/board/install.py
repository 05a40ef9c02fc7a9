"""Installing the app bundle onto a board (`pollen flash`, app part), and
checking that a board's install is whole (`pollen provision`).

An install can be cut at any moment (an unplug, Ctrl-C) and must never leave
a board that boots into a traceback: the boot entry, main.py, goes first and
comes back last. Before the first file is written, main.py is removed (the
board then boots to the REPL, not into half an app); then come the packages
(or the ROMFS image), the radio drivers and the manifest, each verified by its
hash; main.py is written last and read back. Files whose hash already
matches are skipped, so running flash again finishes a cut install.
"""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

from pollen_controller.board.build import MANIFEST, load_manifest
from pollen_controller.board.transport import Board, BoardError

BOOT = "main.py"  # what MicroPython runs at boot

# SHA-256 of each file on the board in one exec (one round trip, not one per
# file), 512 bytes at a time; with_rom: a file missing from the filesystem is
# looked for under /rom (packages installed as a ROMFS image)
_HASHES = """import hashlib, binascii
def _h(p):
 try:
  f = open(p, 'rb')
 except OSError:
  return None
 d = hashlib.sha256()
 b = bytearray(512)
 m = memoryview(b)
 with f:
  while True:
   n = f.readinto(b)
   if not n:
    break
   d.update(m[:n])
 return binascii.hexlify(d.digest()).decode()
print(repr([_h(p) or (%r and _h('/rom/' + p)) or None for p in %r]))
del _h"""


def board_hashes(board: Board, paths: list[str], with_rom: bool = False) -> dict[str, str | None]:
    """{path: hex SHA-256 of the file on the board, or None where it is not there}."""
    if not paths:
        return {}
    out = board.exec(_HASHES % (with_rom, list(paths))).strip()
    try:
        got = ast.literal_eval(out.splitlines()[-1])
    except (ValueError, SyntaxError, IndexError):
        raise BoardError(f"{board.port}: hashing the installed files gave {out[-80:]!r}") from None
    return dict(zip(paths, got))


class _BootEntry:
    """Removes main.py from the board once, before the first write."""

    def __init__(self, board: Board, present: bool):
        self.board = board
        self.present = present
        self.removed = False

    def clear(self):
        if self.present and not self.removed:
            self.board.remove(BOOT)
            self.removed = True


def install_bundle(board: Board, bundle: Path, progress=None, romfs: str = "auto",
                   drivers: list[tuple[str, bytes]] = ()) -> dict:
    """Copy a bundle's files onto a board, skipping those whose hash matches;
    every written file is read back and verified. drivers: (path, data) of
    the radio drivers (deps.driver_files), written before the boot entry.
    Order: main.py removed, packages, drivers, manifest, main.py (module
    docstring).

    romfs ("auto", "on", "off"): a bundle built with a ROMFS image puts it in
    the board's ROMFS partition where there is one large enough ("on": or
    fails), and then copies only the files outside its packages, removing
    copies of them left on the filesystem by an earlier install (they would
    take the heap again). Without one, the .mpy files are copied."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    _check_mpy(board, manifest)
    filesystem = check_filesystem(board)
    rom = manifest.get("romfs")
    if romfs == "on" and not rom:
        raise BoardError(f"{bundle}: the bundle has no ROMFS image (pollen build --romfs)")
    boot_file = next((f for f in manifest["files"] if f["path"] == BOOT), None)
    if boot_file is None:
        raise BoardError(f"{bundle}: the bundle has no {BOOT}")
    boot_now = board.sha256(BOOT)
    boot = _BootEntry(board, boot_now is not None)
    files, rom_state = _install_romfs(board, bundle, manifest, romfs, boot)
    todo = [(f["path"], f["sha256"], bundle / f["path"]) for f in files if f["path"] != BOOT]
    todo += [(path, hashlib.sha256(data).hexdigest(), data) for path, data in drivers]
    manifest_bytes = (bundle / MANIFEST).read_bytes()
    todo.append((MANIFEST, hashlib.sha256(manifest_bytes).hexdigest(), manifest_bytes))
    have = board_hashes(board, [path for path, _, _ in todo])
    driver_paths = {path for path, _ in drivers}
    written, skipped = [], []
    for i, (path, want, src) in enumerate(todo):
        if progress and path != MANIFEST and path not in driver_paths:
            progress(i, len(files), path)
        done = skipped if have[path] == want else written
        if done is written:
            boot.clear()
            board.write_atomic(path, src if isinstance(src, bytes) else src.read_bytes())
        if path != MANIFEST:
            done.append(path)
    if boot.removed or boot_now != boot_file["sha256"]:
        boot.clear()
        board.write_atomic(BOOT, (bundle / BOOT).read_bytes())  # last; read back by its hash
        written.append(BOOT)
    else:
        skipped.append(BOOT)
    check_installed(board)
    if progress:
        progress(len(files), len(files), "")
    app = lambda names: [p for p in names if p not in driver_paths]  # noqa: E731
    drv = lambda names: [p for p in names if p in driver_paths]  # noqa: E731
    return {"written": app(written), "skipped": app(skipped), "files": len(files),
            "filesystem": filesystem, "romfs": rom_state,
            "drivers": {"written": drv(written), "skipped": drv(skipped)}}


def _install_romfs(board: Board, bundle: Path, manifest: dict, romfs: str, boot: _BootEntry):
    """The ROMFS image into the board's partition where it fits; returns (the
    files still to copy, what happened to the image)."""
    from pollen_controller.board import romfs_partition

    rom = manifest.get("romfs")
    files = manifest["files"]
    if not rom or romfs == "off":
        return files, "not used"
    size = romfs_partition.partition_bytes(board)
    if size < rom["size_bytes"]:
        if romfs == "on":
            raise BoardError(f"{board.port}: the ROMFS image is {rom['size_bytes']} bytes, the "
                             f"board's ROMFS partition {size} bytes" if size else
                             f"{board.port}: the board's MicroPython has no ROMFS partition "
                             "(docs/boards.md, 'ROMFS'); flash with --romfs auto or off")
        return files, f"no partition for it ({size} bytes)" if size else "no partition"
    if romfs_partition.image_sha256(board, rom["size_bytes"]) != rom["sha256"]:
        boot.clear()
    state = romfs_partition.deploy(board, (bundle / rom["path"]).read_bytes())
    in_rom = tuple(name + "/" for name in rom["packages"])
    copies = [f["path"] for f in files if f["path"].startswith(in_rom)]
    for path, digest in board_hashes(board, copies).items():
        if digest is not None:
            boot.clear()
            board.remove(path)
    return [f for f in files if not f["path"].startswith(in_rom)], state


def check_installed(board: Board) -> dict:
    """The board's manifest when every file it lists is on the board with its
    hash (under /rom for a ROMFS install) and main.py is there; BoardError
    saying to run pollen flash otherwise (a flash that was cut short)."""
    raw = board.read(MANIFEST)
    flash = f"pollen flash --board {_profile_id(board) or 'BOARD'} --port {board.port}"
    if raw is None:
        raise BoardError(f"{board.port}: pollen is not installed on this board, or its flash was "
                         f"cut short (no {MANIFEST}); run {flash}")
    try:
        manifest = json.loads(raw)
        want = {f["path"]: f["sha256"] for f in manifest["files"]}
    except (ValueError, KeyError, TypeError):
        raise BoardError(f"{board.port}: {MANIFEST} on the board is damaged; "
                         "run pollen flash again") from None
    have = board_hashes(board, sorted(want), with_rom=bool(manifest.get("romfs")))
    bad = [p for p in sorted(want) if have[p] != want[p]]
    if bad or BOOT not in want:
        missing = [p for p in bad if have[p] is None]
        what = (f"{BOOT} is missing" if BOOT in missing or BOOT not in want else
                f"{len(bad)} of {len(want)} files missing or changed: " + ", ".join(bad[:3])
                + (", ..." if len(bad) > 3 else ""))
        if manifest.get("board"):
            flash = f"pollen flash --board {manifest['board']} --port {board.port}"
        raise BoardError(f"{board.port}: the pollen install on this board is incomplete ({what}; "
                         f"a flash cut short?); run {flash} to finish it")
    return manifest


def _profile_id(board: Board) -> str | None:
    """The board profile's id in board.json on the board (None: none there)."""
    try:
        return json.loads(board.read("board.json") or "{}").get("id")
    except (ValueError, AttributeError):
        return None


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
