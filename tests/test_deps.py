"""The offline package cache: fetched from a package index (here a local one
with the mip v2 layout, served on 127.0.0.1) and installed onto a virtual
board's /lib."""
import hashlib
import http.server
import json
import threading
import time
from functools import partial

import pytest

from pollen_controller.board import deps
from pollen_controller.board.transport import Board
from pollen_controller.board.virtual import VirtualBoard

FILES = {"lora/fake_modem.py": b"X = 1\n", "lora/fake_async.py": b"Y = 2\n"}


def _short(data):
    return hashlib.sha256(data).hexdigest()[:8]


@pytest.fixture
def index(tmp_path):
    root = tmp_path / "index"
    pkgs = {"fake-lora": (["lora/fake_modem.py"], [["fake-async", "latest"]]),
            "fake-async": (["lora/fake_async.py"], []),
            # stand-ins under the real names, for the flash command
            "lora-sx126x": (["lora/fake_modem.py"], [["lora-async", "latest"]]),
            "lora-async": (["lora/fake_async.py"], [])}
    for name, (paths, dep_list) in pkgs.items():
        meta = {"v": 1, "version": "0.1", "deps": dep_list,
                "hashes": [[p, _short(FILES[p])] for p in paths]}
        d = root / "package" / "6" / name
        d.mkdir(parents=True)
        (d / "latest.json").write_text(json.dumps(meta))
    for data in FILES.values():
        h = _short(data)
        f = root / "file" / h[:2] / h
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", root
    srv.shutdown()


def test_fetch_follows_deps_and_install_works_offline(tmp_path, index):
    url, root = index
    cache = tmp_path / "cache"
    assert deps.fetch(["fake-lora"], cache, url) == ["fake-lora", "fake-async"]
    with VirtualBoard(tmp_path / "board") as vb:
        time.sleep(0.3)
        with Board(vb.port) as b:
            first = deps.install(b, ["fake-lora"], cache)  # no network needed now
            again = deps.install(b, ["fake-lora"], cache)
            assert b.exec("import lora.fake_modem as m\nprint(m.X)").strip() == "1"
    assert sorted(first["written"]) == ["lib/lora/fake_async.py", "lib/lora/fake_modem.py"]
    assert again["written"] == [] and len(again["skipped"]) == 2


def test_missing_cache_and_unreachable_index_say_what_to_do(tmp_path, index):
    url, root = index
    with pytest.raises(deps.DepsError, match="pollen deps fetch fake-lora"):
        deps.cached_files(["fake-lora"], tmp_path / "empty")
    with pytest.raises(deps.DepsError, match="needs Internet"):
        deps.fetch(["fake-lora"], tmp_path / "c", "http://127.0.0.1:9")
    with pytest.raises(deps.DepsError, match="HTTP 404"):
        deps.fetch(["no-such-package"], tmp_path / "c", url)


def test_a_damaged_package_description_says_so(tmp_path, index):
    url, root = index
    cache = tmp_path / "cache"
    deps.fetch(["fake-lora"], cache, url)
    (cache / "packages" / "fake-async.json").write_text("{half")
    with pytest.raises(deps.DepsError, match="fake-async: cached .* is damaged; run "
                                             "'pollen deps fetch fake-async' again"):
        deps.cached_files(["fake-lora"], cache)
    (root / "package" / "6" / "fake-lora" / "latest.json").write_text("<html>")
    with pytest.raises(deps.DepsError, match="not a package description"):
        deps.fetch(["fake-lora"], tmp_path / "c", url)


def test_a_tampered_file_in_the_index_is_refused(tmp_path, index):
    url, root = index
    h = _short(FILES["lora/fake_async.py"])
    (root / "file" / h[:2] / h).write_bytes(b"evil = True\n")
    with pytest.raises(deps.DepsError, match="does not match its hash"):
        deps.fetch(["fake-lora"], tmp_path / "cache", url)


def test_pollen_flash_installs_app_profile_and_drivers_from_the_cache(tmp_path, index):
    from click.testing import CliRunner

    from pollen_controller.cli.main import main

    url, root = index
    cache = tmp_path / "cache"
    r = CliRunner().invoke(main, ["deps", "fetch", "--board", "rpi-pico-waveshare-sx1262",
                                  "--index", url, "--cache", str(cache)])
    assert r.exit_code == 0 and "lora-sx126x" in r.output, r.output
    with VirtualBoard(tmp_path / "board") as vb:
        time.sleep(0.3)
        args = ["flash", "--board", "rpi-pico-waveshare-sx1262", "--port", vb.port,
                "--cache", str(cache)]
        t0 = time.monotonic()
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        assert "radio drivers (lora-sx126x, lora-async): 2 files written" in r.output
        r = CliRunner().invoke(main, args)  # again: nothing to do
        assert "0 files written" in r.output and "2 up to date" in r.output
        board_json = json.loads((vb.folder / "board.json").read_text())
        assert board_json["id"] == "rpi-pico-waveshare-sx1262"
        assert (vb.folder / "lib" / "lora" / "fake_modem.py").exists()
        assert time.monotonic() - t0 < 30
