"""CLI commands for real and virtual boards: build, flash, network, provision,
console, virtual-board. Registered on the `pollen` group by cli/main.py."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click


def register(main):
    main.add_command(build)
    main.add_command(flash)
    main.add_command(network)
    main.add_command(provision)
    main.add_command(console)
    main.add_command(virtual_board)
    main.add_command(deps)


@click.command()
@click.option("--board", "board_id", default=None,
              help="Board profile id (hardware/boards/); without it, generic bytecode.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="build/bundle",
              show_default=True, help="Bundle folder to write.")
@click.option("--zip", "make_zip", is_flag=True, help="Also write the bundle as OUT.zip.")
@click.option("--romfs", is_flag=True,
              help="Also write a ROMFS image of the compiled packages (pollen.romfs), for boards "
                   "whose MicroPython has a ROMFS partition: their code then runs from flash, "
                   "not from the heap (docs/boards.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def build(board_id, out_dir, make_zip, romfs, as_json):
    """Compile firmware/ to .mpy with mpy-cross into an app bundle with a manifest."""
    from pollen_controller.board.build import build_bundle

    m = build_bundle(board_id, Path(out_dir), make_zip, romfs=romfs)
    if as_json:
        click.echo(json.dumps(m))
        return
    total = sum(f["size_bytes"] for f in m["files"])
    click.echo(f"{out_dir}: {len(m['files'])} files, {total} bytes, .mpy {m['mpy_version']}"
               f"{', arch ' + m['arch'] if m['arch'] else ''}, board {m['board'] or 'any'}")
    if m.get("romfs"):
        click.echo(f"ROMFS image: {m['romfs']['path']}, {m['romfs']['size_bytes']} bytes "
                   f"({', '.join(m['romfs']['packages'])})")
    if m["requires"]:
        click.echo("needs from micropython-lib: " + ", ".join(m["requires"]))
    if make_zip:
        click.echo(f"zip: {m['zip']}")


@click.command()
@click.option("--board", "board_id", required=True, help="Board profile id (hardware/boards/).")
@click.option("--port", required=True,
              help="Serial port of the board (or of a virtual board); held exclusively.")
@click.option("--micropython", "image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Also erase and write this MicroPython image first (esptool, or UF2 copy).")
@click.option("--uf2-drive", type=click.Path(file_okay=False), default=None,
              help="RP2040: the mounted RPI-RP2 drive to copy a UF2 image to.")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Offline package cache (default ~/.cache/pollen/mip).")
@click.option("--romfs", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Put the firmware's packages in the board's ROMFS partition, where its "
                   "MicroPython has one large enough (auto; on: or fail; off: never).")
def flash(board_id, port, image, uf2_drive, cache, romfs):
    """Install pollen onto a board: optionally MicroPython itself, then the app
    bundle, the board profile and the radio drivers (from the offline cache).
    Every file is verified by its hash after writing; files whose hash already
    matches are skipped, so running again after an unplug finishes the job.

    The boot entry (main.py) is removed before the first file is written and
    written last, then checked: a flash cut short at any moment (Ctrl-C, an
    unplug) leaves a board that boots to the REPL, never into half an app,
    and pollen provision refuses it until flash has run again. A running
    pollen app is stopped first (Ctrl-C, as mpremote does) and the board is
    reset at the end, so it runs again. The port is held exclusively: a
    second command on it is told who has it. A board whose filesystem is
    FAT is refused: pollen needs LittleFS, whose renames are atomic.

    Where the board's MicroPython has a ROMFS partition (mpremote romfs query),
    the packages go there as one image and run from flash, leaving the heap
    to the node; elsewhere they are .mpy files on the filesystem."""
    from pollen_controller.board import deps as deps_mod
    from pollen_controller.board.build import build_bundle
    from pollen_controller.board.flashing import write_image
    from pollen_controller.board.install import install_bundle
    from pollen_controller.board.profiles import load_board
    from pollen_controller.port_lock import PortLock

    board = load_board(board_id)
    if image:
        click.echo(f"writing {Path(image).name} to {board.name} on {port}...")
        with PortLock(port):
            write_image(board, port, Path(image), uf2_drive)
    with tempfile.TemporaryDirectory() as d:
        bundle = Path(d) / "bundle"
        manifest = build_bundle(board.id, bundle, romfs=romfs != "off")
        # from the cache, before the board is touched (DepsError names what to fetch)
        drivers = deps_mod.driver_files(manifest["requires"], Path(cache) if cache else None)
        with _open_board(port) as b, click.progressbar(length=len(manifest["files"]),
                                                       label="installing", file=sys.stderr) as bar:
            done = {"n": 0}

            def progress(i, n, path):
                bar.length = n  # fewer files when the packages went into ROMFS
                bar.update(i - done["n"])
                done["n"] = i

            result = install_bundle(b, bundle, progress, romfs=romfs, drivers=drivers)
            click.echo(f"{port}: {len(result['written'])} files written, "
                       f"{len(result['skipped'])} already up to date; ROMFS: {result['romfs']}")
            if result["filesystem"] not in ("VfsLfs2", "VfsLfs1", "VfsPosix"):
                click.echo(f"{port}: warning: could not tell the board's filesystem "
                           f"({result['filesystem']}); pollen needs LittleFS (docs/boards.md)",
                           err=True)
            if manifest["requires"]:
                got = result["drivers"]
                click.echo(f"{port}: radio drivers ({', '.join(manifest['requires'])}): "
                           f"{len(got['written'])} files written, {len(got['skipped'])} up to date")
            click.echo(f"{port}: install verified"
                       + (", main.py written last" if "main.py" in result["written"] else ""))
            _restart(b)


def _open_board(port):
    """A Board on port, saying so when it stopped the running app."""
    from pollen_controller.board.transport import Board

    b = Board(port)
    if b.stopped_app:
        click.echo(f"{port}: stopped the running pollen app")
    return b


def _restart(b):
    """Reset a board whose app was stopped, so that it runs again."""
    if b.stopped_app:
        b.reset()
        click.echo(f"{b.port}: reset the board: the app starts again")


@click.group()
def network():
    """Community network files: the shared key, region and radio preset."""


@network.command("create")
@click.argument("name")
@click.option("--region", default="EU868", show_default=True)
@click.option("--preset", default="LongFast", show_default=True)
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="File to write (default NAME.pollen-network.json).")
@click.option("--share", is_flag=True, help="Also print it as a string and a QR code.")
def network_create(name, region, preset, out_path, share):
    """Create a community network with a fresh random 32-byte key."""
    from pollen_controller.board.provisioning import create_network, save_network, share_string

    net = create_network(name, region, preset)
    path = Path(out_path or f"{name}.pollen-network.json")
    if path.exists():
        raise click.UsageError(f"{path} exists; choose another -o (a new key would lock out "
                               "nodes already using it)")
    save_network(net, path)
    click.echo(f"{path}: network {name!r}, {region}, {preset}")
    if share:
        _print_share(share_string(net))


@network.command("share")
@click.argument("network_file", type=click.Path(dir_okay=False))
def network_share(network_file):
    """Print a network file as a compact string and QR code (it contains the key)."""
    from pollen_controller.board.provisioning import load_network, share_string

    _print_share(share_string(load_network(Path(network_file))))


@network.command("import")
@click.argument("string")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None)
def network_import(string, out_path):
    """Write a network file from a shared string."""
    from pollen_controller.board.provisioning import parse_share_string, save_network

    net = parse_share_string(string)
    path = Path(out_path or f"{net['name']}.pollen-network.json")
    save_network(net, path)
    click.echo(f"{path}: network {net['name']!r}, {net['region']}, {net['preset']}")


def _print_share(s):
    click.echo(s)
    try:
        import qrcode
    except ImportError:
        return
    q = qrcode.QRCode(border=1)
    q.add_data(s)
    q.print_ascii(out=sys.stdout)


@click.command()
@click.option("--port", required=True, help="Serial port of the board.")
@click.option("--network", "network_file", required=True, type=click.Path(dir_okay=False),
              help="Community network file (pollen network create).")
@click.option("--name", required=True, help="The node's name (1..16 bytes).")
@click.option("--node-id", default=None, help="8 hex digits (default: random).")
@click.option("--radio", default=None,
              help="'lora' (default when a board profile is installed) or 'udp:PORT' "
                   "(a virtual board on a virtual radio medium).")
def provision(port, network_file, name, node_id, radio):
    """Write the node's config.json (atomically): id, name, network, radio.

    The board must hold a whole pollen install (every file of its manifest,
    main.py last): one cut short is refused, saying to run pollen flash. A
    running pollen app is stopped first and the board reset at the end, so
    the node starts with its new config. The port is held exclusively."""
    from pollen.settings import parse_node_id
    from pollen_controller.board.install import check_installed
    from pollen_controller.board.provisioning import load_network, provision as do_provision

    net = load_network(Path(network_file))
    nid = parse_node_id(node_id, "--node-id") if node_id else None
    radio_cfg = None
    if radio == "lora":
        radio_cfg = {"kind": "lora"}
    elif radio and radio.startswith("udp:") and radio[4:].isdigit():
        radio_cfg = {"kind": "udp", "port": int(radio[4:])}
    elif radio:
        raise click.BadParameter("expected 'lora' or 'udp:PORT'", param_hint="--radio")
    with _open_board(port) as b:
        check_installed(b)  # a flash cut short: provision would make a node that cannot boot
        cfg = do_provision(b, net, name, nid, radio_cfg)
        click.echo(f"{port}: node {cfg['node_id']} {name!r} in network {net['name']!r} "
                   f"({cfg['radio']['kind']} radio)")
        _restart(b)


@click.command()
@click.option("--port", required=True, help="Serial port of the node.")
def console(port):
    """Attach to a node's JSON console: events are printed, typed lines sent
    (e.g. {"cmd": "status"}). Ctrl-C to leave. The port is held exclusively
    while attached: flash, provision and the rest are told who has it."""
    from pollen_controller.node.console import attach

    attach(port)


@click.command("virtual-board")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default="virtual-board",
              show_default=True, help="The board's filesystem.")
@click.option("--heap", default="256K", show_default=True)
def virtual_board(folder, heap):
    """Run a virtual board (a MicroPython unix-port process behind a
    pseudo-terminal) and print its port, for trying flash/provision/console
    without hardware. Ctrl-C to stop."""
    import time

    from pollen_controller.board.virtual import VirtualBoard

    with VirtualBoard(Path(folder), heap) as vb:
        click.echo(f"virtual board on {vb.port} (filesystem {folder}); Ctrl-C to stop")
        while True:
            time.sleep(1)


@click.group()
def deps():
    """micropython-lib packages (the LoRa drivers) in an offline cache."""


@deps.command("fetch")
@click.argument("packages", nargs=-1)
@click.option("--board", "board_id", default=None, help="Fetch what this board's radio needs.")
@click.option("--index", default=None, help="Package index (default: micropython.org's).")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Cache folder (default ~/.cache/pollen/mip).")
def deps_fetch(packages, board_id, index, cache):
    """Download packages once, while online, so pollen flash works offline."""
    from pollen_controller.board import deps as deps_mod

    names = list(packages)
    if board_id:
        from pollen_controller.board.build import RADIO_PACKAGES
        from pollen_controller.board.profiles import load_board

        names += RADIO_PACKAGES.get(load_board(board_id).radio["chip"], [])
    if not names:
        from pollen_controller.board.build import RADIO_PACKAGES

        names = sorted({p for ps in RADIO_PACKAGES.values() for p in ps})
    got = deps_mod.fetch(names, Path(cache) if cache else None, index or deps_mod.DEFAULT_INDEX)
    click.echo("cached: " + ", ".join(got))
