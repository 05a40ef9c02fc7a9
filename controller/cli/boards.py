"""CLI commands for real and virtual boards: build, flash, network, provision,
console, virtual-board. Registered on the `pollen` group by cli/main.py."""
from __future__ import annotations

import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import click

from pollen.airtime import PRESETS  # small tables: --help lists the choices
from pollen.region import REGIONS
from pollen_controller.board.profiles import board_ids

_BOARDS = ("Board profile: " + ", ".join(board_ids())
           + " (hardware/boards/), or the path of a profile file.")


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
              help=_BOARDS + " Without it, generic bytecode.")
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
@click.option("--board", "board_id", required=True,
              help=_BOARDS[:-1] + "; virtual (a virtual board: pollen virtual-board; no radio "
                                  "drivers, so it flashes offline).")
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


@contextmanager
def _restarted_if_refused(b):
    """A refusal after the running app was stopped (a config provision
    cannot keep, a band the board lacks) leaves the config as it was: the
    board is reset so that the node runs again, not left in the REPL."""
    try:
        yield
    except Exception:
        if b.stopped_app:
            try:
                b.reset()
                click.echo(f"{b.port}: reset the board: the app starts again (its config "
                           "unchanged)")
            except Exception:  # the first error is the one to tell
                pass
        raise


@click.group()
def network():
    """Community network files: the shared key, region and radio preset.

    A network is passed on as a `pollen2:` string (with a checksum: a typo is
    refused) or its QR code; its key fingerprint, shown by every command
    here, is what two organisers read aloud to know they hold the same key."""


def _region_help():
    return ", ".join(f"{r} ({f / 1e6:g} MHz)" for r, (f, *_) in REGIONS.items())


@network.command("create")
@click.argument("name")
@click.option("--region", default="EU868", show_default=True,
              type=click.Choice(list(REGIONS),
                                case_sensitive=True),
              help="Radio rules and frequency: " + _region_help() + ".")
@click.option("--preset", default="LongFast", show_default=True,
              type=click.Choice(list(PRESETS),
                                case_sensitive=True),
              help="LoRa modulation (docs/config.md); US915, AU915 and AS923 need MediumFast "
                   "or faster (400 ms dwell).")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="File to write (default NAME.pollen-network.json).")
@click.option("--share", is_flag=True, help="Also print it as a string and a QR code.")
def network_create(name, region, preset, out_path, share):
    """Create a community network with a fresh random 32-byte key."""
    from pollen_controller.board.network_files import (create_network, default_path,
                                                       save_network, share_string)

    net = create_network(name, region, preset)
    path = Path(out_path) if out_path else default_path(net)
    if path.exists():
        raise click.UsageError(f"{path} exists; choose another -o (a new key would lock out "
                               "nodes already using it)")
    save_network(net, path)
    _describe(path, net)
    if share:
        _print_share(share_string(net))


@network.command("share")
@click.argument("network_file", type=click.Path(dir_okay=False))
def network_share(network_file):
    """Print a network file as a compact `pollen2:` string, its key
    fingerprint and a QR code (the string and the code contain the key)."""
    from pollen_controller.board.network_files import key_fingerprint, load_network, share_string

    net = load_network(Path(network_file))
    _print_share(share_string(net), key_fingerprint(net["key"]))


@network.command("import")
@click.argument("string")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="File to write (default NAME.pollen-network.json).")
@click.option("--force", is_flag=True,
              help="Replace an existing file that holds a different key.")
def network_import(string, out_path, force):
    """Write a network file from a shared string (`pollen2:`, or an older
    `pollen1:` one). A string with a typo is refused, naming where. An
    existing file with another key is not replaced without --force (nodes
    provisioned from it would no longer be in the network); one with the
    same key is updated."""
    from pollen_controller.board.network_files import (default_path, has_checksum,
                                                       key_fingerprint, load_network,
                                                       parse_share_string, save_network)
    from pollen_controller.errors import NetworkError

    net = parse_share_string(string)
    path = Path(out_path) if out_path else default_path(net)
    if path.exists():
        try:
            old = load_network(path)
        except NetworkError as e:
            if not force:
                raise NetworkError(f"{path} exists and is not a network file pollen can read "
                                   f"({e}); --force to replace it, or -o another file") from None
            old = None
        if old and old["key"] != net["key"] and not force:
            raise NetworkError(
                f"{path} holds network {old['name']!r} with another key (fingerprint "
                f"{key_fingerprint(old['key'])}; the string's is {key_fingerprint(net['key'])}); "
                "nodes provisioned from it would be locked out: -o another file, or --force "
                "to replace it")
        if old == net:
            click.echo(f"{path}: unchanged (it already holds this network, same key)")
        elif old and old["key"] == net["key"]:
            changed = [k for k in ("name", "region", "preset") if old[k] != net[k]]
            save_network(net, path)
            click.echo(f"{path}: same key; updated {', '.join(changed)}")
        else:
            save_network(net, path)
            click.echo(f"{path}: replaced (--force)")
    else:
        save_network(net, path)
    _describe(path, net)
    if not has_checksum(string):
        click.echo("warning: a pollen1: string has no checksum, so a typo in it cannot be "
                   "caught: compare the key fingerprint with the organiser's", err=True)


