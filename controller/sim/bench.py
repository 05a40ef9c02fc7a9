"""`pollen bench`: the standard scenarios with every router over the same
seeds, run in parallel, summarised per router (mean, min, max) against the
best baseline with pass/fail targets; simulator speed and the reach-vs-size
curve; `--load-sweep`: one scenario's traffic scaled from light to about twice
what the channel carries; `--files`: the file scenarios over several seeds,
and fetches together against each alone (`separate`)."""
from __future__ import annotations

import copy
import math
import multiprocessing
from pathlib import Path
from statistics import mean, median

import yaml

from pollen.airtime import preset_time_on_air_us
from pollen.crypto import TAG_BYTES
from pollen.region import REGIONS
from pollen.wire import HEADER_BYTES
from pollen_controller.errors import InputError
from pollen_controller.topology import hop_distances
from pollen_controller.sim.engine import BROADCAST, FILE_ROUTERS, ROUTERS, Simulation, simulate
from pollen_controller.sim.metrics import percentile
from pollen_controller.sim.scenario import SCENARIO_DIR, Scenario, load_scenario

STANDARD = ("line-10", "grid-50", "city-200", "villages-mule", "longfast-30", "town-100",
            "rural-400", "city-200-lossy")
QUICK = ("line-10", "grid-50", "villages-mule", "longfast-30")
SEEDS = 10           # the standard set: seeds 1..SEEDS, the same for every router
QUICK_SEEDS = 3
SWEEP_SEEDS = 3
SWEEP_LOADS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0)   # offered load, x the capacity (offered_load)
ALOHA_THROUGHPUT = 1 / (2 * math.e)   # the most of its time a random-access channel carries
REFERENCE = "pollen"  # the router measured against the best of the others
# metrics compared side by side: (key, which way is better, shown as)
COMPARED = (
    ("unicast_delivery", "higher", "unicast delivery"),
    ("broadcast_reach", "higher", "broadcast reach"),
    ("latency_ms.p50", "lower", "latency p50"),
    ("latency_ms.p95", "lower", "latency p95"),
    ("airtime_ms_per_delivered", "lower", "airtime/delivered (ms)"),
    ("tx_per_delivered", "lower", "frames/delivered"),
    ("unicast_tx_over_hops.p50", "lower", "unicast tx/hops p50"),
    ("unicast_tx_over_hops_routed.p50", "lower", "tx/hops p50, route known"),
    ("unicast_ack_tx_over_hops.p50", "lower", "ack tx/hops p50"),
    ("unicast_tx_per_delivered", "lower", "unicast tx/delivered"),
    ("collision_ratio", "lower", "collision ratio"),
    ("channel_utilisation", "lower", "channel utilisation"),
    ("telemetry_airtime_share", "lower", "status airtime share"),
)
BETTER = {k: b for k, b, _ in COMPARED}
# (the tables are drawn by bench_render.py)
LABEL = {k: s for k, _, s in COMPARED}
# pollen's targets: (metric, rule, bound). "best": at least (higher is better)
# or at most (lower) bound x the best baseline; "at_most": an absolute bound;
# "at_least_where_best": at least bound[0] where the best baseline reaches bound[1]
TARGETS = (
    ("unicast_delivery", "best", 1.0),
    ("unicast_delivery", "at_least_where_best", (0.99, 0.95)),
    ("broadcast_reach", "best", 1.0),
    ("airtime_ms_per_delivered", "best", 0.8),
    ("latency_ms.p50", "best", 1.2),
    ("latency_ms.p95", "best", 2.0),
    ("unicast_tx_over_hops_routed.p50", "at_most", 1.5),   # "once a route is known"
    ("telemetry_airtime_share", "at_most", 0.05),
)
FILE_SCENARIOS = ("file-4hop", "file-swarm", "file-partition")
FILE_SEEDS = 10
SPEED_SIZES = (50, 100, 200, 500)
CURVE_SIZES = (10, 20, 30, 50, 80)


def get(result: dict, key: str):
    v = result
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


# ---- running (scenario, router, seed) jobs in parallel ----------------------

def _scenario(spec):
    # a scenario name or path, or (data dict, source) for a modified one
    return load_scenario(spec) if isinstance(spec, str) else Scenario(*spec)


def _run_job(indexed):
    # a job is (scenario spec, router, seed) or (..., baseline settings): e.g.
    # {"background": False}, given to every router but pollen
    i, (spec, router, seed, *extra) = indexed
    sim = Simulation(_scenario(spec), router, seed)
    if extra and extra[0] and router != REFERENCE:
        # on the simulation's scenario: a seed makes a new one (Scenario.with_seed)
        sim.sc.router_settings = dict(sim.sc.router_settings, **extra[0])
    return i, sim.run()


