"""The firmware from a ROMFS image: built by the host, run in place by real
MicroPython (emulated nodes too), and put into a board's ROMFS partition by
`pollen flash` (docs/boards.md, "ROMFS")."""
import contextlib
import io
import subprocess
import sys
import time
import types

import pytest

from pollen_controller.board import romfs_partition
from pollen_controller.board import provisioning as pv
from pollen_controller.board.build import build_bundle
from pollen_controller.board.firmware import compile_firmware, romfs_image
from pollen_controller.board.transport import Board, BoardError
from pollen_controller.board.virtual import VirtualBoard
from pollen_controller.emulation.mesh import Emulation
from pollen_controller.emulation.node_process import heap_with_romfs, micropython_binary, romfs_mount_code
from pollen_controller.topology import line
from test_emulation import wait_event

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

# heap an import takes, and where the module came from
_IMPORT_COST = """import gc, sys, vfs
if %(rom)r:
    rom = open(%(rom)r, "rb").read()
    vfs.mount(vfs.VfsRom(rom), "/rom")
    sys.path.insert(0, "/rom")
gc.collect()
before = gc.mem_alloc()
import pollen.node
gc.collect()
print(gc.mem_alloc() - before, pollen.node.__file__)
"""


def _import_cost(tmp_path, fw, rom):
    script = tmp_path / "cost.py"
    script.write_text(_IMPORT_COST % {"rom": str(rom) if rom else ""})
    path = ".frozen" if rom else f".frozen:{fw}"
    r = subprocess.run([micropython_binary(), "-X", "heapsize=512K", str(script)],
                       env={"MICROPYPATH": path}, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    cost, where = r.stdout.split()
    return int(cost), where


def test_the_image_runs_the_core_in_place_in_micropython(tmp_path):
    fw = tmp_path / "fw"
    compile_firmware(fw)
    rom = tmp_path / "pollen.romfs"
    rom.write_bytes(romfs_image(fw))
    from_files, where_files = _import_cost(tmp_path, fw, None)
    from_rom, where_rom = _import_cost(tmp_path, fw, rom)
    assert where_rom == "/rom/pollen/node.mpy" and where_files.startswith(str(fw))
    # the bytecode stays in the image: measured 74.8 KB -> 39.9 KB at the time of writing
    assert from_rom < 0.7 * from_files, (from_rom, from_files)


_FREE = "import gc\n%s\ngc.collect()\nprint(gc.mem_free())"


def test_an_emulated_romfs_node_has_no_more_heap_free_than_a_board(tmp_path):
    fw = tmp_path / "fw"
    compile_firmware(fw)
    rom = tmp_path / "pollen.romfs"
    rom.write_bytes(romfs_image(fw))
    size = rom.stat().st_size

    def free(heap, prelude):
        r = subprocess.run([micropython_binary(), "-X", f"heapsize={heap}", "-c", _FREE % prelude],
                           capture_output=True, text=True, timeout=30)
        return int(r.stdout)

    board = free("128K", "")
    emulated = free(heap_with_romfs("128K", size), romfs_mount_code(rom))
    assert board - 1024 < emulated <= board, (board, emulated)


def test_an_emulated_node_from_romfs_delivers_and_leaves_the_image_out_of_its_heap(tmp_path):
    topo = line(2)
    a, b = sorted(topo.node_ids)
    settings = {"beacon_interval_ms": 1500, "neighbour_expiry_ms": 20000}
    with Emulation(topo, tmp_path, KEY, node_settings=settings, romfs=True) as emu:
        assert emu.wait_started() == []
        assert not (emu.workdir / "firmware" / "pollen").exists()  # only in the image
        image_bytes = emu.rom_image.stat().st_size
        assert emu.nodes[a].rom_heap_bytes >= image_bytes
        time.sleep(2)
        emu.nodes[a].command({"cmd": "send", "to": f"{b:08x}", "text": "from flash"})
        got = wait_event(emu.nodes[b], lambda e: e.get("event") == "received")
        assert got["text"] == "from flash"
        emu.nodes[b].command({"cmd": "status", "ref": "s"})
        st = wait_event(emu.nodes[b], lambda e: e.get("event") == "status")
    # a board keeps the image in flash: the figures leave it out (the core
    # and the app from .mpy files take about 120 KB at their peak)
    assert 20000 < st["peak_heap_bytes"] < 100000 and 20000 < st["heap_bytes"] < 100000, st


def test_a_board_without_a_romfs_partition_gets_mpy_files_and_on_is_refused(tmp_path):
    manifest = build_bundle(None, tmp_path / "bundle", romfs=True)
    assert manifest["romfs"]["size_bytes"] == (tmp_path / "bundle" / "pollen.romfs").stat().st_size
    with VirtualBoard(tmp_path / "board") as vb:
        time.sleep(0.3)
        with Board(vb.port) as b:
            with pytest.raises(BoardError, match="no ROMFS partition"):
                pv.install_bundle(b, tmp_path / "bundle", romfs="on")
            got = pv.install_bundle(b, tmp_path / "bundle")
        assert got["romfs"] == "no partition"
        assert len(got["written"]) == len(manifest["files"])
        assert (vb.folder / "pollen" / "node.mpy").exists()


# ---- a board with a ROMFS partition, simulated ----------------------------------------------
# No board here has one (the unix port's MicroPython has vfs.VfsRom but no
# partition). The board's side is run in CPython instead: the probes and
# mpremote's `romfs deploy` talk to a fake `vfs` module whose partition 0 is a
# bytearray, through vfs.rom_ioctl as MicroPython defines it.

class _Partition:
    def __init__(self, size, block):
        self.mem = bytearray(b"\xff" * size)
        self.block = block
        self.mounted = None
        self.writes = 0

    def rom_ioctl(self, op, *args):
        if op == 1:
            return 1                       # number of partitions
        if op == 2:
            return memoryview(self.mem)    # partition 0, readable in place
        if op == 3:                        # prepare (erase) offset, length
            offset, length = args[1], args[2]
            self.mem[offset:offset + length] = b"\xff" * length
            return 16                      # smallest write
        if op == 4:                        # write offset, data
            offset, data = args[1], args[2]
            self.mem[offset:offset + len(data)] = data
            self.writes += 1
            return 0
        if op in (5, 6):                   # finish writing; block size
            return 0 if op == 5 else self.block
        raise ValueError(op)


class _SimulatedBoard:
    def __init__(self, part):
        fake = types.ModuleType("vfs")
        fake.rom_ioctl = part.rom_ioctl
        fake.VfsRom = lambda dev: ("VfsRom", bytes(dev[:3]))
        fake.mount = lambda fs, path: setattr(part, "mounted", (fs, path))
        fake.umount = lambda path: setattr(part, "mounted", None)
        self.vfs = fake
        self.ns = {}
        self.port = "/dev/simulated"
        self.t = self  # mpremote's deploy talks to the transport

    def exec(self, code):
        from mpremote.transport import TransportExecError

        out = io.StringIO()
        saved = sys.modules.get("vfs")
        sys.modules["vfs"] = self.vfs
        try:
            with contextlib.redirect_stdout(out):
                exec(code, self.ns)
        except Exception as e:  # as a board's traceback reaches mpremote
            raise TransportExecError(b"", f"{type(e).__name__}: {e}") from None
        finally:
            if saved is None:
                sys.modules.pop("vfs", None)
            else:
                sys.modules["vfs"] = saved
        return out.getvalue()

    def eval(self, expr):
        return eval(expr, self.ns)


def test_the_image_is_written_into_a_romfs_partition_verified_and_mounted(tmp_path):
    fw = tmp_path / "fw"
    compile_firmware(fw)
    image = romfs_image(fw)
    part = _Partition(256 * 1024, 4096)
    board = _SimulatedBoard(part)
    assert romfs_partition.partition_bytes(board) == 256 * 1024
    assert romfs_partition.deploy(board, image) == "written"
    assert bytes(part.mem[:len(image)]) == image and part.mounted[1] == "/rom"
    writes = part.writes
    assert romfs_partition.deploy(board, image) == "up to date" and part.writes == writes
    small = _SimulatedBoard(_Partition(32 * 1024, 4096))
    with pytest.raises(BoardError, match=f"image is {len(image)} bytes, the board's ROMFS partition 32768"):
        romfs_partition.deploy(small, image)
    # the written partition, mounted by real MicroPython, runs the core
    rom = tmp_path / "partition.romfs"
    rom.write_bytes(bytes(part.mem))
    assert _import_cost(tmp_path, fw, rom)[1] == "/rom/pollen/node.mpy"
