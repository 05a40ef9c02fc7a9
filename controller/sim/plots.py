"""PNG plots of simulator runs (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_LABELLED_NODES = 40   # more than this and node labels would only cover the links


def _frame(xs, ys, width_in=9.0):
    """Axis limits padded on every side and a figure size that follows the
    layout's shape, so a line of nodes is a readable band and not a strip
    (a spread of 0 on one axis no longer collapses it)."""
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = max(0.08 * max(x1 - x0, y1 - y0), 0.5)
    x0, x1, y0, y1 = x0 - pad, x1 + pad, y0 - pad, y1 + pad
    height_in = min(max(width_in * (y1 - y0) / (x1 - x0), 3.5), width_in)
    return (x0, x1), (y0, y1), (width_in, height_in)


def topology(channel, path: Path, title: str = "") -> Path:
    """Node positions and the links that can be demodulated, coloured by SNR;
    nodes named where there are few enough to read (a line, a small grid).
    Equal scale on both axes, padded, the figure shaped to the layout."""
    plt = _plt()
    xs = [p[0] / 1000 for p in channel.pos.values()]
    ys = [p[1] / 1000 for p in channel.pos.values()]
    xlim, ylim, size = _frame(xs, ys)
    fig, ax = plt.subplots(figsize=size)
    drawn = set()
    for tx in channel.pos:
        x1, y1 = channel.pos[tx]
        for rx, _, snr, ok in channel.hearers(tx):
            key = (min(tx, rx), max(tx, rx))
            if not ok or key in drawn:
                continue
            drawn.add(key)
            x2, y2 = channel.pos[rx]
            good = snr - channel.floor_db
            ax.plot([x1 / 1000, x2 / 1000], [y1 / 1000, y2 / 1000], lw=0.8,
                    color="tab:green" if good >= 10 else "tab:orange" if good >= 3 else "tab:red",
                    alpha=0.6, zorder=1)
    ax.scatter(xs, ys, s=18, color="black", zorder=2)
    if len(channel.pos) <= _LABELLED_NODES:
        for i, (n, (x, y)) in enumerate(channel.pos.items()):
            # alternately above and below: neighbours' labels never meet
            ax.annotate(str(n), (x / 1000, y / 1000), xytext=(0, 7 if i % 2 == 0 else -13),
                        textcoords="offset points", ha="center", fontsize=8, zorder=3)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="datalim")
    # the padded limits are a starting point that the equal aspect widens
    # (no artists come after them, so nothing is autoscaled away); fixed,
    # matplotlib logged "Ignoring fixed y limits ..." on every plot
    ax.set_autoscale_on(True)
    ax.set_xlabel("x (km)")
    ax.set_ylabel("y (km)")
    ax.grid(alpha=0.2)
    ax.set_title(title or f"{len(channel.pos)} nodes, {len(drawn)} links")
    ax.text(0.01, 0.01, "links: green >=10 dB margin, orange >=3, red <3",
            transform=ax.transAxes, fontsize=7, color="0.3", va="bottom")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def latency_cdf(latencies_by_label: dict, path: Path, title: str = "Unicast latency") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, values in latencies_by_label.items():
        if not values:
            continue
        v = sorted(x / 1000 for x in values)
        ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (s, log scale)")
    ax.set_ylabel("fraction of delivered unicasts")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def reach_vs_nodes(rows: list[dict], path: Path, title: str = "") -> Path:
    """rows: {"nodes", "router", "broadcast_reach", "unicast_delivery"} per run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for router in sorted({r["router"] for r in rows}):
        mine = sorted((r for r in rows if r["router"] == router), key=lambda r: r["nodes"])
        n = [r["nodes"] for r in mine]
        ax.plot(n, [r["broadcast_reach"] or 0 for r in mine], marker="o",
                label=f"{router}: broadcast reach")
        if any(r["unicast_delivery"] is not None for r in mine):
            ax.plot(n, [r["unicast_delivery"] or 0 for r in mine], marker="s", ls="--",
                    label=f"{router}: unicast delivery")
    ax.set_xlabel("nodes")
    ax.set_ylabel("fraction")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "Reach and delivery vs node count")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def load_sweep(sweep: dict, path: Path, title: str = "") -> Path:
    """bench.load_sweep's result: delivery and reach (left) and goodput (right)
    against the offered load, one colour per router."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    points = sweep["points"]
    x = [p["load"] for p in points]
    for i, router in enumerate(sweep["routers"]):
        colour = f"C{i}"
        g = [p["routers"][router] for p in points]
        for key, style, what in (("unicast_delivery", "-", "unicast delivery"),
                                 ("broadcast_reach", "--", "broadcast reach")):
            y = [r[key]["mean"] for r in g]
            if any(v is not None for v in y):
                left.plot(x, [float("nan") if v is None else v for v in y], style,
                          marker="o", color=colour, label=f"{router}: {what}")
        right.plot(x, [r["goodput_per_hour"]["mean"] for r in g], marker="o", color=colour,
                   label=router)
    right.plot(x, [p["messages_per_hour"] for p in points], ":", color="black",
               label="offered")
    for ax in (left, right):
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("offered load (least airtime needed / capacity)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("fraction")
    left.set_ylim(0, 1.05)
    right.set_yscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    right.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    for axis in (right.xaxis, right.yaxis, left.xaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    right.set_ylabel("messages delivered per hour (log scale)")
    fig.suptitle(title or f"{sweep['scenario']}: load sweep, {len(sweep['seeds'])} seeds (means)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