def _spec_name(spec):
    return spec if isinstance(spec, str) else spec[0]["name"]


def run_jobs(jobs, workers=2, progress=None) -> list[dict]:
    """Results of simulate() for each (scenario spec, router, seed), in order;
    `workers` processes; the costliest (nodes x duration, then traffic) first."""
    cost = {}
    for spec, *_ in jobs:
        if _spec_name(spec) not in cost:
            sc = _scenario(spec)
            cost[_spec_name(spec)] = (len(sc.node_ids) * sc.duration_s, len(sc.traffic()))
    order = sorted(enumerate(jobs), key=lambda j: cost[_spec_name(j[1][0])], reverse=True)
    results = [None] * len(jobs)

    def done(i, r, n):
        results[i] = r
        if progress:
            progress(f"[{n}/{len(jobs)}] {r['scenario']} {r['router']} seed {r['seed']}: "
                     f"{r['wall_seconds']} s")

    if workers <= 1 or len(jobs) <= 1:
        for n, job in enumerate(order, 1):
            done(*_run_job(job), n)
        return results
    with multiprocessing.get_context().Pool(min(workers, len(jobs))) as pool:
        for n, (i, r) in enumerate(pool.imap_unordered(_run_job, order), 1):
            done(i, r, n)
    return results


# ---- the standard set: every router, the same seeds --------------------------

def standard(names=STANDARD, seeds=SEEDS, workers=2, routers=ROUTERS, progress=None,
             background=None) -> dict:
    """Each scenario with every router over seeds 1..seeds (the same for every
    router); `aggregate` of the runs, and the runs' main figures. background:
    None (each baseline's default: on, as deployed), True or False."""
    seed_list = list(range(1, seeds + 1))
    extra = None if background is None else {"background": background}
    jobs = [(name, router, seed, extra) for name in names for router in routers
            for seed in seed_list]
    results = run_jobs(jobs, workers, progress)
    return {"seeds": seed_list, "routers": list(routers), "background": background,
            "scenarios": aggregate(results), "runs": [_brief(r) for r in results]}


def _brief(r):
    out = {k: r.get(k) for k in ("scenario", "router", "seed", "nodes", "unicasts",
                                 "broadcasts", "tx_frames", "wall_seconds")}
    for key, _, _ in COMPARED:
        out[key] = get(r, key)
    out["airtime_ms_by_type"] = r.get("airtime_ms_by_type")
    return out


def spread(values) -> dict:
    """mean, min, max of the values that are not None, and how many there were."""
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": round(mean(v), 4), "min": min(v), "max": max(v), "n": len(v)}


def aggregate(results, reference=REFERENCE) -> list[dict]:
    """Runs (simulate() results, or dicts with the COMPARED keys, as dotted
    names or nested) -> one row per scenario, in the order met: per router and
    metric the spread over seeds; per metric the best router other than
    `reference` (on the mean), the ratio reference/best, and the targets."""
    by: dict[str, dict[str, list]] = {}
    for r in results:
        by.setdefault(r["scenario"], {}).setdefault(r["router"], []).append(r)
    rows = []
    for name, runs in by.items():
        stats = {router: {key: spread([_value(r, key) for r in rs]) for key, _, _ in COMPARED}
                 for router, rs in runs.items()}
        airtime = {router: _mean_by_type([r.get("airtime_ms_by_type") for r in rs])
                   for router, rs in runs.items()}
        best = {key: _best([(router, st[key]["mean"]) for router, st in stats.items()
                            if router != reference], BETTER[key])
                for key, _, _ in COMPARED}
        mine = stats.get(reference, {})
        row = {"scenario": name, "nodes": runs[next(iter(runs))][0].get("nodes"),
               "seeds": sorted({r.get("seed") for rs in runs.values() for r in rs}),
               "stats": stats, "airtime_ms_by_type": airtime, "best": best,
               "ratio": {key: ratio(mine.get(key, {}).get("mean"),
                                    stats[best[key]][key]["mean"] if best[key] else None)
                         for key, _, _ in COMPARED}}
        row["targets"] = targets(
            {key: mine.get(key, {}).get("mean") for key, _, _ in COMPARED},
            {key: (best[key], stats[best[key]][key]["mean"]) if best[key] else (None, None)
             for key, _, _ in COMPARED}) if reference in stats else []
        rows.append(row)
    return rows


def _value(r, key):
    return r[key] if key in r else get(r, key)


