"""CLI commands for the simulator: `pollen sim` (one scenario) and `pollen
bench` (every router over the standard scenarios). Registered on the `pollen`
group by cli/main.py."""
from __future__ import annotations

import json

import click

from pollen_controller.cli.progress import progress_bar


def register(main):
    main.add_command(sim)
    main.add_command(bench)


@click.command()
@click.argument("scenario")
@click.option("--router", type=click.Choice(["pollen", "managed-flood", "meshcore"]),
              default="pollen", show_default=True,
              help="pollen's core, or a baseline: Meshtastic 2.7 or MeshCore (docs/baseline.md).")
@click.option("--seed", type=int, default=None,
              help="Run as if the scenario's seed were SEED: another mesh (random and "
                   "cluster placements; grid, line and explicit ones are fixed), other "
                   "traffic, random failures and movements, shadowing and timing. "
                   "Default: the scenario's own seed.")
@click.option("--nodes", type=int, default=None, help="Scale the scenario to N nodes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write topology.png and latency_cdf.png into this folder.")
@click.option("--separate", is_flag=True,
              help="Also run each file fetch alone (same seed) and compare the airtime.")
@click.option("--background", type=click.Choice(["on", "off"]), default=None,
              help="Baselines only: what a default node sends by itself (Meshtastic NodeInfo "
                   "and telemetry, MeshCore adverts). Default: on, as deployed.")
@click.option("--spam", type=click.IntRange(0, None), default=None, metavar="N",
              help="N members (chosen from the seed) send spam as fast as their duty cycle "
                   "lets them instead of their traffic; delivery and reach are then the honest "
                   "traffic's, the spam's apart. 0: none. Default: the scenario's spam section.")
@click.option("--spam-kind", type=click.Choice(["post", "msg", "both"]), default=None,
              help="What the spammers send: posts, direct messages, or each in turn. "
                   "Default: the scenario's, else post.")
def sim(scenario, router, seed, nodes, as_json, plot_dir, separate, background, spam=None,
        spam_kind=None):
    """Simulate SCENARIO (a name in scenarios/ or a YAML path) in virtual time.

    Every node runs the real protocol core (or the baseline router) on a LoRa
    channel model; prints a summary table or, with --json, one object. With
    --separate (file scenarios, pollen), the fetches together are compared
    with each fetch alone: "file_separate" in the JSON."""
    from pathlib import Path

    from pollen_controller.sim import bench as b
    from pollen_controller.sim import bench_render as br
    from pollen_controller.sim import plots
    from pollen_controller.sim.engine import Simulation
    from pollen_controller.sim.scenario import load_scenario

    if nodes is not None and nodes < 2:
        raise click.BadParameter(f"expected at least 2, got {nodes}", param_hint="--nodes")
    sc = load_scenario(scenario)
    if nodes is not None:
        sc = sc.with_nodes(nodes)
    if spam is not None or spam_kind is not None:
        if spam is not None and spam > len(sc.placed_ids):
            raise click.BadParameter(f"expected at most {len(sc.placed_ids)} (the scenario's "
                                     f"placed nodes), got {spam}", param_hint="--spam")
        sc = sc.with_spam(spam, spam_kind)
    if separate and router != "pollen":
        raise click.BadParameter(f"needs --router pollen ({router} has no file transfer)",
                                 param_hint="--separate")
    if separate and not sc.files():
        raise click.BadParameter(f"scenario '{sc.name}' has no files section",
                                 param_hint="--separate")
    if background is not None and router == "pollen":
        raise click.BadParameter("applies to the baselines (pollen's own status frames: "
                                 "router setting telemetry_interval_ms)", param_hint="--background")
    simulation = Simulation(sc, router, seed,
                            progress=progress_bar("simulating", show_eta=True))
    if background is not None:
        simulation.sc.router_settings = dict(simulation.sc.router_settings,
                                             background=background == "on")
    result = simulation.run()
    if router != "pollen":
        result["background"] = simulation.sc.router_settings.get("background", True)
    if separate:
        result["file_separate"] = b.separate(sc, seed, result)
    if plot_dir:
        d = Path(plot_dir)
        d.mkdir(parents=True, exist_ok=True)
        plots.topology(simulation.channel, d / "topology.png",
                       f"{sc.name}: {len(sc.node_ids)} nodes (initial positions)")
        plots.latency_cdf({router: simulation.metrics.latencies_ms()}, d / "latency_cdf.png",
                          f"{sc.name}: unicast latency ({router})")
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(render_sim(result))


