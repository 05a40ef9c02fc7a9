"""CLI command `pollen gateway`: an attached node's mesh <-> an MQTT broker.
Registered on the `pollen` group by cli/main.py."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import click


def register(main):
    main.add_command(gateway)


def _data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pollen"


@click.command()
@click.option("--port", default=None,
              help="Serial port of the attached node; held exclusively: another command "
                   "on it is told who has it.")
@click.option("--demo", is_flag=True, help="Bridge a node of an emulated mesh instead (no hardware).")
@click.option("--mqtt", "mqtt_url", required=True, help="Broker: mqtt://HOST[:PORT] (mqtts:// for TLS).")
@click.option("--username", default=None)
@click.option("--password", default=None, envvar="POLLEN_MQTT_PASSWORD",
              help="Also read from POLLEN_MQTT_PASSWORD.")
@click.option("--tls", is_flag=True, help="TLS to the broker (same as an mqtts:// URL).")
@click.option("--network", default=None,
              help="Network name in the topics (default: the network the node was provisioned "
                   "with, as its config says; else 'mesh').")
@click.option("--outbox", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where uplink messages wait for the broker (default: under the user's data directory).")
@click.option("--status-interval", "status_interval_s", default=60.0, show_default=True, type=float,
              help="Seconds between the gateway node's status publications.")
@click.option("--wait-for-broker", is_flag=True,
              help="Start even if the broker cannot be reached now, keeping what the mesh says "
                   "until it can (default: stop at once, naming the broker).")
def gateway(port, demo, mqtt_url, username, password, tls, network, outbox, status_interval_s,
            wait_for_broker):
    """Bridge the attached node to an MQTT broker (docs/gateway.md): what the
    mesh says goes up on pollen/NETWORK/NODE/..., and messages published to
    pollen/NETWORK/send go into the mesh. Runs until Ctrl-C; when the broker
    or the node's port goes away it waits for them, keeping what is to be
    sent either way. What became of each send (sent, delivered, failed) is
    published on pollen/NETWORK/send/outcome.

    A broker that cannot be reached at start stops the gateway at once, with
    the reason, unless --wait-for-broker."""
    from pollen_controller.gateway.gateway import Gateway
    from pollen_controller.gateway.mqtt import parse_mqtt_url, probe_broker
    from pollen_controller.untrusted import safe_text

    if (port is None) == (not demo):
        raise click.UsageError("give --port PORT or --demo")
    parse_mqtt_url(mqtt_url)  # a bad URL fails before anything starts
    if tls and mqtt_url.startswith("mqtt://"):
        mqtt_url = "mqtts://" + mqtt_url[len("mqtt://"):]
    if not wait_for_broker:
        probe_broker(mqtt_url, hint="; is it running? (--wait-for-broker to start anyway)")
    stop = threading.Event()
    # the gateway's log lines quote what nodes and the broker said: shown safely
    say = lambda s: click.echo(safe_text(s), err=True)  # noqa: E731
    if demo:
        return _demo(mqtt_url, username, password, network or "mesh", outbox, status_interval_s,
                     stop, say)
    from pollen_controller.node.link import SerialLink

    link = SerialLink(port)
    try:
        network, why = _network(link, network)
        gw = Gateway(link, mqtt_url, network, outbox or _data_dir() / f"gateway-{network}.db",
                     username, password, status_interval_s, say)
        say(f"gateway for node {gw.node} on {network} ({why}): {mqtt_url}")
        gw.run(stop)
    finally:
        link.close()


def _network(link, given):
    """The network name for the topics, and where it came from: --network,
    else the node's (the `network` of its config.json, the name it was
    provisioned with, read by its console's config command), else "mesh"."""
    from pollen_controller.gateway.gateway import is_topic_level
    from pollen_controller.node.commands import console_config

    if given:
        return given, "--network"
    name = (console_config(link) or {}).get("network")
    if is_topic_level(name):
        return name, "the node's network"
    return "mesh", "the default; the node does not say its network: --network NAME to set it"


def _demo(mqtt_url, username, password, network, outbox, status_interval_s, stop, say):
    import tempfile
    from contextlib import closing

    from pollen_controller.emulation.demo_mesh import Chatter, start_demo_mesh
    from pollen_controller.gateway.gateway import Gateway
    from pollen_controller.node.link import ProcessLink
    from pollen_controller.topology import line

    topo = line(4)
    ids = sorted(topo.node_ids)
    with tempfile.TemporaryDirectory(prefix="pollen-gateway-") as d, \
            closing(start_demo_mesh(topo, Path(d))) as emu:
        gw = Gateway(ProcessLink(emu.nodes[ids[0]]), mqtt_url, network,
                     outbox or Path(d) / "outbox.db", username, password, status_interval_s, say)
        say(f"emulated mesh of {len(ids)} nodes; gateway on node {gw.node}; {mqtt_url}")
        say(f"try: mosquitto_sub -t 'pollen/{network}/#' -v   and   "
            f"mosquitto_pub -t pollen/{network}/send -m '{{\"to\": \"{ids[-1]:08x}\", \"text\": \"hi\"}}'")
        # the far nodes post now and then, so there is traffic to see
        Chatter(emu, [ids[-1], ids[-2]], 15.0, lambda k, src: ("all", f"demo post {k}")).start(stop)
        try:
            gw.run(stop)
        except KeyboardInterrupt:
            stop.set()