def _mean_by_type(dicts):
    dicts = [d for d in dicts if d]
    keys = sorted({k for d in dicts for k in d})
    return {k: round(sum(d.get(k, 0) for d in dicts) / len(dicts), 1) for k in keys}


def _best(candidates, better):
    # the router with the better mean; None when none has a value
    have = [(v, router) for router, v in candidates if v is not None]
    if not have:
        return None
    return (max(have) if better == "higher" else min(have))[1]


def targets(mine: dict, best: dict) -> list[dict]:
    """pollen's means against TARGETS. mine: {metric: mean}; best: {metric:
    (router, mean)} of the best baseline. Each target: what it asks, the
    figures, and pass True/False, or None when it does not apply (no value)."""
    out = []
    for key, rule, bound in TARGETS:
        v = mine.get(key)
        router, b = best.get(key, (None, None))
        label = LABEL[key]
        if rule == "best":
            cmp = ">=" if BETTER[key] == "higher" else "<="
            what = f"{label} {cmp} " + (f"{bound:g} x " if bound != 1 else "") + "best baseline"
            limit = None if b is None else b * bound
        elif rule == "at_most":
            what, limit = f"{label} <= {bound:g}", bound
        else:   # at_least_where_best
            what = f"{label} >= {bound[0]:g} where the best baseline reaches {bound[1]:g}"
            limit = bound[0] if b is not None and b >= bound[1] else None
        if v is None or limit is None:
            ok = None
        elif rule == "at_most" or (rule == "best" and BETTER[key] == "lower"):
            ok = v <= limit
        else:
            ok = v >= limit
        out.append({"metric": key, "target": what, "value": v, "limit": limit,
                    "best_router": router, "best_value": b, "pass": ok})
    return out


# ---- the load sweep -----------------------------------------------------------

def scenario_data(name) -> tuple[dict, str]:
    """A scenario's fields as a dict and its source, to build modified copies."""
    source = load_scenario(name).source   # a bad name or field is reported here
    s = str(name)
    path = Path(s) if "/" in s or s.endswith((".yaml", ".yml")) else SCENARIO_DIR / f"{s}.yaml"
    data = yaml.safe_load(path.read_text())
    data.setdefault("name", path.stem)
    return data, source


def scale_traffic(data: dict, factor: float) -> dict:
    """The scenario dict with `factor` x the posts and direct messages (both
    mean intervals divided by it), named "<name> x<factor>"."""
    d = copy.deepcopy(data)
    traffic = d.setdefault("traffic", {})
    for k in ("broadcast_interval_s", "unicast_interval_s"):
        if traffic.get(k):
            traffic[k] = traffic[k] / factor
    d["name"] = f"{data['name']} x{factor:.3g}"
    return d


def offered_load(sc, seed=None) -> dict:
    """The scenario's traffic (with that seed) against what the channel can
    carry, estimated from airtime. The least airtime the traffic needs: a post
    sent by a connected dominating set of its part of the mesh (greedy) and
    heard once by every node of it; a direct message and its ack sent once per
    hop of the shortest path, each heard by the sender's neighbours (mean
    degree). Then
    channel_load: the airtime each node hears (or sends), as a share of time,
    over what a random-access channel delivers at best (pure ALOHA, 1/2e: hidden
    nodes leave carrier sense little to add in a multi-hop mesh);
    duty_load: each node's time on air over what its region's duty cycle allows.
    load: the larger (1 = the capacity); messages_per_hour: offered."""
    sim = Simulation(sc, ROUTERS[0], seed)   # the mesh and traffic of that seed
    sc, ch = sim.sc, sim.channel
    nbrs = {x: set(ch.neighbours(x)) for x in sc.node_ids}
    n = len(nbrs)
    degree = mean(len(v) for v in nbrs.values())
    flood = _flood_costs(nbrs)
    window_s = max(1e-9, sc.traffic_stop_s - sc.traffic_start_s)
    ack_s = preset_time_on_air_us(HEADER_BYTES + 4 + TAG_BYTES, sc.preset) / 1e6
    heard_s = sent_s = 0.0   # node-seconds hearing or sending; seconds on air
    hops, messages = {}, 0
    for _, src, dest, size in sc.traffic():
        messages += 1
        frame_s = preset_time_on_air_us(HEADER_BYTES + size + TAG_BYTES, sc.preset) / 1e6
        if dest == BROADCAST:
            reached, senders = flood[src]
            heard_s += frame_s * reached
            sent_s += frame_s * senders
        else:
            if src not in hops:
                hops[src] = hop_distances(nbrs.__getitem__, src)
            h = hops[src].get(dest) or 0
            heard_s += h * (frame_s + ack_s) * (degree + 1)
            sent_s += h * (frame_s + ack_s)
    duty = REGIONS[sc.region][1] / 1000
    channel_load = heard_s / (n * window_s) / ALOHA_THROUGHPUT
    duty_load = sent_s / (n * window_s * duty) if duty else 0.0
    return {"load": round(max(channel_load, duty_load), 4),
            "binding": "channel" if channel_load >= duty_load else "duty cycle",
            "channel_load": round(channel_load, 4), "duty_load": round(duty_load, 4),
            "messages_per_hour": round(messages / window_s * 3600, 1),
            "mean_degree": round(degree, 2), "traffic_hours": window_s / 3600}


