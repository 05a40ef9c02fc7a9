"""The text tables of `pollen bench` (bench.py computes, this draws).

Durations are shown in human units (ms, s, min, h: `duration_text`);
`--json` keeps the exact figures, latencies in ms. Each compared metric
says which way is better, and pollen/best says whether pollen is ahead."""
from __future__ import annotations

from pollen_controller.sim.bench import BETTER, COMPARED, REFERENCE

_LABEL_W = 2 + max(len(label) for _, _, label in COMPARED)


def duration_text(ms) -> str:
    """A time in ms as a person reads it: 850 ms, 3.44 s, 69.8 min, 2.5 h."""
    if ms is None:
        return "-"
    s = ms / 1000
    if s < 1:
        return f"{ms:.0f} ms"
    if s < 100:
        return f"{s:.3g} s"
    if s < 6000:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _shown(key, v) -> str:
    # latencies (ms) in human units; other figures as numbers
    return duration_text(v) if key.startswith("latency_ms") else _fmt(v)


def _cell(key, st):
    if not st or st["mean"] is None:
        return "-"
    m, lo, hi = (_shown(key, st[k]) for k in ("mean", "min", "max"))
    return m if lo == hi else f"{m} ({lo}..{hi})"


def _verdict(key, ratio) -> str:
    # pollen/best with which side it favours: "0.82 better", "1.3 worse"
    if ratio is None:
        return "-"
    ahead = ratio > 1 if BETTER[key] == "higher" else ratio < 1
    return f"{_fmt(ratio)} " + ("same" if ratio == 1 else "better" if ahead else "worse")


def render_standard(out: dict) -> str:
    """One block per scenario: each router's mean (min..max) over the seeds,
    the best baseline and pollen/best per metric, then the targets."""
    routers = out["routers"]
    others = [r for r in routers if r != REFERENCE]
    bg = out.get("background")
    lines = [f"{len(out['seeds'])} seeds ({out['seeds'][0]}..{out['seeds'][-1]}), the same for "
             f"every router; each cell: mean (min..max) over the seeds. Baselines' background "
             f"traffic: {'their default (on)' if bg is None else ('on' if bg else 'off')}.",
             f"pollen/best: pollen's mean / the best baseline's ({', '.join(others)}) on that "
             f"metric, and whether that is better or worse for pollen; 'better if' says "
             f"which way each metric is better: for 'higher' a ratio above 1 favours pollen, "
             f"for 'lower' one below 1. Latencies in ms, s, min or h.", ""]
    passed = failed = 0
    for row in out["scenarios"]:
        cells = {(key, r): _cell(key, row["stats"].get(r, {}).get(key))
                 for key, _, _ in COMPARED for r in routers}
        w = 2 + max(map(len, [*cells.values(), *routers]))   # columns as wide as their cells
        head = f"{'metric':<{_LABEL_W}}{'better if':<10}" + "".join(f"{r:>{w}}" for r in routers) \
            + f"{'best baseline':>16}{'pollen/best':>15}"
        lines.append(f"{row['scenario']} ({row['nodes']} nodes)")
        lines.append(head)
        lines.append("-" * len(head))
        for key, better, label in COMPARED:
            row_cells = "".join(f"{cells[key, r]:>{w}}" for r in routers)
            lines.append(f"{label:<{_LABEL_W}}{better:<10}{row_cells}{row['best'][key] or '-':>16}"
                         f"{_verdict(key, row['ratio'][key]):>15}")
        for r in routers:
            by_type = row["airtime_ms_by_type"].get(r) or {}
            total = sum(by_type.values())
            if total:
                shares = sorted(by_type.items(), key=lambda kv: -kv[1])
                lines.append(f"airtime by type, {r}: " + ", ".join(
                    f"{k} {v / total:.0%}" for k, v in shares if v / total >= 0.005))
        for t in row["targets"]:
            mark = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
            passed += t["pass"] is True
            failed += t["pass"] is False
            got = "no value" if t["value"] is None else _shown(t["metric"], t["value"])
            vs = "" if t["limit"] is None else f" vs {_shown(t['metric'], t['limit'])}"
            if t["best_router"] and "best" in t["target"]:
                vs += f" ({t['best_router']}" + ("" if t["limit"] == t["best_value"] else
                                                 f": {_shown(t['metric'], t['best_value'])}") + ")"
            lines.append(f"  {mark} {t['target']}: {got}{vs}")
        lines.append("")
    lines.append(f"targets: {passed} passed, {failed} failed")
    return "\n".join(lines)


def render_sweep(out: dict) -> str:
    routers = out["routers"]
    lines = [f"{out['scenario']}: traffic scaled ('x traffic'); offered load: the least airtime "
             f"the traffic needs / what the channel and duty cycle allow (1 = capacity; "
             f"x1 offers {_fmt(out['base_load'])}); {len(out['seeds'])} seeds, means.",
             "goodput: messages delivered per hour of traffic (unicasts delivered + "
             "broadcasts x their reach).", ""]
    head = f"{'load':>6}{'x traffic':>10}{'offered/h':>11}  " + "".join(
        f"{r + ' deliv/reach/goodput':>36}" for r in routers)
    lines += [head, "-" * len(head)]
    for p in out["points"]:
        cells = ""
        for r in routers:
            g = p["routers"][r]
            cells += f"{_fmt(g['unicast_delivery']['mean']):>16} " \
                     f"{_fmt(g['broadcast_reach']['mean']):>8} " \
                     f"{_fmt(g['goodput_per_hour']['mean']):>10}"
        lines.append(f"{_fmt(p['load']):>6}{_fmt(p['factor']):>10}"
                     f"{_fmt(p['messages_per_hour']):>11}  {cells}  ({p['binding']})")
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
    lines = [f"{'scenario':<16}{'seeds':>6}  {'completed':<15}{'time p50':>10}{'p95':>10}"
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
                     f"{_secs(r['file_seconds']['p50']):>10}{_secs(r['file_seconds']['p95']):>10}"
                     f"{_fmt(ar['min']) + '..' + _fmt(ar['max']):>15}  {together}")
        if r["incomplete_seeds"]:
            lines.append(f"{'':<16}incomplete with seeds {r['incomplete_seeds']}")
    return "\n".join(lines)


def _secs(s):
    return "-" if s is None else duration_text(s * 1000)