@network.command("info")
@click.argument("file_or_string")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (no key).")
def network_info(file_or_string, as_json):
    """Show a network file (or a shared string) without its key: name,
    region, preset and the key fingerprint to compare aloud."""
    from pollen_controller.board.network_files import (OLD_SHARE_PREFIX, SHARE_PREFIX,
                                                       key_fingerprint, load_network,
                                                       parse_share_string)

    if file_or_string.lstrip().startswith((SHARE_PREFIX, OLD_SHARE_PREFIX)):
        net, source = parse_share_string(file_or_string), "string"
    else:
        net, source = load_network(Path(file_or_string)), file_or_string
    if as_json:
        click.echo(json.dumps({"source": source, "name": net["name"], "region": net["region"],
                               "preset": net["preset"],
                               "key_fingerprint": key_fingerprint(net["key"])}))
        return
    _describe(source, net)


@network.command("rotate")
@click.argument("network_file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: beside FILE, dated, e.g. "
                   "village-2026-12-08.pollen-network.json).")
@click.option("--force", is_flag=True,
              help="Replace an existing --out file, even FILE itself (its key is then gone).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: both files and fingerprints (no key).")
def network_rotate(network_file, out_path, force, as_json):
    """Give a network a new random key, keeping its name, region and preset:
    what to do when a node is lost or a key has leaked (docs/boards.md,
    "When a node is lost").

    FILE is left as it is; the new network goes to a new file. Re-provision
    each node you keep with it (pollen provision --port PORT --network
    NEWFILE: the node keeps its id, name and settings). A node that is not
    re-provisioned keeps the old key and is shut out: it can no longer read
    the network's frames nor send any the others accept."""
    from pollen_controller.board.network_files import (key_fingerprint, load_network,
                                                       rotate_network, rotated_path,
                                                       save_network)
    from pollen_controller.errors import NetworkError

    old_path = Path(network_file)
    old = load_network(old_path)
    path = Path(out_path) if out_path else rotated_path(old_path)
    if path.exists() and not force:
        same = path.resolve() == old_path.resolve()
        raise NetworkError(f"{path} exists" + (" (it is FILE)" if same else "") +
                           "; choose another --out, or --force to replace it (its key is then "
                           "gone, and nodes still using it are shut out)")
    new = rotate_network(old)
    save_network(new, path)
    old_fp, new_fp = key_fingerprint(old["key"]), key_fingerprint(new["key"])
    kept_old = path.resolve() != old_path.resolve()
    if as_json:
        click.echo(json.dumps({"name": new["name"], "region": new["region"], "preset": new["preset"],
                               "old": {"file": str(old_path), "key_fingerprint": old_fp,
                                       "kept": kept_old},
                               "new": {"file": str(path), "key_fingerprint": new_fp}}))
        return
    click.echo(f"{old_path}: network {old['name']!r}, old key fingerprint {old_fp}" +
               (" (file left as it was)" if kept_old else " (file replaced: that key is gone)"))
    click.echo(f"{path}: the same network with a new key, fingerprint {new_fp}")
    click.echo("next:\n"
               "  1. re-provision every node you keep, with the new file (each keeps its id,\n"
               "     name and settings):\n"
               f"       pollen provision --port PORT --network {path}\n"
               "     until all are done, the re-provisioned nodes and the others cannot hear\n"
               "     each other: do them in one round\n"
               "  2. a node you do not re-provision (the lost one) is shut out: it lacks the\n"
               "     new key\n"
               "  3. pass the new network on only to people you trust:\n"
               f"       pollen network share {path}\n"
               "     and delete the old file once every node you keep is re-provisioned")


def _describe(source, net):
    from pollen_controller.board.network_files import key_fingerprint

    freq_hz, duty_per_mille = REGIONS[net["region"]][:2]
    duty = f", duty cycle {duty_per_mille / 10:g} %" if duty_per_mille else ""
    click.echo(f"{source}: network {net['name']!r}, {net['region']} ({freq_hz / 1e6:g} MHz"
               f"{duty}), preset {net['preset']}")
    click.echo(f"key fingerprint: {key_fingerprint(net['key'])} (read it aloud to compare; "
               "the key itself is not shown)")


