"""A board's ROMFS partition: how large it is, what image it holds, and
writing pollen's image into it (`pollen flash`, docs/boards.md "ROMFS").

ROMFS is MicroPython's read-only filesystem in a flash partition, mounted at
/rom at boot (MicroPython >= 1.25, on firmware built with MICROPY_VFS_ROM).
Bytecode imported from it runs in place, so the firmware's code does not take
the board's heap. The partition is reached with vfs.rom_ioctl (2: the
partition's device, a buffer or a block device); writing it is mpremote's
`romfs deploy`, which this module calls on the board's open connection.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
from pathlib import Path
from types import SimpleNamespace

from pollen_controller.board.transport import Board, BoardError

# partition 0's size in bytes; -1: this firmware has no ROMFS (or no partition)
_SIZE_PROBE = ("try:\n import vfs\n d = vfs.rom_ioctl(2, 0)\n"
               " print(-1 if isinstance(d, int) else d.ioctl(4, 0) * d.ioctl(5, 0)"
               " if hasattr(d, 'ioctl') else len(d))\n"
               "except Exception:\n print(-1)")

# SHA-256 of the partition's first N bytes, read in place 512 at a time; '?'
# where the partition is a block device (not readable as memory)
_HASH_PROBE = ("try:\n import vfs, hashlib, binascii\n m = memoryview(vfs.rom_ioctl(2, 0))\n"
               " h = hashlib.sha256()\n for i in range(0, %d, 512):\n  h.update(m[i:min(i + 512, %d)])\n"
               " print(binascii.hexlify(h.digest()).decode())\nexcept Exception:\n print('?')")

_REMOUNT = ("import vfs\ntry:\n vfs.umount('/rom')\nexcept OSError:\n pass\n"
            "vfs.mount(vfs.VfsRom(vfs.rom_ioctl(2, 0)), '/rom')")


def partition_bytes(board: Board) -> int:
    """Size of the board's ROMFS partition 0, or 0 if its firmware has none."""
    out = board.exec(_SIZE_PROBE).strip()
    try:
        return max(0, int(out))
    except ValueError:
        return 0


def image_sha256(board: Board, size_bytes: int) -> str | None:
    """Hex SHA-256 of the first size_bytes of the partition; None if unreadable."""
    out = board.exec(_HASH_PROBE % (size_bytes, size_bytes)).strip()
    return None if out == "?" else out


def deploy(board: Board, image: bytes) -> str:
    """Write image into partition 0 unless it is there already, then mount it.

    Returns "written" or "up to date". The partition is read back and
    compared by hash where it can be read as memory."""
    want = hashlib.sha256(image).hexdigest()
    size = partition_bytes(board)
    if size < len(image):
        raise BoardError(f"{board.port}: the ROMFS image is {len(image)} bytes, the board's ROMFS "
                         f"partition {size} bytes" if size else
                         f"{board.port}: the board's MicroPython has no ROMFS partition")
    if image_sha256(board, len(image)) == want:
        return "up to date"
    from mpremote.commands import CommandError, _do_romfs_deploy
    from mpremote.transport import TransportError

    state = SimpleNamespace(transport=board.t, ensure_raw_repl=lambda: None,
                            did_action=lambda: None)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pollen.romfs"
        path.write_bytes(image)
        args = SimpleNamespace(path=str(path), partition=0, mpy=False)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
                _do_romfs_deploy(state, args)
        except (CommandError, TransportError, OSError, SystemExit) as e:
            raise BoardError(f"{board.port}: writing the ROMFS partition failed ({e}); "
                             "run pollen flash again") from None
    got = image_sha256(board, len(image))
    if got is not None and got != want:
        raise BoardError(f"{board.port}: the ROMFS partition reads back with another hash; "
                         "run pollen flash again")
    board.exec(_REMOUNT)
    return "written"