def render_sim(r: dict) -> str:
    from pollen_controller.sim.bench_render import duration_text

    def pct(v):
        return "-" if v is None else f"{v:.1%}"

    rows = [
        ("scenario", f"{r['scenario']} ({r['nodes']} nodes, seed {r['seed']}), router {r['router']}"
                     + ("" if "background" not in r else
                        f", background {'on' if r['background'] else 'off'}")),
        ("broadcast reach", f"{pct(r['broadcast_reach'])} over {r['broadcasts']} broadcasts"),
        ("unicast delivery", f"{pct(r['unicast_delivery'])} over {r['unicasts']} unicasts"),
        *_spam_rows(r),
        ("latency p50 / p95", f"{duration_text(r['latency_ms']['p50'])} / "
                              f"{duration_text(r['latency_ms']['p95'])}"),
        ("frames per delivery", f"{r['tx_per_delivered']} ({r['tx_frames']} frames)"),
        ("airtime per delivery", f"{r['airtime_ms_per_delivered']} ms"),
        ("collision ratio", pct(r["collision_ratio"])),
        ("channel utilisation", pct(r["channel_utilisation"])),
        ("duty cycle mean / max", f"{r['duty_cycle_pct']['mean']} / {r['duty_cycle_pct']['max']} %"),
        ("telemetry airtime", f"{pct(r['telemetry_airtime_share'])} of all; "
                              f"at most {r['telemetry_duty_pct']} % of a node's time"),
        ("peak held / queue", f"{r['peak_held']} / {r['peak_queue']}"),
        *_file_rows(r),
        ("simulated / wall", f"{r['sim_seconds']:.0f} s / {r['wall_seconds']} s, "
                             f"{r['events']} events ({r['events_per_second']}/s)"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def _spam_rows(r: dict) -> list:
    if not r.get("spammers"):
        return []

    def pct(v):
        return "-" if v is None else f"{v:.1%}"

    return [("spam", f"from {', '.join(str(n) for n in r['spammers'])}: reach "
                     f"{pct(r['spam_broadcast_reach'])} over {r['spam_broadcasts']} posts, "
                     f"delivery {pct(r['spam_unicast_delivery'])} over {r['spam_unicasts']} "
                     f"messages, {r['spam_refused']} refused (above: honest traffic only)")]


def _file_rows(r: dict) -> list:
    if r["file_not_applicable"]:
        return [("files", f"not applicable ({r['file_not_applicable']})")]
    if not r["file_fetches"] and not r["file_not_started"]:
        return []
    fs, ratio = r["file_seconds"], r["file_airtime_ratio"]
    rows = [
        ("file fetches", f"{r['file_fetched']}/{r['file_fetches']} completed "
                         f"({r['file_completion']:.1%}), {r['file_failed']} failed, "
                         f"{r['file_not_started']} not started"),
        ("file time p50 / p95", f"{fs['p50']} / {fs['p95']} s"),
        ("file airtime", f"{r['file_airtime_ms']} ms = "
                         + ("-" if ratio is None else f"{ratio}")
                         + f" x the lower bound ({r['file_lower_bound_ms']} ms)"),
        ("catalog airtime share", f"{r['file_catalog_airtime_share']:.1%} of all airtime"),
    ]
    sep = r.get("file_separate")
    if sep:
        rows.append(("together / separate",
                     f"{sep['ratio']} ({sep['together_airtime_ms']} ms together, "
                     f"{sep['separate_airtime_ms']} ms as {len(sep['runs'])} single fetches"
                     + ("" if sep["comparable"] else "; NOT comparable: some fetch did not "
                                                     "complete") + ")"))
        rows.append(("  per completed fetch", f"{sep['per_fetched_ratio']}"))
    return rows


@click.command()
@click.option("--quick", is_flag=True,
              help="A short subset: line-10, grid-50, villages-mule, longfast-30, 3 seeds; "
                   "no 500-node speed run.")
@click.option("--speed/--no-speed", default=True, show_default=True,
              help="Also measure simulator speed at 50..500 nodes.")
@click.option("--curve/--no-curve", default=True, show_default=True,
              help="Also run longfast-30 at 10..80 nodes (reach vs node count).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write reach_vs_nodes.png (or, with --load-sweep, load_sweep.png) "
                   "into this folder.")
@click.option("--files", "file_bench", is_flag=True,
              help="Instead: the file scenarios (pollen only) over seeds 1..--seeds.")
@click.option("--seeds", type=click.IntRange(1, 1000), default=None,
              help="Seeds 1..N, the same for every router. Default: 10; 3 with --quick "
                   "or --load-sweep.")
@click.option("--jobs", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Simulations run in parallel (processes).")
@click.option("--load-sweep", "sweep", metavar="SCENARIO", default=None,
              help="Instead: SCENARIO's traffic scaled from light to about twice the "
                   "channel's capacity, every router: delivery, reach and goodput.")
@click.option("--sensitivity", is_flag=True,
              help="Instead: each router under each channel variant (capture rule, "
                   "interference floor), same seeds (docs/simulator.md).")
@click.option("--background", type=click.Choice(["on", "off"]), default=None,
              help="The baselines' own periodic traffic (Meshtastic's NodeInfo and "
                   "telemetry; MeshCore's adverts). Default: each baseline's default, on "
                   "as deployed. Applies to the standard set and --load-sweep.")
@click.option("--routers", "router_list", metavar="R1,R2", default=None,
              help="With --load-sweep: only these routers, comma-separated (default: "
                   "every router; pollen alone takes a third of the time).")
def bench(quick, speed, curve, as_json, plot_dir, file_bench, seeds, jobs, sweep,
          sensitivity=False, background=None, router_list=None):
    """Run the standard scenarios with every router over the same seeds.

    Prints, per scenario, each router's mean (min..max) over the seeds, the
    best baseline and pollen/best for each metric, pollen's targets marked
    PASS or FAIL, simulator speed, and the reach-vs-node-count curve. With
    --load-sweep SCENARIO, scales that scenario's traffic from light to about
    twice the channel's capacity instead. With --files, runs the file
    scenarios instead (the baseline has no file transfer): completion, fetch
    time, airtime against the lower bound, and fetches together against each
    alone."""
    from pathlib import Path

    from pollen_controller.sim import bench as b
    from pollen_controller.sim import bench_render as br
    from pollen_controller.sim import plots

    say = (lambda s: click.echo(s, err=True))
    if router_list is not None and not sweep:
        raise click.BadParameter("applies to --load-sweep only", param_hint="--routers")
    routers = b.ROUTERS if router_list is None else _router_names(router_list)
    if sensitivity:
        from pollen_controller.sim import sensitivity as sens

        rows = sens.sensitivity(seeds=tuple(range(1, (seeds or len(sens.SEEDS)) + 1)),
                                processes=jobs, progress=say)
        click.echo(json.dumps({"sensitivity": rows}) if as_json else sens.render(rows))
        return
    if file_bench:
        rows = b.files(seeds=seeds or b.FILE_SEEDS, progress=say)
        click.echo(json.dumps({"files": rows}) if as_json else br.render_files(rows))
        return
    if sweep:
        bg = None if background is None else background == "on"
        out = b.load_sweep(sweep, seeds=seeds or b.SWEEP_SEEDS, workers=jobs, routers=routers,
                           progress=say, background=bg)
        if plot_dir:
            Path(plot_dir).mkdir(parents=True, exist_ok=True)
            plots.load_sweep(out, Path(plot_dir) / "load_sweep.png")
        click.echo(json.dumps({"load_sweep": out}) if as_json else br.render_sweep(out))
        return
    out = {"standard": b.standard(b.QUICK if quick else b.STANDARD,
                                  seeds or (b.QUICK_SEEDS if quick else b.SEEDS), jobs,
                                  progress=say,
                                  background=None if background is None else background == "on")}
    if speed:
        out["speed"] = b.speed(b.SPEED_SIZES[:3] if quick else b.SPEED_SIZES, progress=say)
    if curve:
        out["curve"] = b.curve(b.CURVE_SIZES[:3] if quick else b.CURVE_SIZES, progress=say)
        if plot_dir:
            Path(plot_dir).mkdir(parents=True, exist_ok=True)
            plots.reach_vs_nodes(out["curve"], Path(plot_dir) / "reach_vs_nodes.png",
                                 "longfast-30 area (15x15 km, LongFast, hop limit 3)")
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(br.render_standard(out["standard"]))
    if speed:
        click.echo("\nsimulator speed (pollen, city-200 density):")
        click.echo(br.render_speed(out["speed"]))
    if curve:
        click.echo("\nreach vs node count (longfast-30 area):")
        click.echo(br.render_curve(out["curve"]))


def _router_names(text: str) -> tuple:
    from pollen_controller.sim.engine import ROUTERS

    names = [n.strip() for n in text.split(",")]
    for n in names:
        if n not in ROUTERS:
            raise click.BadParameter(f"expected router names from {', '.join(ROUTERS)}, "
                                     f"comma-separated; got {n!r}", param_hint="--routers")
    if len(set(names)) != len(names):
        raise click.BadParameter(f"a router named twice in {text!r}", param_hint="--routers")
    return tuple(names)