def _print_share(s, fingerprint=None):
    click.echo(s)
    if fingerprint:
        click.echo(f"key fingerprint: {fingerprint}")
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
@click.option("--name", default=None,
              help="The node's name: printable, not blank, 1..16 bytes of UTF-8. Required "
                   "the first time; later the board's own name is kept unless given.")
@click.option("--node-id", default=None,
              help="8 hex digits: a node WITHOUT an identity (no private messages; tests, old "
                   "networks). Default: the id the board already has, else a new identity "
                   "and the id its key gives.")
@click.option("--new-identity", is_flag=True,
              help="Give a node that has an id but no identity one (its id changes to its "
                   "key's). A node's identity is otherwise kept.")
@click.option("--radio", default=None,
              help="'lora' (default when a board profile is installed) or 'udp:PORT', PORT "
                   "1..65535 (a virtual board on a virtual radio medium). Default: the "
                   "board's current radio setting, if it was set for this board.")
def provision(port, network_file, name, node_id, radio, new_identity):
    """Write the node's config.json (atomically): id, name, network, radio, identity.

    A new node gets an identity: an X25519 key pair made here, its id the
    public key's (docs/identity.md). The secret goes to the node and to a
    backup on this host (XDG_DATA_HOME/pollen/identities, readable by you
    only), nowhere else. Re-provisioning (another network, a new key) keeps
    the node's identity: its key, id, name, radio and other settings are read
    from its config.json and kept unless given. A network whose frequency lies outside the band the
    board is built for (its profile's radio.bands_mhz) is refused. The board
    must hold a whole pollen install (every file of its manifest, main.py
    last): one cut short is refused, saying to run pollen flash. A running
    pollen app is stopped first and the board reset at the end, so the node
    starts with its new config (or, when provision refuses, with its config
    unchanged). The port is held exclusively."""
    from pollen.settings import parse_node_id
    from pollen_controller.board.install import check_installed
    from pollen_controller.board.node_config import check_name, parse_radio
    from pollen_controller.board.provisioning import load_network, provision as do_provision

    net = load_network(Path(network_file))
    nid = parse_node_id(node_id, "--node-id") if node_id else None
    if name is not None:
        check_name(name, "--name")
    radio_cfg = parse_radio(radio) if radio is not None else None
    kept = []
    with _open_board(port) as b, _restarted_if_refused(b):
        check_installed(b)  # a flash cut short: provision would make a node that cannot boot
        cfg = do_provision(b, net, name, nid, radio_cfg, kept=kept, identity=new_identity)
        radio = cfg["radio"]
        radio_text = radio["kind"] + (f":{radio['port']}" if "port" in radio else "")
        click.echo(f"{port}: node {cfg['node_id']} {cfg['name']!r} in network {net['name']!r} "
                   f"({radio_text} radio)")
        if kept:
            click.echo(f"kept from the board's config.json: {', '.join(kept)}")
        if cfg.get("identity_key"):
            from pollen_controller.board.identity_backup import save_backup
            click.echo(f"identity backed up in {save_backup(cfg)}")
        else:
            click.echo("no identity: this node sends and takes no private messages "
                       "(pollen provision --new-identity gives it one)")
        _restart(b)


@click.command()
@click.option("--port", required=True, help="Serial port of the node.")
def console(port):
    """Attach to a node's JSON console: events are printed, typed lines sent
    (e.g. {"cmd": "status"}). Ctrl-C to leave (or Ctrl-D on a terminal).
    Input from a pipe or a file is sent, and the node's answers shown after
    it ends, until the node is 2 s silent (10 s at most): echo '{"cmd":
    "status"}' | pollen console --port P. The port is held exclusively while
    attached: flash, provision and the rest are told who has it."""
    from pollen_controller.node.console import attach

    attach(port, listen_after_input=not sys.stdin.isatty())


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
@click.option("--board", "board_id", default=None,
              help="Fetch what this board's radio needs. " + _BOARDS)
@click.option("--index", default=None, help="Package index (default: micropython.org's).")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Cache folder (default ~/.cache/pollen/mip).")
def deps_fetch(packages, board_id, index, cache):
    """Download packages once, while online, so pollen flash works offline."""
    from pollen_controller.board import deps as deps_mod

    names = list(packages)
    if board_id:
        from pollen_controller.board.build import radio_packages
        from pollen_controller.board.profiles import load_board

        names += radio_packages(load_board(board_id))
    if not names:
        from pollen_controller.board.build import RADIO_PACKAGES

        names = sorted({p for ps in RADIO_PACKAGES.values() for p in ps})
    got = deps_mod.fetch(names, Path(cache) if cache else None, index or deps_mod.DEFAULT_INDEX)
    click.echo("cached: " + ", ".join(got))
