"""The `pollen` command as a user runs it."""
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from fakes.processes import children_of, still_alive
from pollen_controller.cli.main import main, render_summary

POLLEN = str(Path(sys.executable).with_name("pollen"))


def test_help_lists_demo_and_is_instant():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "demo" in r.output


def test_bad_demo_options_name_the_option():
    r = subprocess.run([POLLEN, "demo", "--nodes", "7"], capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.startswith("pollen: --nodes: expected an even number")
    r = subprocess.run([POLLEN, "demo", "--loss", "1.5"], capture_output=True, text=True)
    assert r.returncode != 0 and "--loss" in r.stderr


def test_demo_json_on_real_micropython_nodes():
    # (from .mpy files in the heap, as a stock MicroPython build: the 128K
    # that must hold; private messages are the core tests' and the default
    # demo's, which runs from ROMFS: docs/emulation.md)
    r = subprocess.run([POLLEN, "demo", "--nodes", "8", "--file-kib", "1", "--no-romfs", "--json"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["nodes"] == 8 and out["runtime"].startswith("micropython 1.")
    assert out["unicast"]["sent"] == 7
    said = r.stderr[-3000:]  # the progress lines: what arrived when
    assert out["unicast"]["delivered"] == out["unicast"]["sent"], said  # lossless: everything
    assert out["broadcast"]["reach"] == 1.0, said
    assert out["store_and_forward"]["delivered"] is True, said
    assert out["latency_ms"]["p50"] > 0 and out["latency_ms"]["p95"] >= out["latency_ms"]["p50"]
    assert 0 < out["peak_heap_bytes"] < 128 * 1024
    assert out["internal_errors"] == 0
    h = out["health"]   # every node kept hearing, running and answering
    assert (h["deaf_nodes"], h["stopped_nodes"], h["unanswered_status"]) == ([], [], 0), h
    assert h["clean"] == (h["task_failures"] == h["memory_drops"] == 0), h
    assert out["tx_per_delivered"] > 0
    assert out["missed"] == []   # (7/7 and reach 1.0 above: nothing to list)
    assert " got msg from " in r.stderr  # live progress went to stderr
    # a file shared at one end, fetched at the other, read out and checked
    f = out["file"]
    assert f["size_bytes"] == 1024 and f["completed"] is True and f["verified"] is True, \
        f.get("error")  # the whole dict's repr is cut short, and the error is what tells
    assert f["seconds"] > 0 and f["hops"] == 3
    assert " has the file; read out and verified" in r.stderr
    text = render_summary(out)
    assert "messages delivered   7/7" in text
    assert "file fetched         1024 bytes across 3 hops in" in text
    assert ("health               clean" if h["clean"] else "health               NOT clean: ") in text
    # no identities here: no adverts, and the table does not mention them;
    # with --private the table counts them apart from the data frames
    assert out["tx_frames"]["adverts"] == 0 and "identity adverts" not in text
    out["tx_frames"]["adverts"] = 242
    assert "(+%d beacons, +242 identity adverts and asks)" % out["tx_frames"]["beacons"] \
        in render_summary(out)


def test_ctrl_c_stops_the_demo_and_leaves_no_process_behind():
    import signal
    import time

    p = subprocess.Popen([POLLEN, "demo", "--nodes", "6"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert "nodes running" in p.stdout.readline()
    children = children_of(p.pid)
    assert len(children) == 6
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 130 and "pollen: interrupted" in out
    time.sleep(0.3)
    assert still_alive(children) == []


def test_help_says_what_pollen_does_now():
    r = CliRunner().invoke(main, ["--help"])
    assert "(later)" not in r.output and "flash and provision boards" in r.output


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path):
    # `pollen network share F | head -1`: the pipe closes before pollen writes
    subprocess.run([POLLEN, "network", "create", "v", "-o", "v.json"], cwd=tmp_path, check=True,
                   capture_output=True)
    p = subprocess.Popen([POLLEN, "network", "share", "v.json"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert err == "" and p.returncode == 1


def test_region_preset_and_board_help_list_the_choices():
    r = CliRunner().invoke(main, ["network", "create", "--help"])
    assert "EU868 (868.1 MHz)" in r.output and "EU433 (433.175 MHz)" in r.output
    assert "MediumFast" in r.output and "LongSlow" in r.output
    r = CliRunner().invoke(main, ["flash", "--help"])
    assert "rak11310" in r.output and "heltec-wifi-lora-32-v3" in r.output
    # and the one a user without hardware flashes (README: --board virtual)
    assert "virtual (a virtual board" in " ".join(r.output.split())
