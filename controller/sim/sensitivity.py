"""`pollen bench --sensitivity`: every router under every capture rule on the
same scenarios and seeds, so that a router's advantage can be seen not to rest
on one modelling choice (docs/simulator.md "Sensitivity to the capture rule").

A rule is a channel variant: a capture rule and an interference floor
(RULES). One run is (scenario, nodes, rule, router, seed); runs go to a pool
of processes and come back in a fixed order, so the table does not depend on
the number of processes."""
from __future__ import annotations

import multiprocessing
from statistics import mean

from pollen_controller.errors import InputError
from pollen_controller.sim.channel import CAPTURE_RULES
from pollen_controller.sim.engine import ROUTERS, simulate
from pollen_controller.sim.scenario import load_scenario

# label -> (capture rule, interference_db: how far below the demodulation floor
# a frame still interferes; None: the channel's default, its capture margin)
RULES = {rule: (rule, None) for rule in CAPTURE_RULES}
# Meshtasticator's channel: power-only capture, and a frame it cannot
# demodulate does not interfere either
RULES["meshtasticator"] = ("power-only", 0.0)
# (scenario, nodes or None for the scenario's own count)
CASES = (("longfast-30", None), ("longfast-30", 50), ("grid-50", None), ("line-10", None))
SEEDS = tuple(range(1, 11))
METRICS = ("broadcast_reach", "unicast_delivery")
PROCESSES = 2


def _run(job):
    name, nodes, rule, router, seed = job
    sc = load_scenario(name)
    if nodes is not None:
        sc = sc.with_nodes(nodes)
    r = simulate(sc.with_capture(*RULES[rule]), router, seed)
    return {k: r[k] for k in METRICS + ("collision_ratio",)}


def sensitivity(cases=CASES, routers=ROUTERS, seeds=SEEDS, rules=tuple(RULES),
                processes=PROCESSES, progress=None) -> list[dict]:
    """One row per (case, router, rule): the metrics' means over the seeds (a
    metric that is null in a run, e.g. no unicasts, is left out of its mean;
    null when null in all). `rules` are labels of RULES; `seeds` None items
    mean the scenario's own seed."""
    for rule in rules:
        if rule not in RULES:
            raise InputError(f"rule: expected one of {', '.join(RULES)}, got {rule!r}")
    for router in routers:
        if router not in ROUTERS:
            raise InputError(f"router: expected one of {', '.join(ROUTERS)}, got {router!r}")
    cases = [(c, None) if isinstance(c, str) else tuple(c) for c in cases]
    jobs = [(name, nodes, rule, router, seed) for name, nodes in cases for router in routers
            for rule in rules for seed in seeds]
    if processes > 1 and len(jobs) > 1:
        with multiprocessing.Pool(processes) as pool:
            results = []
            for i, r in enumerate(pool.imap(_run, jobs)):
                results.append(r)
                if progress and (i + 1) % max(1, len(jobs) // 20) == 0:
                    progress(f"sensitivity: {i + 1}/{len(jobs)} runs")
    else:
        results = [_run(j) for j in jobs]
    rows, by_key = [], {}
    for (name, nodes, rule, router, seed), r in zip(jobs, results):
        key = (name, nodes, router, rule)
        if key not in by_key:
            capture, interference_db = RULES[rule]
            by_key[key] = {"scenario": name, "nodes": nodes or len(load_scenario(name).node_ids),
                           "router": router, "rule": rule, "capture": capture,
                           "interference_db": interference_db, "seeds": [], "runs": []}
            rows.append(by_key[key])
        by_key[key]["seeds"].append(seed)
        by_key[key]["runs"].append(r)
    for row in rows:
        for k in METRICS + ("collision_ratio",):
            got = [r[k] for r in row["runs"] if r[k] is not None]
            row[k] = round(mean(got), 3) if got else None
    return rows


def render(rows) -> str:
    """A table: one line per case and router, reach and delivery per rule."""
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    cells = {(r["scenario"], r["nodes"], r["router"], r["rule"]): r for r in rows}
    lines = [("scenario (nodes)    router          "
              + "".join(f"{rule:<16}" for rule in rules)).rstrip(),
             (" " * 36 + "reach  deliv.   " * len(rules)).rstrip()]
    seen = []
    for r in rows:
        key = (r["scenario"], r["nodes"], r["router"])
        if key in seen:
            continue
        seen.append(key)
        out = f"{r['scenario']} ({r['nodes']})"
        out = f"{out:<20}{r['router']:<16}"
        for rule in rules:
            c = cells[key + (rule,)]
            out += f"{_num(c['broadcast_reach']):<7}{_num(c['unicast_delivery']):<9}"
        lines.append(out.rstrip())
    seeds = sorted({s for r in rows for s in r["seeds"]}, key=lambda s: (s is None, s))
    lines.append(f"means over seeds {_seed_text(seeds)}; reach = broadcast_reach, "
                 f"deliv. = unicast_delivery ('-': no unicasts)")
    if "meshtasticator" in rules:
        lines.append("meshtasticator: power-only capture, and only frames that can be "
                     "demodulated interfere")
    return "\n".join(lines)


def _num(v):
    return "-" if v is None else f"{v:.3f}"


def _seed_text(seeds):
    if seeds == [None]:
        return "(each scenario's own)"
    if all(isinstance(s, int) for s in seeds) and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}"
    return ", ".join("own" if s is None else str(s) for s in seeds)
