"""`pollen mesh up`: an emulated mesh to try pollen without hardware, that
a virtual board (or any node provisioned with `--radio udp:PORT`) joins.

It is the demo's mesh (demo_mesh.start_demo_mesh: real MicroPython nodes
beaconing every 5 s on the virtual radio medium) under a community network
the user holds as a file, so `pollen provision --network FILE --radio
udp:PORT` puts a virtual board into it. Its last node shares a small file
(welcome.txt), so `pollen catalog` and `pollen fetch` on the board have
something from the far end of the mesh. The medium places a node it does
not know, when that node first says hello, next to node 1 (a strong link
both ways, Medium.on_join), so the board hears the mesh through it.
"""
from __future__ import annotations

from pathlib import Path

from pollen_controller.board.provisioning import create_network, load_network, save_network
from pollen_controller.emulation.demo_mesh import DEMO_NODE_SETTINGS, start_demo_mesh
from pollen_controller.errors import InputError
from pollen_controller.topology import Link, Topology, line

MAX_NODES = 40
DEFAULT_NETWORK = Path("pollen-mesh.pollen-network.json")
# how a joining node hears node 1 and is heard by it: a good link
JOIN_LINK = Link(-90.0, 6.0)
# the demo's pace, and catalogs re-told every 20 s (not 5 min), so a board
# that joins hears of the mesh's files soon
MESH_SETTINGS = dict(DEMO_NODE_SETTINGS, catalog_interval_ms=20000)


def mesh_network(path: Path | None) -> tuple[dict, Path, bool]:
    """The network of the mesh: the file given, else DEFAULT_NETWORK (made
    once: EU868-10, ShortFast, the demo's pace, and kept for the next run
    so a board provisioned into it stays in it). Returns (network, path,
    created)."""
    if path is not None:
        return load_network(Path(path)), Path(path), False
    if DEFAULT_NETWORK.exists():
        return load_network(DEFAULT_NETWORK), DEFAULT_NETWORK, False
    net = create_network("pollen-mesh", "EU868-10", "ShortFast")
    save_network(net, DEFAULT_NETWORK)
    return net, DEFAULT_NETWORK, True


def mesh_topology(nodes: int | None, scenario: str | None) -> Topology:
    """A line of `nodes` (default 4), or a simulator scenario's placement
    (scaled to `nodes` if given): who hears whom, from its path-loss model."""
    if scenario is None:
        n = 4 if nodes is None else nodes
        if not 2 <= n <= MAX_NODES:
            raise InputError(f"--nodes: expected 2..{MAX_NODES}, got {n}")
        return line(n)
    from pollen_controller.sim.scenario import load_scenario

    sc = load_scenario(scenario)
    if nodes is not None:
        sc = sc.with_nodes(nodes)
    if not 2 <= len(sc.node_ids) <= MAX_NODES:
        raise InputError(f"--scenario {scenario}: has {len(sc.node_ids)} nodes; emulation runs "
                         f"2..{MAX_NODES} real MicroPython processes (give --nodes)")
    return Topology.from_positions(sc.initial_positions(), sc.preset, sc.path_loss_model())


def start_mesh(net: dict, topology: Topology, workdir: Path, heap: str = "128K", on_event=None):
    """The mesh, started and every node up (the caller closes it); nodes
    that say hello unknown join next to the first node."""
    emu = start_demo_mesh(topology, workdir, MESH_SETTINGS, preset=net["preset"],
                          region=net["region"], on_event=on_event, heap=heap,
                          network_key_hex=net["key"])
    first = topology.node_ids[0]
    emu.medium.on_join = lambda node_id: {first: JOIN_LINK}
    return emu


WELCOME = ("Welcome to the pollen mesh.\n"
           "This file was shared by the node at the far end of the emulated mesh;\n"
           "your board fetched it hop by hop, each node on the way keeping a copy.\n")


def share_welcome(emu) -> dict:
    """Share welcome.txt from the mesh's last node; {cid, name, size_bytes, …}."""
    from pollen_controller.node import files_client
    from pollen_controller.node.link import ProcessLink

    last = emu.nodes[emu.topology.node_ids[-1]]
    return files_client.share(ProcessLink(last), WELCOME.encode(), "welcome.txt")
