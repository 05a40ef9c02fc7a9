"""`pollen bench`: the standard scenarios with both routers on the same seeds,
side by side, plus simulator speed and the baseline's reach-vs-size curve."""
from __future__ import annotations

from pollen_controller.sim.engine import ROUTERS, simulate
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
