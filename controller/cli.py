"""The `pollen` command line. Thin: parse options, call the library, render."""
from __future__ import annotations

import json
import sys

import click

from pollen import VERSION


class _Group(click.Group):
    # One top-level handler: `pollen: message` on stderr and a non-zero exit.
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("pollen: interrupted", err=True)
            sys.exit(130)
        except (ValueError, RuntimeError, OSError) as e:
            click.echo(f"pollen: {e}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(VERSION, prog_name="pollen")
def main():
    """pollen: an offline community mesh of MicroPython LoRa nodes.

    The host controller: emulate, (later) flash, provision, monitor and
    simulate pollen nodes."""


@main.command()
@click.option("--nodes", default=12, show_default=True, type=int,
              help="Number of emulated nodes (even, 6..40: two rows, nodes/2-1 hops across).")
@click.option("--loss", default=0.0, show_default=True, type=float,
              help="Probability that any one frame is lost on any one link.")
@click.option("--seed", default=None, type=int, help="Seed for the medium's loss dice.")
@click.option("--heap", default="128K", show_default=True,
              help="MicroPython heap size of each node (-X heapsize).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def demo(nodes, loss, seed, heap, as_json):
    """Run an emulated mesh of real MicroPython nodes and report what arrived.

    Starts a virtual radio medium and NODES real MicroPython unix-port
    processes, each running firmware/main.py. Sends posts (broadcasts) and
    messages between the far ends, switches one node off, sends it a message
    and switches it back on (store-and-forward), then prints a summary.
    Finishes within about a minute; leaves no process behind."""
    from pollen_controller.demo import run_demo

    progress = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    result = run_demo(nodes=nodes, loss=loss, seed=seed, heap=heap, progress=progress)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(render_summary(result))


def render_summary(r: dict) -> str:
    u, b, lat, sf = r["unicast"], r["broadcast"], r["latency_ms"], r["store_and_forward"]
    rows = [
        ("nodes", f"{r['nodes']} ({r['hops_across']} hops across), {r['runtime']}"),
        ("frame loss", f"{r['loss']:.0%}"),
        ("messages delivered", f"{u['delivered']}/{u['sent']} ({u['delivered'] / u['sent']:.0%})"),
        ("posts: mean reach", f"{b['reach']:.0%} of other nodes, {b['sent']} posts"),
        ("store-and-forward", "delivered %.1f s after switch-on" % sf["seconds_after_switch_on"]
         if sf["delivered"] else "NOT delivered"),
        ("latency p50 / p95", f"{lat['p50']} / {lat['p95']} ms"),
        ("frames per delivery", f"{r['tx_per_delivered']} (+{r['tx_frames']['beacons']} beacons)"),
        ("collisions", str(r["collisions"])),
        ("peak heap per node", f"{r['peak_heap_bytes']} bytes"),
        ("frames dropped", ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "none"),
        ("wall time", f"{r['wall_seconds']} s"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


if __name__ == "__main__":
    main()
