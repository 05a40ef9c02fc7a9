"""CLI `pollen mesh up`: an emulated mesh that a virtual board joins, to try
pollen without hardware (emulation/mesh_up.py). Registered on the `pollen`
group by cli/main.py."""
from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

import click


def register(main):
    main.add_command(mesh)


@click.group()
def mesh():
    """An emulated mesh of real MicroPython nodes to try pollen without hardware."""


@mesh.command("up")
@click.option("--nodes", default=None, type=int,
              help="Number of emulated nodes, 2..40 (default 4 in a line; with --scenario: "
                   "the scenario's count).")
@click.option("--scenario", default=None,
              help="Place the nodes as this simulator scenario does (scenarios/*.yaml or a "
                   "path), e.g. line-10.")
@click.option("--network", "network_file", type=click.Path(dir_okay=False), default=None,
              help="Community network file to run the mesh in (default: "
                   "pollen-mesh.pollen-network.json here, made on the first run: EU868-10, "
                   "ShortFast).")
@click.option("--heap", default="128K", show_default=True,
              help="MicroPython heap size of each node.")
@click.option("--quiet", is_flag=True, help="Do not print what the emulated nodes receive.")
def mesh_up(nodes, scenario, network_file, heap, quiet):
    """Start a virtual radio medium and emulated nodes, print the udp:PORT a
    virtual board is provisioned with to join them, and run until Ctrl-C or
    SIGTERM (which stop every node). A node the mesh does not know joins
    next to its first node when it starts: provision the board, then
    (re)start it.
    The last node shares a small file, welcome.txt, to fetch through the
    board."""
    from pollen_controller.emulation import mesh_up as mu
    from pollen_controller.untrusted import safe_text

    net, net_path, created = mu.mesh_network(Path(network_file) if network_file else None)
    topo = mu.mesh_topology(nodes, scenario)

    def on_event(node, ev):
        if ev.get("event") == "received" and not quiet:
            click.echo(f"node {node.node_id:08x} received a {safe_text(ev.get('kind'))} from "
                       f"{safe_text(ev.get('from'))}: '{safe_text(ev.get('text'))}' "
                       f"({safe_text(ev.get('hops'))} hops)")

    # stopped by a service manager or `timeout` (SIGTERM) as by Ctrl-C: cleanly
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="pollen-mesh-") as work:
        emu = mu.start_mesh(net, topo, Path(work), heap=heap, on_event=on_event)
        try:
            ids = topo.node_ids
            click.echo(f"{'made' if created else 'using'} network {net['name']!r} "
                       f"({net['region']}, {net['preset']}): {net_path}")
            d = topo.diameter()
            across = f"{d} hops across" if d is not None else "not all within reach of each other"
            click.echo(f"mesh up: {len(ids)} nodes ({ids[0]:08x}..{ids[-1]:08x}, {across}), "
                       f"radio medium on udp:{emu.medium.port}")
            click.echo("join it with a virtual board (it starts next to node "
                       f"{ids[0]:08x}):")
            click.echo(f"  pollen provision --port PORT --network {net_path} --name NAME "
                       f"--radio udp:{emu.medium.port}")
            click.echo("  pollen reboot --port PORT")
            shared = mu.share_welcome(emu)
            click.echo(f"node {ids[-1]:08x} shares {shared['name']}: pollen fetch "
                       f"{shared['cid']} --port PORT")
            click.echo("Ctrl-C to stop")
            threading.Event().wait()
        except KeyboardInterrupt:
            click.echo("stopping the mesh")
        finally:
            emu.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