def _flood_costs(nbrs):
    """{node: (nodes in its connected part, transmissions a post from it needs
    at least)}: the size of a greedy connected dominating set of that part —
    grown from its best-connected node, each step the covered node that covers
    the most nodes not yet covered."""
    out, left = {}, set(nbrs)
    while left:
        start = max(left, key=lambda x: (len(nbrs[x]), -x))
        part = set(hop_distances(nbrs.__getitem__, start))
        left -= part
        chosen, covered = {start}, {start} | nbrs[start]
        while len(covered) < len(part):
            best = max(covered - chosen, key=lambda c: (len(nbrs[c] - covered), -c))
            chosen.add(best)
            covered |= nbrs[best]
        for x in part:
            out[x] = (len(part), len(chosen))
    return out


def goodput_per_hour(r: dict, traffic_hours: float) -> float:
    """Messages delivered per hour of traffic: unicasts that reached their
    destination, plus each broadcast counted as the fraction of the other
    nodes it reached (so a post that reaches everyone is one message)."""
    unicasts = (r.get("unicast_delivery") or 0) * r.get("unicasts", 0)
    broadcasts = (r.get("broadcast_reach") or 0) * r.get("broadcasts", 0)
    return round((unicasts + broadcasts) / traffic_hours, 1)


def load_sweep(name, loads=SWEEP_LOADS, seeds=SWEEP_SEEDS, workers=2, routers=ROUTERS,
               progress=None, background=None) -> dict:
    """The scenario with its traffic scaled so that the offered load
    (`offered_load`, mean over the seeds) is each of `loads`; every router over
    seeds 1..seeds: unicast delivery, broadcast reach and goodput per hour."""
    data, source = scenario_data(name)
    seed_list = list(range(1, seeds + 1))
    base = mean(offered_load(Scenario(data, source), s)["load"] for s in seed_list)
    if not base:
        raise InputError(f"--load-sweep: scenario '{name}' has no traffic to scale")
    points, jobs = [], []
    for load in loads:
        factor = load / base
        d = scale_traffic(data, factor)
        est = [offered_load(Scenario(d, source), s) for s in seed_list]
        points.append({"scenario": d["name"], "factor": round(factor, 4),
                       **{k: round(mean(e[k] for e in est), 4)
                          for k in ("load", "channel_load", "duty_load", "messages_per_hour",
                                    "traffic_hours")},
                       "binding": est[0]["binding"]})
        extra = None if background is None else {"background": background}
        jobs += [((d, source), router, seed, extra) for router in routers for seed in seed_list]
    results = run_jobs(jobs, workers, progress)
    for p in points:
        p["routers"] = {}
        for router in routers:
            rs = [r for r in results if r["scenario"] == p["scenario"] and r["router"] == router]
            p["routers"][router] = {
                "unicast_delivery": spread([r["unicast_delivery"] for r in rs]),
                "broadcast_reach": spread([r["broadcast_reach"] for r in rs]),
                "goodput_per_hour": spread([goodput_per_hour(r, p["traffic_hours"])
                                            for r in rs])}
    return {"scenario": name, "seeds": seed_list, "routers": list(routers),
            "background": background, "base_load": round(base, 4), "points": points}


def speed(sizes=SPEED_SIZES, scenario="city-200", router="pollen", progress=None) -> list[dict]:
    """Simulator speed at several sizes of one scenario (same density)."""
    out = []
    for n in sizes:
        if progress:
            progress(f"speed: {scenario} at {n} nodes...")
        r = simulate(load_scenario(scenario).with_nodes(n), router)
        out.append({"nodes": n, "router": router, "events": r["events"],
                    "wall_seconds": r["wall_seconds"], "events_per_second": r["events_per_second"],
                    "sim_seconds": r["sim_seconds"]})
    return out


