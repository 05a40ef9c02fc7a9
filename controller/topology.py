"""Who hears whom: node positions and a table of directed radio links.

A link ``(tx, rx)`` is what node ``rx`` measures when node ``tx`` transmits.
Links are built either from positions with a log-distance path-loss model or
from an explicit list. The virtual radio medium reads this table.

Path-loss defaults, for 868 MHz:

- ``pl_d0_db = 31.2`` at ``d0_m = 1``: free-space loss at 1 m, 20*log10(4*pi/lambda)
  with lambda = 0.345 m.
- ``exponent = 2.7``: between free space (2.0) and cluttered suburbs (3-4), a
  common fit for rooftop-to-rooftop LoRa links.
- ``tx_power_dbm = 14`` (the EU868 limit), ``antenna_gain_dbi = 0`` at each end,
  ``noise_figure_db = 6`` (SX127x/SX126x receivers).

Noise floor is -174 + 10*log10(bw_hz) + noise_figure_db dBm. A link exists when its
SNR reaches the demodulation floor of the spreading factor. The receiver's
sensitivity is noise floor + SNR floor, so "SNR >= floor" and "RSSI >= sensitivity"
are the same test; ``sensitivity_dbm()`` gives the number.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from pollen.airtime import PRESETS

DEFAULT_PRESET = PRESETS["ShortFast"]
FIRST_ID = 0x00000001

# Lowest SNR at which LoRa still demodulates, per spreading factor (Semtech AN1200.22).
SNR_FLOOR_DB = {6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}

# Builders place nodes as a fraction of the link range: one spacing is well inside
# range, two spacings are out of it (0.55 -> +7 dB margin in, 1.1 -> -1.1 dB out).
_CHAIN_SPACING = 0.6
_LADDER_COLUMN_SPACING = 0.55
_LADDER_COLUMN_HEIGHT = 0.35   # first to last row; the far diagonal is 0.65 of range


def hop_distances(neighbours, start) -> dict:
    """{node: fewest hops from start} for the nodes start can reach, breadth
    first; neighbours(node) gives the nodes one hop from it."""
    dist, todo = {start: 0}, deque([start])
    while todo:
        n = todo.popleft()
        for m in neighbours(n):
            if m not in dist:
                dist[m] = dist[n] + 1
                todo.append(m)
    return dist


@dataclass(frozen=True)
class Link:
    rssi_dbm: float
    snr_db: float


@dataclass(frozen=True)
class PathLossModel:
    pl_d0_db: float = 31.2
    d0_m: float = 1.0
    exponent: float = 2.7
    tx_power_dbm: float = 14.0
    antenna_gain_dbi: float = 0.0   # at each end
    noise_figure_db: float = 6.0

    def path_loss_db(self, distance_m):
        d_m = max(distance_m, self.d0_m)   # closer than d0: no better than at d0
        return self.pl_d0_db + 10.0 * self.exponent * math.log10(d_m / self.d0_m)

    def rssi_dbm(self, distance_m):
        return self.tx_power_dbm + 2 * self.antenna_gain_dbi - self.path_loss_db(distance_m)

    def noise_floor_dbm(self, bw_hz):
        return -174.0 + 10.0 * math.log10(bw_hz) + self.noise_figure_db

    def sensitivity_dbm(self, preset):
        sf, bw_hz = preset[0], preset[1]
        return self.noise_floor_dbm(bw_hz) + SNR_FLOOR_DB[sf]

    def range_m(self, preset):
        # Distance at which the SNR falls to the floor (no shadowing).
        budget_db = self.tx_power_dbm + 2 * self.antenna_gain_dbi - self.sensitivity_dbm(preset)
        return self.d0_m * 10.0 ** ((budget_db - self.pl_d0_db) / (10.0 * self.exponent))

    def link(self, distance_m, preset, shadowing_db=0.0):
        # The link at this distance, or None when it cannot be demodulated.
        rssi_dbm = self.rssi_dbm(distance_m) - shadowing_db
        snr_db = rssi_dbm - self.noise_floor_dbm(preset[1])
        if snr_db < SNR_FLOOR_DB[preset[0]]:
            return None
        return Link(rssi_dbm, snr_db)


DEFAULT_MODEL = PathLossModel()


def _check_id(node_id):
    if not isinstance(node_id, int) or not 0 <= node_id <= 0xFFFFFFFF:
        raise ValueError(f"node id must be a 32-bit unsigned int, got {node_id!r}")
    return node_id


class Topology:
    def __init__(self, positions=None, links=None):
        # positions: {node_id: (x_m, y_m) or None}; links: {(tx, rx): Link}
        self.positions = {_check_id(n): (None if p is None else (float(p[0]), float(p[1])))
                          for n, p in (positions or {}).items()}
        self.links = {}
        for (a, b), link in (links or {}).items():
            self.set_link(a, b, link, symmetric=False)

    # --- building ---------------------------------------------------------

    @classmethod
    def from_positions(cls, positions, preset=DEFAULT_PRESET, model=DEFAULT_MODEL,
                       shadowing_sigma_db=0.0, seed=None):
        # Shadowing is drawn once per unordered pair, so links stay symmetric.
        topo = cls(positions)
        rng = random.Random(seed)
        ids = sorted(topo.positions)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                pa, pb = topo.positions[a], topo.positions[b]
                if pa is None or pb is None:
                    raise ValueError("from_positions needs a position for every node")
                shadow_db = rng.gauss(0.0, shadowing_sigma_db) if shadowing_sigma_db else 0.0
                link = model.link(math.dist(pa, pb), preset, shadow_db)
                if link is not None:
                    topo.set_link(a, b, link)
        return topo

    @classmethod
    def from_links(cls, node_ids, links, positions=None):
        # links: iterable of (a, b, rssi_dbm, snr_db), each valid both ways.
        positions = positions or {}
        topo = cls({n: positions.get(n) for n in node_ids})
        for a, b, rssi_dbm, snr_db in links:
            topo.set_link(a, b, Link(float(rssi_dbm), float(snr_db)))
        return topo

    def set_link(self, a, b, link, symmetric=True):
        # link None cuts it. Unknown node ids are an error, not a new node.
        for n in (a, b):
            if n not in self.positions:
                raise KeyError(f"unknown node {n:#010x}")
        if a == b:
            raise ValueError("a node has no link to itself")
        pairs = [(a, b), (b, a)] if symmetric else [(a, b)]
        for pair in pairs:
            if link is None:
                self.links.pop(pair, None)
            else:
                self.links[pair] = link

    def relabeled(self, new_ids):
        """The same mesh with other node ids ({old: new}): nodes whose ids
        are their keys' (docs/identity.md) in a topology laid out by number."""
        topo = Topology({new_ids[n]: p for n, p in self.positions.items()})
        for (a, b), link in self.links.items():
            topo.set_link(new_ids[a], new_ids[b], link, symmetric=False)
        return topo

    # --- queries ----------------------------------------------------------

    @property
    def node_ids(self):
        return sorted(self.positions)

    def link(self, tx, rx):
        return self.links.get((tx, rx))

    def neighbours(self, node):
        # Nodes that hear `node` transmit.
        return sorted(rx for (tx, rx) in self.links if tx == node)

    def _adjacency(self):
        adj = {n: [] for n in self.positions}
        for tx, rx in self.links:
            adj[tx].append(rx)
        return adj

    def _distances_from(self, start, adj=None):
        adj = adj if adj is not None else self._adjacency()
        return hop_distances(adj.__getitem__, start)

    def hops(self, a, b):
        # Fewest hops from a to b, or None if b cannot be reached.
        return self._distances_from(a).get(b)

    def diameter(self):
        # Longest shortest path in hops; None if some node cannot reach another.
        worst = 0
        adj = self._adjacency()
        for n in self.positions:
            dist = self._distances_from(n, adj)
            if len(dist) < len(self.positions):
                return None
            worst = max(worst, max(dist.values()))
        return worst

    # --- saving -----------------------------------------------------------

    def to_dict(self):
        nodes = []
        for n in self.node_ids:
            p = self.positions[n]
            nodes.append({"id": n} if p is None else {"id": n, "x_m": p[0], "y_m": p[1]})
        links = [{"tx": a, "rx": b, "rssi_dbm": link.rssi_dbm, "snr_db": link.snr_db}
                 for (a, b), link in sorted(self.links.items())]
        return {"nodes": nodes, "links": links}

    @classmethod
    def from_dict(cls, data):
        positions = {}
        for node in data["nodes"]:
            has_pos = "x_m" in node and "y_m" in node
            positions[node["id"]] = (node["x_m"], node["y_m"]) if has_pos else None
        links = {(d["tx"], d["rx"]): Link(float(d["rssi_dbm"]), float(d["snr_db"]))
                 for d in data["links"]}
        return cls(positions, links)

    def __eq__(self, other):
        return (isinstance(other, Topology) and self.positions == other.positions
                and self.links == other.links)

    def __repr__(self):
        return f"Topology({len(self.positions)} nodes, {len(self.links)} directed links)"


