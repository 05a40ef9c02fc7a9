"""Flashing that cannot leave a board unbootable, and flash/provision on a
board whose app runs (issue 14, items 6 and 7), on a virtual board: main.py
goes first and comes back last, so a flash cut at any moment leaves a board
that boots to the REPL; provision refuses an incomplete install; a running
app is stopped with Ctrl-C and the board reset afterwards."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from pollen_controller.board import provisioning as pv
from pollen_controller.board.build import build_bundle
from pollen_controller.board.install import check_installed, install_bundle
from pollen_controller.board.transport import Board, BoardError
from pollen_controller.board.virtual import VirtualBoard

POLLEN = str(Path(sys.executable).with_name("pollen"))
BOARD = "rpi-pico-waveshare-sx1262"
OLD = b"an older version\n"


def _cache(folder: Path) -> Path:
    """An offline package cache with stand-ins for the board's radio drivers."""
    files = {"lora/fake_modem.py": b"X = 1\n", "lora/fake_async.py": b"Y = 2\n"}
    short = {p: hashlib.sha256(d).hexdigest()[:8] for p, d in files.items()}
    for name, path, deps in (("lora-sx126x", "lora/fake_modem.py", [["lora-async", "latest"]]),
                             ("lora-async", "lora/fake_async.py", [])):
        (folder / "packages").mkdir(parents=True, exist_ok=True)
        (folder / "packages" / f"{name}.json").write_text(
            json.dumps({"deps": deps, "hashes": [[path, short[path]]]}))
    for path, data in files.items():
        (folder / "files").mkdir(parents=True, exist_ok=True)
        (folder / "files" / short[path]).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    build_bundle(None, folder)
    return folder


@pytest.fixture
def installed(tmp_path, bundle):
    """A virtual board with pollen installed, then made an older version (its
    modules replaced on the board's filesystem), and a network file."""
    with VirtualBoard(tmp_path / "board") as vb:
        time.sleep(0.3)
        with Board(vb.port) as b:
            install_bundle(b, bundle)
        for p in vb.folder.rglob("*.mpy"):
            p.write_bytes(OLD)
        pv.save_network(pv.create_network("village", "EU868", "ShortFast"), tmp_path / "v.json")
        yield vb


def _restored(folder: Path) -> int:
    return sum(p.read_bytes() != OLD for p in folder.rglob("*.mpy"))


@pytest.mark.parametrize("cut_at", [1, 20])  # after the first file, after 20
def test_an_install_cut_short_leaves_no_boot_entry_and_provision_refuses(bundle, installed, cut_at):
    vb = installed

    def cut(i, n, path):
        if i == cut_at:
            raise KeyboardInterrupt  # Ctrl-C between two files

    with Board(vb.port) as b:
        with pytest.raises(KeyboardInterrupt):
            install_bundle(b, bundle, cut)
    assert not (vb.folder / "main.py").exists()  # the board boots to the REPL
    assert _restored(vb.folder) == cut_at
    with Board(vb.port) as b:
        with pytest.raises(BoardError, match="incomplete .main.py is missing; a flash cut short.*"
                                             "run pollen flash --board BOARD --port"):
            check_installed(b)
        got = install_bundle(b, bundle)  # running it again finishes the job
        assert got["written"][-1] == "main.py" and len(got["skipped"]) == cut_at
        assert check_installed(b)["files"]


