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
@click.option("--mqtt", "mqtt_url", default=None,
              help="Instead of a device: the channel as Meshtastic gateways publish it on this broker,"
                   " mqtt://HOST[:PORT] (mqtts:// for TLS).")
@click.option("--channel", required=True,
              help="The Meshtastic channel: its index on the device (0..7, 0 the primary), or with"
                   " --mqtt its name (e.g. LongFast).")
@click.option("--key", default="default", show_default=True,
              help="With --mqtt: the channel's key, in base64 as the app shows it (16 or 32 bytes),"
                   " or 'default' (AQ==, the default channels' key) or 'none'.")
@click.option("--region", default=None,
              help="With --mqtt: the region in the topics (msh/REGION/2/e/CHANNEL/...), e.g."
                   " EU_868, as gateways use it once their region is set.")
@click.option("--root", default="msh", show_default=True,
              help="With --mqtt: the root topic the gateways are configured with.")
@click.option("--mqtt-node", "mqtt_node", default=None, metavar="!NODEID",
              help="With --mqtt: the bridge's own Meshtastic node id (default: one derived from the"
                   " pollen node's id).")
@click.option("--username", default=None, help="With --mqtt: the broker's user name.")
@click.option("--password", default=None, envvar="POLLEN_MQTT_PASSWORD",
              help="With --mqtt: the broker's password (also read from POLLEN_MQTT_PASSWORD).")
@click.option("--map", "maps", multiple=True, metavar="POLLENID=!MESHID",
              help="Bridge direct messages between these two nodes (repeatable). With --mqtt they"
                   " are PKI-encrypted: the bridge's key is kept beside --outbox (.key).")
