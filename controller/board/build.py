"""`pollen build`: the app bundle that goes onto a board.

A bundle is a folder (optionally zipped) with the firmware compiled to .mpy by
mpy-cross, main.py as source (a board boots it), the board profile as
board.json, and manifest.json:

    {"pollen_version", "board", "mpy_version": "6.3", "arch",
     "requires": [micropython-lib packages to install with mip],
     "files": [{"path", "sha256", "size_bytes"}],
     "romfs": {"path": "pollen.romfs", "sha256", "size_bytes",
               "packages": ["pollen", "pollen_io"]}}   (with --romfs only)

With romfs, the bundle also holds a ROMFS image of the compiled packages: a
board with a ROMFS partition gets the image there (its code then runs in place,
not from the heap) and only main.py and board.json as files; a board without
one gets the .mpy files (docs/boards.md, "ROMFS").
"""
from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pollen
from pollen_controller.board.firmware import ROMFS_PACKAGES, compile_firmware, mpy_version, romfs_image
from pollen_controller.errors import BuildError

MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 1 << 20   # a bundle's manifest is a few KiB
ROMFS_IMAGE = "pollen.romfs"
# micropython-lib packages each radio chip needs (installed with mip, never copied here)
RADIO_PACKAGES = {"sx1261": ["lora-sx126x", "lora-async"],
                  "sx1262": ["lora-sx126x", "lora-async"],
                  "sx1276": ["lora-sx127x", "lora-async"],
                  "sx1278": ["lora-sx127x", "lora-async"]}


def radio_packages(board) -> list[str]:
    """What a board's radio needs from micropython-lib (none for the virtual board)."""
    if board is None or board.radio is None:
        return []
    return RADIO_PACKAGES.get(board.radio["chip"], [])


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_bundle(board_id: str | None, out_dir: Path, make_zip: bool = False,
                 romfs: bool = False) -> dict:
    """Compile the firmware for a board (or generic bytecode) into out_dir."""
    out_dir = Path(out_dir)
    board = None
    if board_id:
        from pollen_controller.board.profiles import load_board

        board = load_board(board_id)
    # pure bytecode (no @native code in pollen): one bundle runs on every board
    # of the same .mpy version, and on the virtual board
    arch = None
    files = compile_firmware(out_dir, arch=arch, keep_source=("main.py",))
    if board is not None:
        (out_dir / "board.json").write_text(json.dumps(board.raw, indent=1))
        files.append(out_dir / "board.json")
    some_mpy = next(p for p in files if p.suffix == ".mpy")
    major, minor = mpy_version(some_mpy)
    manifest = {
        "pollen_version": pollen.VERSION,
        "board": board.id if board else None,
        "mpy_version": f"{major}.{minor}",
        "arch": arch,
        "requires": radio_packages(board),
        "files": [{"path": p.relative_to(out_dir).as_posix(), "sha256": sha256_file(p),
                   "size_bytes": p.stat().st_size} for p in sorted(files)],
    }
    if romfs:
        image = out_dir / ROMFS_IMAGE
        image.write_bytes(romfs_image(out_dir))
        manifest["romfs"] = {"path": ROMFS_IMAGE, "sha256": sha256_file(image),
                             "size_bytes": image.stat().st_size, "packages": list(ROMFS_PACKAGES)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if make_zip:
        zpath = out_dir.with_suffix(".zip")
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(out_dir.rglob("*")):
                if p.is_file():
                    z.write(p, p.relative_to(out_dir).as_posix())
        manifest["zip"] = str(zpath)
    return manifest


def load_manifest(bundle: Path) -> dict:
    bundle = Path(bundle)
    if bundle.suffix == ".zip":
        with zipfile.ZipFile(bundle) as z:
            if z.getinfo(MANIFEST).file_size > _MAX_MANIFEST_BYTES:
                raise BuildError(f"{bundle}: {MANIFEST} is over {_MAX_MANIFEST_BYTES} bytes")
            return json.loads(z.read(MANIFEST))
    return json.loads((bundle / MANIFEST).read_text())


def clean(out_dir: Path):
    shutil.rmtree(out_dir, ignore_errors=True)