def test_a_board_with_changed_files_or_no_pollen_is_refused_by_provision(tmp_path, installed):
    r = subprocess.run([POLLEN, "provision", "--port", installed.port, "--network", "v.json",
                        "--name", "n"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 1
    # every module was made an older version: all files but main.py are changed
    modules = sum(1 for _ in installed.folder.rglob("*.mpy"))
    files = len(json.loads((installed.folder / "manifest.json").read_text())["files"])
    assert r.stderr.startswith(f"pollen: {installed.port}: the pollen install on this board is "
                               f"incomplete ({modules} of {files} files missing or changed: "
                               "pollen/__init__.mpy"), r.stderr
    assert not (installed.folder / "config.json").exists()
    (installed.folder / "manifest.json").unlink()
    with Board(installed.port) as b:
        with pytest.raises(BoardError, match="pollen is not installed on this board, or its flash was "
                                             "cut short .no manifest.json.; run pollen flash --board BOARD"):
            check_installed(b)


def test_pollen_flash_interrupted_by_sigint_then_run_again(tmp_path, installed):
    """A real Ctrl-C (SIGINT) to `pollen flash` while it rewrites the modules."""
    vb = installed
    args = [POLLEN, "flash", "--board", BOARD, "--port", vb.port, "--cache", str(_cache(tmp_path / "c"))]
    # (SIGINT as a terminal gives it: an xdist worker ignores SIGINT, and a
    # child would inherit that, as test_cli.py's Ctrl-C test says)
    flash = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    end = time.monotonic() + 30
    while _restored(vb.folder) < 5 and time.monotonic() < end and flash.poll() is None:
        time.sleep(0.01)
    flash.send_signal(signal.SIGINT)
    out, err = flash.communicate(timeout=30)
    total = sum(1 for _ in vb.folder.rglob("*.mpy"))
    assert flash.returncode != 0 and 5 <= _restored(vb.folder) < total, (out, err)
    assert not (vb.folder / "main.py").exists()
    provision = [POLLEN, "provision", "--port", vb.port, "--network", "v.json", "--name", "n"]
    r = subprocess.run(provision, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and "incomplete (main.py is missing" in r.stderr, r.stderr
    assert f"run pollen flash --board {BOARD} --port {vb.port}" in r.stderr
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and f"{vb.port}: install verified, main.py written last" in r.stdout
    r = subprocess.run(provision, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads((vb.folder / "config.json").read_text())["name"] == "n"


def _wait_started(port):
    s = serial.Serial(port, timeout=0.2)
    buf, end = b"", time.monotonic() + 15
    while b'"started"' not in buf and time.monotonic() < end:
        buf += s.read(256)
    s.close()
    assert b'"started"' in buf, buf[-200:]


def test_flash_and_provision_stop_a_running_app_and_start_it_again(tmp_path, bundle):
    from click.testing import CliRunner

    from pollen_controller.cli.main import main

    net = pv.create_network("village", "EU868", "ShortFast")
    pv.save_network(net, tmp_path / "v.json")
    with VirtualBoard(tmp_path / "board") as vb:
        with Board(vb.port) as b:
            assert not b.stopped_app  # the REPL was idle
            install_bundle(b, bundle)
            pv.provision(b, net, "vb", 0x101, {"kind": "udp", "port": 9})
            b.reset()  # the board boots the app
        _wait_started(vb.port)
        boots = vb.boots
        t0 = time.monotonic()
        r = CliRunner().invoke(main, ["provision", "--port", vb.port, "--network",
                                      str(tmp_path / "v.json"), "--name", "renamed"])
        assert r.exit_code == 0, r.output
        assert r.output.splitlines() == [
            f"{vb.port}: stopped the running pollen app",
            f"{vb.port}: node {json.loads((vb.folder / 'config.json').read_text())['node_id']} "
            "'renamed' in network 'village' (udp:9 radio)",
            "kept from the board's config.json: node_id, radio",
            "no identity: this node sends and takes no private messages "
            "(pollen provision --new-identity gives it one)",   # (provisioned with an id of ours)
            f"{vb.port}: reset the board: the app starts again"]
        assert time.monotonic() - t0 < 5  # no waiting out timeouts
        end = time.monotonic() + 10
        while vb.boots == boots and time.monotonic() < end:
            time.sleep(0.05)
        assert vb.boots == boots + 1
        _wait_started(vb.port)
        with Board(vb.port) as b:  # and the app runs again: stopped once more
            assert b.stopped_app and b.eval("1 + 1") == 2


def test_a_provision_refused_after_stopping_the_app_starts_it_again(tmp_path, bundle):
    # the node must not be left down in the REPL by a refusal: its config is
    # unchanged, so it runs again with it (and the user is told)
    from click.testing import CliRunner

    from pollen_controller.cli.main import main

    net = pv.create_network("village", "EU868", "ShortFast")
    pv.save_network(net, tmp_path / "v.json")
    with VirtualBoard(tmp_path / "board") as vb:
        with Board(vb.port) as b:
            install_bundle(b, bundle)
            pv.provision(b, net, "vb", 0x101, {"kind": "udp", "port": 9})
            b.reset()
        _wait_started(vb.port)
        before = (vb.folder / "config.json").read_text()
        boots = vb.boots
        r = CliRunner().invoke(main, ["provision", "--port", vb.port, "--network",
                                      str(tmp_path / "v.json"), "--node-id", "zz00zz00"])
        assert r.exit_code == 1   # refused before the port is opened: the app never stopped
        (vb.folder / "config.json").write_text(before.replace('"vb"', '"v\\u001bb"'))
        r = CliRunner().invoke(main, ["provision", "--port", vb.port, "--network",
                                      str(tmp_path / "v.json")])
        assert r.exit_code == 1 and "expected printable characters" in r.output, r.output
        assert f"{vb.port}: stopped the running pollen app" in r.output
        assert f"{vb.port}: reset the board: the app starts again (its config unchanged)" in r.output
        end = time.monotonic() + 10
        while vb.boots == boots and time.monotonic() < end:
            time.sleep(0.05)
        assert vb.boots == boots + 1
