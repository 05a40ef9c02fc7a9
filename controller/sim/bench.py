"""`pollen bench`: the standard scenarios with both routers on the same seeds,
side by side, plus simulator speed and the baseline's reach-vs-size curve;
`pollen bench --files`: the file scenarios over several seeds, and fetches
together against each alone (`separate`)."""
from __future__ import annotations

from statistics import median

from pollen_controller.sim.engine import FILE_ROUTERS, ROUTERS, Simulation, simulate
from pollen_controller.sim.metrics import percentile
from pollen_controller.sim.scenario import load_scenario

STANDARD = ("line-10", "grid-50", "city-200", "villages-mule", "longfast-30")
QUICK = ("line-10", "grid-50", "villages-mule", "longfast-30")
# metrics compared side by side: (key, how to read it)
COMPARED = (
    ("broadcast_reach", "higher is better"),
    ("unicast_delivery", "higher is better"),
    ("latency_ms.p50", "lower is better"),
    ("latency_ms.p95", "lower is better"),
    ("tx_per_delivered", "lower is better"),
    ("airtime_ms_per_delivered", "lower is better"),
    ("collision_ratio", "lower is better"),
    ("channel_utilisation", "lower is better"),
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


def compare(names=STANDARD, progress=None) -> list[dict]:
    """Each scenario with every router, same seed. Returns one row per scenario."""
    rows = []
    for name in names:
        sc = load_scenario(name)
        runs = {}
        for router in ROUTERS:
            if progress:
                progress(f"{name}: {router}...")
            runs[router] = simulate(sc, router)
        row = {"scenario": name, "nodes": len(sc.node_ids), "seed": sc.seed, "runs": runs,
               "ratio": {k: ratio(get(runs["pollen"], k), get(runs["managed-flood"], k))
                         for k, _ in COMPARED}}
        rows.append(row)
    return rows


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
        raise ValueError(f"--separate: expected a router with file transfer "
                         f"({', '.join(FILE_ROUTERS)}), got {router!r}")
    if not sc.files():
        raise ValueError(f"--separate: scenario '{sc.name}' has no files section")
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


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def render_compare(rows: list[dict]) -> str:
    lines = []
    head = f"{'scenario':<21}{'metric':<26}{'pollen':>12}{'baseline':>12}{'pollen/base':>13}"
    lines.append(head)
    lines.append("-" * len(head))
    for row in rows:
        p, b = row["runs"]["pollen"], row["runs"]["managed-flood"]
        first = True
        for key, _ in COMPARED:
            name = f"{row['scenario']} ({row['nodes']})" if first else ""
            lines.append(f"{name:<21}{key:<26}{_fmt(get(p, key)):>12}{_fmt(get(b, key)):>12}"
                         f"{_fmt(row['ratio'][key]):>13}")
            first = False
        lines.append("")
    return "\n".join(lines)


def render_speed(rows: list[dict]) -> str:
    lines = [f"{'nodes':>6}{'events':>12}{'wall s':>10}{'events/s':>12}{'sim s':>9}"]
    for r in rows:
        lines.append(f"{r['nodes']:>6}{r['events']:>12}{r['wall_seconds']:>10}"
                     f"{r['events_per_second']:>12}{r['sim_seconds']:>9.0f}")
    return "\n".join(lines)


def render_curve(rows: list[dict]) -> str:
    lines = [f"{'nodes':>6}  {'router':<15}{'reach':>8}{'delivery':>10}{'tx/deliv':>10}"]
    for r in rows:
        lines.append(f"{r['nodes']:>6}  {r['router']:<15}{_fmt(r['broadcast_reach']):>8}"
                     f"{_fmt(r['unicast_delivery']):>10}{_fmt(r['tx_per_delivered']):>10}")
    return "\n".join(lines)


def _spread_text(d):
    return f"median {_fmt(d['median'])} ({_fmt(d['min'])}..{_fmt(d['max'])})"


def render_files(rows: list[dict]) -> str:
    lines = [f"{'scenario':<16}{'seeds':>6}  {'completed':<15}{'s p50':>7}{'s p95':>7}"
             f"{'airtime/bound':>15}  together/separate"]
    for r in rows:
        ar, sep = r["file_airtime_ratio"], r["separate_ratio"]
        per = r["separate_per_fetched_ratio"]
        together = "-" if sep is None else (
            f"{_spread_text(sep)} over the {sep['comparable_seeds']} seeds where every fetch "
            f"completed both ways; per completed fetch {_spread_text(per)} over "
            f"{per['seeds']} seeds")
        done = f"{r['fetched']}/{r['fetches']}" + (
            f" ({r['file_completion']:.0%})" if r["fetches"] else "")
        lines.append(f"{r['scenario']:<16}{r['seeds']:>6}  {done:<15}"
                     f"{_fmt(r['file_seconds']['p50']):>7}{_fmt(r['file_seconds']['p95']):>7}"
                     f"{_fmt(ar['min']) + '..' + _fmt(ar['max']):>15}  {together}")
        if r["incomplete_seeds"]:
            lines.append(f"{'':<16}incomplete with seeds {r['incomplete_seeds']}")
    return "\n".join(lines)
