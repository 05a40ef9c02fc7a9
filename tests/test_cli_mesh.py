"""`pollen mesh up` as a user runs it: the mesh comes up, prints the
udp:PORT to join, a node it does not know joins next to its first node and
fetches the file its last node shares, and Ctrl-C stops every process."""
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from fakes.processes import children_of, still_alive
from pollen_controller.board.firmware import compile_firmware
from pollen_controller.board.provisioning import load_network
from pollen_controller.emulation.node_process import NodeProcess
from pollen_controller.node import files_client
from pollen_controller.node.link import ProcessLink

POLLEN = str(Path(sys.executable).with_name("pollen"))


def test_mesh_up_is_joined_by_an_unknown_node_and_stops_on_ctrl_c(tmp_path):
    r = subprocess.run([POLLEN, "mesh", "up", "--nodes", "1"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("pollen: --nodes: expected 2..40, got 1")
    p = subprocess.Popen([POLLEN, "mesh", "up", "--nodes", "2", "--quiet"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    joiner = None
    try:
        lines = []
        while not lines or "Ctrl-C to stop" not in lines[-1]:
            line = p.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        out = "".join(lines)
        port = int(re.search(r"--radio udp:(\d+)", out).group(1))
        cid = re.search(r"shares welcome.txt: pollen fetch (\w+)", out).group(1)
        net_file = tmp_path / "pollen-mesh.pollen-network.json"
        net = load_network(net_file)   # made by this first run, kept for the next
        assert (net["region"], net["preset"]) == ("EU868-10", "ShortFast")
        assert oct(net_file.stat().st_mode & 0o777) == "0o600"
        children = children_of(p.pid)
        assert len(children) == 2
        # a node the mesh does not know (as a provisioned virtual board is)
        compile_firmware(tmp_path / "fw")
        joiner = NodeProcess(0x77, tmp_path / "joiner", {
            "node_id": "00000077", "name": "visitor", "network_key": net["key"],
            "region": net["region"], "preset": net["preset"], "beacon_interval_ms": 2000,
            "radio": {"kind": "udp", "port": port}}, tmp_path / "fw")
        joiner.start()
        link = ProcessLink(joiner)
        got = files_client.fetch(link, cid, timeout_s=60)   # from node 2, through node 1
        m, data = files_client.read_out(link, got["cid"])
        assert m.name == "welcome.txt" and data.startswith(b"Welcome to the pollen mesh")
        st = link.ask({"cmd": "status"}, "status")
        assert [n["id"] for n in st["neighbours"]] == ["00000001"]
    finally:
        if joiner is not None:
            joiner.stop(hard=True)
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=30)
    assert p.returncode == 0 and "stopping the mesh" in rest
    time.sleep(0.3)
    assert still_alive(children) == []
