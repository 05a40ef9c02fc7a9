"""`pollen topology`: the mesh as the nodes' neighbour tables describe it,
drawn to a PNG with matplotlib (no display needed). Positions are unknown, so
nodes are placed by a force layout (linked nodes pull together, all push
apart) that starts from rings of hop count around the attached node."""
from __future__ import annotations

import math
import time
from pathlib import Path

_SNR_MIN_DB, _SNR_MAX_DB = -15.0, 10.0   # colour scale: red (weak) .. green (strong)


def merge_links(links: list[dict]) -> dict:
    """Directed links (rx heard tx) -> {(a, b): {"snr": [..], "rssi": [..]}}, a < b,
    one entry per pair with both directions' figures."""
    pairs = {}
    for x in links:
        a, b = sorted((x["rx"], x["tx"]))
        p = pairs.setdefault((a, b), {"snr": [], "rssi": []})
        if x.get("snr_db") is not None:
            p["snr"].append(x["snr_db"])
        if x.get("rssi_dbm") is not None:
            p["rssi"].append(x["rssi_dbm"])
    return pairs


def layout(ids: list[str], pairs, hops: dict, iterations: int = 300) -> dict:
    """Fruchterman-Reingold on a unit square, deterministic."""
    import numpy as np

    n = len(ids)
    if n == 1:
        return {ids[0]: (0.0, 0.0)}
    index = {nid: i for i, nid in enumerate(ids)}
    pos = np.zeros((n, 2))
    rings = {}
    for nid in ids:
        rings.setdefault(hops.get(nid), []).append(nid)
    for h, members in rings.items():
        r = 0.0 if h == 0 and len(members) == 1 else 0.3 * (h if h is not None else 4) + 0.15
        for k, nid in enumerate(members):
            a = 2 * math.pi * k / len(members) + 0.3 * (h or 0)
            pos[index[nid]] = (r * math.cos(a), r * math.sin(a))
    edges = np.array([(index[a], index[b]) for a, b in pairs], dtype=int).reshape(-1, 2)
    k = 1.0 / math.sqrt(n)
    temp = 0.1
    for _ in range(iterations):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.linalg.norm(delta, axis=2) + 1e-9
        disp = (delta / dist[..., None] * (k * k / dist)[..., None]).sum(axis=1)
        if len(edges):
            d = pos[edges[:, 0]] - pos[edges[:, 1]]
            length = np.linalg.norm(d, axis=1)[:, None] + 1e-9
            pull = d / length * (length * length / k)
            np.add.at(disp, edges[:, 0], -pull)
            np.add.at(disp, edges[:, 1], pull)
        length = np.linalg.norm(disp, axis=1)[:, None] + 1e-9
        pos += disp / length * np.minimum(length, temp)
        temp = max(temp * 0.98, 0.002)
    return {nid: (float(pos[i, 0]), float(pos[i, 1])) for nid, i in index.items()}


def draw_mesh(states: dict, links: list[dict], path, since_t: float | None = None) -> dict:
    """states: node id -> state (name, hops, attached_t...) from history;
    links: rx, tx, rssi_dbm, snr_db, t. Writes the PNG; returns counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    from pollen_controller.untrusted import safe_text

    pairs = merge_links(links)
    # the linked nodes, and those heard in the same time without a link known
    ids = sorted({i for p in pairs for i in p}
                 | {i for i, s in states.items()
                    if since_t is None or (s.get("seen_t") or 0) >= since_t})
    hops = {i: (0 if (states.get(i) or {}).get("attached_t") else (states.get(i) or {}).get("hops"))
            for i in ids}
    pos = layout(ids, pairs, hops)
    cmap = matplotlib.colormaps["RdYlGn"]
    norm = colors.Normalize(_SNR_MIN_DB, _SNR_MAX_DB)
    fig, ax = plt.subplots(figsize=(8, 7))
    for (a, b), p in pairs.items():
        (x1, y1), (x2, y2) = pos[a], pos[b]
        snr = min(p["snr"]) if p["snr"] else None
        colour = "grey" if snr is None else cmap(norm(snr))
        ax.plot([x1, x2], [y1, y2], color=colour, lw=2.5, zorder=1, solid_capstyle="round")
        if p["snr"]:
            label = " / ".join(f"{v:.1f}" for v in sorted(set(p["snr"])))
            ax.text((x1 + x2) / 2, (y1 + y2) / 2, label, fontsize=8, ha="center", va="center",
                    zorder=3, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    for nid in ids:
        x, y = pos[nid]
        h = hops.get(nid)
        ax.scatter([x], [y], s=260 if h == 0 else 160, zorder=2, edgecolors="black",
                   color="tab:blue" if h == 0 else "white", marker="s" if h == 0 else "o")
        name = safe_text((states.get(nid) or {}).get("name"), 32)
        # a name from the air is plain text: parse_math=False, or "a$\\foo$" is
        # read as mathtext (and raises); control characters are escaped
        ax.annotate(f"{name}\n{nid}" if name else nid, (x, y), xytext=(0, -16),
                    textcoords="offset points", ha="center", va="top", fontsize=8, zorder=4,
                    parse_math=False,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, shrink=0.7, label="SNR dB (the weaker direction)")
    ax.set_axis_off()
    ax.margins(0.15)
    when = "" if since_t is None else \
        f", heard since {time.strftime('%Y-%m-%d %H:%M', time.localtime(since_t))}"
    ax.set_title(f"pollen mesh: {len(ids)} nodes, {len(pairs)} links{when}\n"
                 "square: attached node; labels: SNR dB of each direction heard", fontsize=10)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110)
    plt.close(fig)
    return {"nodes": len(ids), "links": len(pairs)}
