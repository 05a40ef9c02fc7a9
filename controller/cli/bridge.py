"""CLI command `pollen bridge meshtastic`: an attached node's mesh <-> a
Meshtastic channel. Registered on the `pollen` group by cli/main.py."""
from __future__ import annotations

import threading
from pathlib import Path

import click


def register(main):
    main.add_command(bridge)


@click.group()
def bridge():
    """Bridges between a pollen mesh and other networks."""


@bridge.command()
@click.option("--port", required=True,
              help="Serial port of the attached pollen node; held exclusively.")
@click.option("--meshtastic-port", "mesh_port", default=None,
              help="Serial port of the Meshtastic device (e.g. /dev/ttyACM0).")
@click.option("--meshtastic-host", "mesh_host", default=None,
              help="A Meshtastic node or meshtasticd on the network: HOST[:PORT] (port 4403 by default).")
@click.option("--channel", required=True, type=click.IntRange(0, 7),
              help="Index of the Meshtastic channel to bridge (0 is the primary).")
@click.option("--map", "maps", multiple=True, metavar="POLLENID=!MESHID",
              help="Bridge direct messages between these two nodes (repeatable).")
@click.option("--outbox", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where texts wait for either side (default: under the user's data directory).")
@click.option("--rate-to-meshtastic", "rate_mesh", default=6.0, show_default=True, type=float,
              help="Texts a minute into Meshtastic, on average (bursts of 3).")
@click.option("--rate-to-pollen", "rate_pollen", default=20.0, show_default=True, type=float,
              help="Texts a minute into pollen, on average (bursts of 5).")
def meshtastic(port, mesh_port, mesh_host, channel, maps, outbox, rate_mesh, rate_pollen):
    """Relay texts between the attached node's mesh (its posts) and one
    channel of a Meshtastic device, and direct messages between the node
    ids given with --map (docs/meshtastic.md). Each bridged text says who
    wrote it and carries the bridging mark, so no bridge or gateway brings
    it back. Runs until Ctrl-C; texts wait on disk while either side is away."""
    from pollen_controller.bridge_meshtastic.bridge import MeshtasticBridge
    from pollen_controller.bridge_meshtastic.device import Device, parse_host
    from pollen_controller.bridge_meshtastic.relay import IdMap, RateLimit
    from pollen_controller.cli.gateway import _data_dir
    from pollen_controller.node.link import SerialLink
    from pollen_controller.untrusted import safe_text

    if (mesh_port is None) == (mesh_host is None):
        raise click.UsageError("give --meshtastic-port DEV or --meshtastic-host HOST[:PORT]")
    ids = IdMap(maps)
    rates = (RateLimit(rate_mesh, 3, "--rate-to-meshtastic"),
             RateLimit(rate_pollen, 5, "--rate-to-pollen"))
    host, tcp_port = parse_host(mesh_host) if mesh_host else (None, None)
    say = lambda s: click.echo(safe_text(s), err=True)  # noqa: E731
    link = SerialLink(port)
    device = None
    try:
        device = Device(None, serial_port=mesh_port, host=host, tcp_port=tcp_port or 4403, log=say)
        device.open()
        br = MeshtasticBridge(link, device, channel, outbox or _data_dir() / "bridge-meshtastic.db",
                              ids, *rates, log=say)
        say(f"bridge: pollen node {br.node} <-> Meshtastic node {device.node_id} on {device.where},"
            f" channel {channel}; {len(ids.to_mesh)} id(s) mapped")
        stop = threading.Event()
        try:
            br.run(stop)
        except KeyboardInterrupt:
            stop.set()
        stats = dict(br.stats, **{k: v for k, v in device.stats.items() if k.startswith("package")})
        say("bridge stopped: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    finally:
        if device is not None:
            device.close()
        link.close()
