"""Writing a MicroPython image onto a board: esptool's Python API for ESP32s,
a UF2 copy to the mounted drive for RP2040s."""
from __future__ import annotations

import glob
import shutil
import time
from pathlib import Path

from pollen_controller.errors import BoardError


def esptool_commands(board, port: str, image: Path) -> list[list[str]]:
    """The esptool command lines for erasing and writing an image."""
    f = board.flash
    base = ["--chip", f["chip"], "--port", port, "--baud", str(f.get("baud", 460800))]
    return [base + ["erase-flash"], base + ["write-flash", f["offset"], str(image)]]


def write_image(board, port: str, image: Path, uf2_drive: str | None = None):
    method = board.flash["method"]
    if method == "none":
        raise BoardError(f"board {board.id}: has no MicroPython image to write (the virtual "
                         "board runs the unix port); flash without --micropython")
    if method == "esptool":
        if image.suffix != ".bin":
            raise BoardError(f"{image}: expected a MicroPython .bin image for {board.name}")
        import esptool

        for args in esptool_commands(board, port, image):
            try:
                esptool.main(args)
            except (esptool.FatalError, OSError) as e:
                raise BoardError(f"{port}: esptool {args[-3] if 'write-flash' in args else args[-1]} "
                                 f"failed: {e}; hold BOOT while pressing RESET and run again") from None
        return
    if method == "uf2":
        if image.suffix != ".uf2":
            raise BoardError(f"{image}: expected a MicroPython .uf2 image for {board.name}")
        drive = Path(uf2_drive) if uf2_drive else find_uf2_drive(board.flash.get("drive_label", "RPI-RP2"))
        shutil.copyfile(image, drive / image.name)
        time.sleep(3)  # the board reboots into MicroPython and its serial port comes back
        return
    raise BoardError(f"board {board.id}: unknown flash method {method!r}")


def find_uf2_drive(label: str) -> Path:
    for pattern in (f"/media/*/{label}", f"/run/media/*/{label}", f"/media/{label}",
                    f"/Volumes/{label}"):
        found = glob.glob(pattern)
        if found:
            return Path(found[0])
    raise BoardError(f"no {label} drive mounted: hold BOOTSEL while plugging the board in, "
                     "or give --uf2-drive")