# --- builders ---------------------------------------------------------------

def line(n, spacing_m=None, *, first_id=FIRST_ID, preset=DEFAULT_PRESET, model=DEFAULT_MODEL,
         shadowing_sigma_db=0.0, seed=None):
    # n nodes on the x axis. Default spacing: each hears only its neighbours.
    if spacing_m is None:
        spacing_m = _CHAIN_SPACING * model.range_m(preset)
    positions = {first_id + i: (i * spacing_m, 0.0) for i in range(n)}
    return Topology.from_positions(positions, preset, model, shadowing_sigma_db, seed)


def grid(cols, rows, spacing_m=None, *, first_id=FIRST_ID, preset=DEFAULT_PRESET,
         model=DEFAULT_MODEL, shadowing_sigma_db=0.0, seed=None):
    # Numbered row by row. Default spacing: each hears its 8 surrounding nodes.
    if spacing_m is None:
        spacing_m = _CHAIN_SPACING * model.range_m(preset)
    positions = {first_id + r * cols + c: (c * spacing_m, r * spacing_m)
                 for r in range(rows) for c in range(cols)}
    return Topology.from_positions(positions, preset, model, shadowing_sigma_db, seed)


def ladder(cols, rows=2, *, first_id=FIRST_ID, preset=DEFAULT_PRESET, model=DEFAULT_MODEL):
    # `cols` columns of `rows` nodes, numbered column by column. A node hears every
    # node in its own and the adjacent columns only: cols - 1 hops end to end.
    # Spacing follows the preset's range, so the property holds for any preset.
    range_m = model.range_m(preset)
    col_spacing_m = _LADDER_COLUMN_SPACING * range_m
    row_spacing_m = _LADDER_COLUMN_HEIGHT * range_m / (rows - 1) if rows > 1 else 0.0
    positions = {first_id + c * rows + r: (c * col_spacing_m, r * row_spacing_m)
                 for c in range(cols) for r in range(rows)}
    return Topology.from_positions(positions, preset, model)
