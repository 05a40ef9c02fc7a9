"""The `pollen` command line. Thin: parse options, call the library, render.
Here: the group, its one error handler and `pollen demo`; the other commands
are in the modules beside this one, registered at the end."""
from __future__ import annotations

import json
import sys

import click

from pollen import VERSION
from pollen.files import FileError
from pollen.ids import ConfigError
from pollen_controller.errors import PollenError
from pollen_controller.untrusted import safe_text


# What the user is told in one line: the host's errors, a port or a file that
# failed (OSError), and the core's two (it runs on boards too, so they cannot
# be PollenErrors: bad settings or commands, a bad shared file). Anything
# else is a bug and keeps its traceback.
_REPORTED = (PollenError, OSError, ConfigError, FileError)


class _Group(click.Group):
    # One top-level handler: `pollen: message` on stderr and exit status 1.
    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a reader gone (`| head`) shows here, not at exit
            return result
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # the reader of stdout left (`pollen network share F | head`):
            # click's main() silences stdout and exits 1 without a word
            raise
        except KeyboardInterrupt:
            click.echo("pollen: interrupted", err=True)
            sys.exit(130)
        except _REPORTED as e:
            # a message may quote what a node or the air said: shown safely
            click.echo(f"pollen: {safe_text(e)}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(VERSION, prog_name="pollen")
def main():
    """pollen: an offline community mesh of MicroPython LoRa nodes.

    The host controller: flash and provision boards, run one-shot commands
    on a node (info, send, set, config, reboot), emulate a mesh (demo, mesh
    up), monitor, bridge and simulate it."""


@main.command()
@click.option("--nodes", default=12, show_default=True, type=int,
              help="Number of emulated nodes (even, 6..40: two rows, nodes/2-1 hops across).")
@click.option("--loss", default=0.0, show_default=True, type=float,
              help="Probability that any one frame is lost on any one link.")
@click.option("--seed", default=None, type=int, help="Seed for the medium's loss dice.")
@click.option("--heap", default="128K", show_default=True,
              help="MicroPython heap size of each node (-X heapsize).")
@click.option("--file-kib", default=4, show_default=True, type=click.IntRange(0, 64),
              help="Size of the file shared at one end and fetched at the other (0: none).")
@click.option("--romfs/--no-romfs", default=True, show_default=True,
              help="Run the nodes as boards with a ROMFS partition: the firmware's bytecode "
                   "from a ROMFS image, in place, not loaded into the heap (docs/emulation.md). "
                   "--no-romfs: from .mpy files in the heap, as a stock board's MicroPython.")
@click.option("--private/--no-private", default=None,
              help="Give every node an identity, so that its direct messages go end-to-end "
                   "encrypted (docs/identity.md). Default: with ROMFS; without it a 128K node "
                   "has no room for X25519 and the identity code (--no-romfs --private needs "
                   "about --heap 160K).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def demo(nodes, loss, seed, heap, file_kib, romfs, private, as_json):
    """Run an emulated mesh of real MicroPython nodes and report what arrived.

    Starts a virtual radio medium and NODES real MicroPython unix-port
    processes, each running firmware/main.py. Sends posts (broadcasts) and
    messages between the far ends, switches one node off, sends it a message
    and switches it back on (store-and-forward), shares a file at one end of
    the mesh and fetches it at the other, then prints a summary. Finishes
    within about two minutes (a 4 KiB file); leaves no process behind."""
    from pollen_controller.emulation.demo import run_demo

    progress = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    result = run_demo(nodes=nodes, loss=loss, seed=seed, heap=heap, file_kib=file_kib,
                      romfs=romfs, private=romfs if private is None else private,
                      progress=progress)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(render_summary(result))


def _file_line(f) -> str:
    if not f:
        return "not tried (--file-kib 0)"
    if not f["completed"]:
        return f"NOT completed ({f['size_bytes']} bytes): {f.get('error')}"
    return (f"{f['size_bytes']} bytes across {f['hops']} hops in {f['seconds']} s, "
            f"SHA-256 {'verified' if f['verified'] else 'MISMATCH'}")


def _health_line(h) -> str:
    if h["clean"]:
        return "clean (no task failed, no heap ran out, every node heard and answered)"
    said = [f"{h['task_failures']} task failures ({'; '.join(h['task_failure_texts'])})"
            if h["task_failures"] else "",
            f"{h['memory_drops']} frames dropped for want of heap" if h["memory_drops"] else "",
            f"{h['internal_errors']} internal errors" if h["internal_errors"] else "",
            f"deaf: {', '.join(h['deaf_nodes'])}" if h["deaf_nodes"] else "",
            f"stopped: {', '.join(h['stopped_nodes'])}" if h["stopped_nodes"] else "",
            f"{h['unanswered_status']} nodes did not answer status" if h["unanswered_status"] else ""]
    return "NOT clean: " + ", ".join(s for s in said if s)


def render_summary(r: dict) -> str:
    u, b, lat, sf = r["unicast"], r["broadcast"], r["latency_ms"], r["store_and_forward"]
    rows = [
        ("nodes", f"{r['nodes']} ({r['hops_across']} hops across), {r['runtime']}"),
        ("frame loss", f"{r['loss']:.0%}"),
        ("messages delivered", f"{u['delivered']}/{u['sent']} ({u['delivered'] / u['sent']:.0%})"),
        ("private messages", f"{r['private']['delivered']}/{r['private']['sent']} arrived "
                                 "sealed with their pair's key" if r["private"]["sent"]
         else "none (--no-private: channel messages)"),
        ("posts: mean reach", f"{b['reach']:.0%} of other nodes, {b['sent']} posts"),
        ("store-and-forward", "delivered %.1f s after switch-on" % sf["seconds_after_switch_on"]
         if sf["delivered"] else "NOT delivered"),
        ("latency p50 / p95", f"{lat['p50']} / {lat['p95']} ms"),
        ("file fetched", _file_line(r.get("file"))),
        ("frames per delivery", f"{r['tx_per_delivered']} (+{r['tx_frames']['beacons']} beacons"
                                + (f", +{r['tx_frames']['adverts']} identity adverts and asks"
                                   if r["tx_frames"].get("adverts") else "") + ")"),
        ("collisions", str(r["collisions"])),
        ("telemetry airtime", f"{r['airtime_share']['telemetry']:.1%} of all airtime "
                              f"({r['tx_frames']['telemetry']} status frames)"),
        ("peak heap per node", f"{r['peak_heap_bytes']} bytes ({r['status_answers']} of "
                               f"{r['nodes']} nodes answered status)"
                               + (", firmware from ROMFS" if r.get("romfs") else "")),
        ("frames dropped", ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "none"),
        ("health", _health_line(r["health"])),
        ("wall time", f"{r['wall_seconds']} s"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


from pollen_controller.cli import boards, bridge, files, gateway, mesh, monitor, node_commands, sim  # noqa: E402

boards.register(main)
bridge.register(main)
files.register(main)
node_commands.register(main)
gateway.register(main)
mesh.register(main)
monitor.register(main)
sim.register(main)

if __name__ == "__main__":
    main()