@click.option("--outbox", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where texts wait for either side (default: under the user's data directory).")
@click.option("--rate-to-meshtastic", "rate_mesh", default=6.0, show_default=True, type=float,
              help="Texts a minute into Meshtastic, on average (bursts of 3).")
@click.option("--rate-to-pollen", "rate_pollen", default=20.0, show_default=True, type=float,
              help="Texts a minute into pollen, on average (bursts of 5).")
@click.option("--hold-s", "hold_s", default=2.0, show_default=True, type=float,
              help="Each text waits this long (+ 0..1 s, + 4 s for each other bridge with a lower id"
                   " that this one knows of: bridges announce themselves when they connect) before"
                   " it crosses, and is dropped if another bridge's copy is heard meanwhile:"
                   " several bridges give one copy. 0: no wait.")
def meshtastic(port, mesh_port, mesh_host, mqtt_url, channel, key, region, root, mqtt_node,
               username, password, maps, outbox, rate_mesh, rate_pollen, hold_s):
    """Relay texts between the attached node's mesh (its posts) and one
    Meshtastic channel, on a device or (--mqtt) as Meshtastic gateways
    publish it on a broker, and direct messages between the node ids
    given with --map (docs/meshtastic.md). Each bridged text
    says who wrote it and carries the bridging mark, so no bridge or
    gateway brings it back; with several bridges, each holds a text back a
    moment (--hold-s) and drops it when another's copy comes first (each
    bridge announces itself when it connects: on a device one PRIVATE_APP
    packet "pollen bridge ID" on the channel, on MQTT its node info). Runs
    until Ctrl-C; texts wait on disk while either side is away, or while
    the device refuses them (its duty cycle used up)."""
    from pollen_controller.bridge_meshtastic.bridge import MeshtasticBridge
    from pollen_controller.bridge_meshtastic.holdback import HoldBack
    from pollen_controller.bridge_meshtastic.relay import IdMap, RateLimit
    from pollen_controller.cli.gateway import _data_dir
    from pollen_controller.node.link import SerialLink
    from pollen_controller.untrusted import safe_text

    if sum(x is not None for x in (mesh_port, mesh_host, mqtt_url)) != 1:
        raise click.UsageError("give one of --meshtastic-port DEV, --meshtastic-host HOST[:PORT]"
                               " or --mqtt URL")
    ids = IdMap(maps)
    if not 0 <= hold_s <= 600:
        from pollen_controller.errors import InputError

        raise InputError(f"--hold-s {hold_s:g}: expected seconds 0..600 (0: no hold)")
    holdback = HoldBack(hold_s)
    rates = (RateLimit(rate_mesh, 3, "--rate-to-meshtastic"),
             RateLimit(rate_pollen, 5, "--rate-to-pollen"))
    say = lambda s: click.echo(safe_text(s), err=True)  # noqa: E731
    if mqtt_url is not None:
        outbox = outbox or _data_dir() / "bridge-meshtastic-mqtt.db"
        side, channel = _mqtt_side(mqtt_url, channel, key, region, root, mqtt_node, username,
                                   password, outbox.with_suffix(".key"), say)
    else:
        from pollen_controller.bridge_meshtastic.device import Device, parse_host

        channel = _device_channel(channel)
        host, tcp_port = parse_host(mesh_host) if mesh_host else (None, None)
        outbox = outbox or _data_dir() / "bridge-meshtastic.db"
    link = SerialLink(port)
    device = None
    try:
        if mqtt_url is None:
            device = Device(None, serial_port=mesh_port, host=host, tcp_port=tcp_port or 4403, log=say)
            device.open()
            br = MeshtasticBridge(link, device, channel, outbox, ids, *rates, log=say,
                                  holdback=holdback)
            say(f"bridge: pollen node {br.node} <-> Meshtastic node {device.node_id} on {device.where},"
                f" channel {channel}; {len(ids.to_mesh)} id(s) mapped")
        else:
            from pollen_controller.bridge_meshtastic.mqtt_codec import node_for
            from pollen_controller.bridge_meshtastic.relay import bridge_name

            br = MeshtasticBridge(link, side, channel, outbox, ids, *rates, log=say, holdback=holdback)
            if side.num is None:
                side.num = node_for(br.node)
            side.long_name = bridge_name(br.node)   # other bridges on the broker learn of it
            device = side
            side.open()
            say(f"bridge: pollen node {br.node} <-> Meshtastic channel {channel} on {side.where}"
                f" ({side.subscribe_to}), as node {side.node_id}")
        stop = threading.Event()
        try:
            br.run(stop)
        except KeyboardInterrupt:
            stop.set()
        stats = dict(br.stats, **device.report())
        say("bridge stopped: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    finally:
        if device is not None:
            device.close()
        link.close()


def _device_channel(channel: str) -> int:
    if not channel.isdigit() or not 0 <= int(channel) <= 7:
        raise click.BadParameter(f"{channel!r}: expected a channel index 0..7 on the device"
                                 f" (a channel name only with --mqtt)", param_hint="'--channel'")
    return int(channel)


def _mqtt_side(url, channel, key, region, root, node, username, password, key_file, say):
    from pollen_controller.bridge_meshtastic.mqtt_codec import check_channel, parse_key, parse_node
    from pollen_controller.bridge_meshtastic.mqtt_side import MqttSide
    from pollen_controller.errors import InputError
    from pollen_controller.gateway.gateway import is_topic_level

    check_channel(channel)
    if region is not None:
        from meshtastic.protobuf import config_pb2

        names = [n for n in config_pb2.Config.LoRaConfig.RegionCode.keys() if n != "UNSET"]
        if region.upper() not in names:
            raise InputError(f"--region {region!r}: expected a Meshtastic region, one of "
                             + ", ".join(names))
        region = region.upper()
    if not all(is_topic_level(level) for level in root.strip("/").split("/")):
        raise InputError(f"--root {root!r}: expected topic levels such as msh (no '+', '#' or"
                         f" empty levels)")
    return MqttSide(url, channel, parse_key(key), parse_node(node) if node else None, root=root,
                    region=region, username=username, password=password, log=say,
                    key_file=key_file), channel