def curve(sizes=CURVE_SIZES, scenario="longfast-30", progress=None) -> list[dict]:
    """Reach and delivery against node count in a fixed area, both routers."""
    out = []
    for n in sizes:
        sc = load_scenario(scenario).with_nodes(n)
        for router in ROUTERS:
            if progress:
                progress(f"curve: {scenario} at {n} nodes, {router}...")
            r = simulate(sc, router)
            out.append({"nodes": n, "router": router, "broadcast_reach": r["broadcast_reach"],
                        "unicast_delivery": r["unicast_delivery"],
                        "tx_per_delivered": r["tx_per_delivered"]})
    return out


def separate(sc, seed=None, together=None, router="pollen") -> dict:
    """The scenario's fetches all at once against each fetch alone (the same
    scenario with only that file and fetcher, same seed): the airtime of their
    WANT, CHUNK and PART frames, together / the sum of the single runs.
    `together` is the scenario's own run if already done."""
    if router not in FILE_ROUTERS:
        raise InputError(f"--separate: expected a router with file transfer "
                         f"({', '.join(FILE_ROUTERS)}), got {router!r}")
    if not sc.files():
        raise InputError(f"--separate: scenario '{sc.name}' has no files section")
    if together is None:
        together = simulate(sc, router, seed)
    runs = []
    for f in sc.files():
        for n in f.fetchers:
            r = simulate(sc.with_single_fetch(f.index, n), router, seed)
            runs.append({"file": f.index, "fetcher": n, "file_completion": r["file_completion"],
                         "file_seconds": r["file_seconds"]["p50"],
                         "file_airtime_ms": r["file_airtime_ms"]})
    alone_ms = round(sum(r["file_airtime_ms"] for r in runs), 1)
    alone_fetched = sum(r["file_completion"] == 1 for r in runs)
    together_ms, together_fetched = together["file_airtime_ms"], together["file_fetched"]
    return {"together_airtime_ms": together_ms, "separate_airtime_ms": alone_ms,
            "ratio": ratio(together_ms, alone_ms),
            "together_completion": together["file_completion"],
            "separate_completion": round(alone_fetched / len(runs), 4),
            # only when every fetch completed both ways do the airtimes buy the same
            "comparable": together_fetched == len(runs) == alone_fetched,
            # airtime per completed fetch, together / alone
            "per_fetched_ratio": ratio(together_ms / together_fetched, alone_ms / alone_fetched)
            if together_fetched and alone_fetched else None,
            "runs": runs}


def files(names=FILE_SCENARIOS, seeds=FILE_SEEDS, progress=None) -> list[dict]:
    """Each file scenario over seeds 1..seeds (pollen): completion, time and
    airtime against the lower bound; for scenarios with several fetchers, the
    together / separate airtime ratio of `separate` per seed."""
    rows = []
    for name in names:
        sc = load_scenario(name)
        several = sum(len(f.fetchers) for f in sc.files()) > 1
        fetches = fetched = 0
        seconds, ratios, failed, sep, per_fetched = [], [], [], [], []
        for seed in range(1, seeds + 1):
            if progress:
                progress(f"{name}: seed {seed}...")
            sim = Simulation(sc, "pollen", seed)
            r = sim.run()
            fetches += r["file_fetches"]
            fetched += r["file_fetched"]
            seconds += sim.metrics.fetch_seconds()
            if r["file_airtime_ratio"] is not None:
                ratios.append(r["file_airtime_ratio"])
            if r["file_fetched"] < r["file_fetches"]:
                failed.append(seed)
            if several:
                s = separate(sc, seed, r)
                if s["comparable"]:
                    sep.append(s["ratio"])
                if s["per_fetched_ratio"] is not None:
                    per_fetched.append(s["per_fetched_ratio"])
        rows.append({
            "scenario": name, "seeds": seeds, "fetches": fetches, "fetched": fetched,
            "file_completion": round(fetched / fetches, 4) if fetches else None,
            "incomplete_seeds": failed,
            "file_seconds": {"p50": percentile(seconds, 50), "p95": percentile(seconds, 95)},
            "file_airtime_ratio": {"min": min(ratios, default=None),
                                   "max": max(ratios, default=None)},
            "separate_ratio": dict(_spread(sep), comparable_seeds=len(sep)) if several else None,
            "separate_per_fetched_ratio": dict(_spread(per_fetched), seeds=len(per_fetched))
            if several else None,
        })
    return rows


def _spread(values):
    return {"min": min(values, default=None), "max": max(values, default=None),
            "median": round(median(values), 3) if values else None}
