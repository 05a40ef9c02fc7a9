"""What a simulation run measured, summarised as one JSON-able dict.

Definitions (docs/simulator.md has the full list):
- broadcast_reach: for each broadcast, the fraction of the *other* nodes that
  received it; the mean over broadcasts.
- unicast_delivery: unicasts received by their destination / unicasts sent.
- latency_ms: unicast one-way latency (send -> first reception at destination).
- tx_per_delivered / airtime_ms_per_delivered: every frame put on air (beacons,
  acks, relays and repairs included) per delivery, a delivery being one unicast
  reaching its destination or one broadcast reaching one other node.
- collision_ratio: frame receptions lost to collisions / receptions that would
  otherwise have succeeded or failed for another reason (demodulable links).
- channel_utilisation: mean over nodes of the fraction of time the node was
  transmitting or sensed another transmission (capped at 1 per node).
"""
from __future__ import annotations


def percentile(values, q):
    if not values:
        return None
    v = sorted(values)
    i = min(len(v) - 1, max(0, round(q / 100 * (len(v) - 1))))
    return round(v[i], 1)


class Metrics:
    def __init__(self, node_ids):
        self.node_ids = list(node_ids)
        self.messages: dict[tuple[int, int], dict] = {}
        self.tx_frames = 0
        self.tx_airtime_us = 0
        self.airtime_us_by_node = {n: 0 for n in self.node_ids}
        self.busy_ms_by_node = {n: 0 for n in self.node_ids}
        self.peak_held = 0
        self.peak_queue = 0
        self.not_sent = 0
        self.send_errors = 0

    # ---- recording ----------------------------------------------------------

    def sent(self, src, msg_id, dest, t_ms, broadcast):
        self.messages[(src, msg_id)] = {"src": src, "dest": dest, "t": t_ms,
                                        "broadcast": broadcast, "got": {}}

    def received(self, node, info, t_ms):
        try:
            key = (int(info["from"], 16), info["id"])
        except (KeyError, ValueError, TypeError):
            return
        m = self.messages.get(key)
        if m is not None and node != m["src"] and node not in m["got"]:
            m["got"][node] = t_ms

    def transmitted(self, node, airtime_us, sensed_by):
        self.tx_frames += 1
        self.tx_airtime_us += airtime_us
        self.airtime_us_by_node[node] += airtime_us
        ms = airtime_us / 1000
        self.busy_ms_by_node[node] += ms
        for rx in sensed_by:
            self.busy_ms_by_node[rx] += ms

    def sample(self, held, queue):
        if held > self.peak_held:
            self.peak_held = held
        if queue > self.peak_queue:
            self.peak_queue = queue

    # ---- summary ------------------------------------------------------------

    def summary(self, duration_ms, channel_stats) -> dict:
        others = max(1, len(self.node_ids) - 1)
        reach, latencies, bcast_latencies = [], [], []
        unicasts = delivered = receptions = 0
        for m in self.messages.values():
            if m["broadcast"]:
                reach.append(len(m["got"]) / others)
                receptions += len(m["got"])
                bcast_latencies.extend(t - m["t"] for t in m["got"].values())
            else:
                unicasts += 1
                t = m["got"].get(m["dest"])
                if t is not None:
                    delivered += 1
                    latencies.append(t - m["t"])
        useful = delivered + receptions
        attempted = (channel_stats["receptions"] - channel_stats["lost_down"])
        dur_s = max(1e-9, duration_ms / 1000)
        duty = [us / 1e6 / dur_s * 100 for us in self.airtime_us_by_node.values()]
        util = [min(1.0, ms / max(1, duration_ms)) for ms in self.busy_ms_by_node.values()]
        return {
            "broadcasts": len(reach),
            "unicasts": unicasts,
            "broadcast_reach": round(sum(reach) / len(reach), 4) if reach else None,
            "unicast_delivery": round(delivered / unicasts, 4) if unicasts else None,
            "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
            "broadcast_latency_ms": {"p50": percentile(bcast_latencies, 50),
                                     "p95": percentile(bcast_latencies, 95)},
            "tx_frames": self.tx_frames,
            "tx_per_delivered": round(self.tx_frames / useful, 3) if useful else None,
            "airtime_ms_per_delivered":
                round(self.tx_airtime_us / 1000 / useful, 1) if useful else None,
            "collision_ratio":
                round(channel_stats["lost_collision"] / attempted, 4) if attempted else 0.0,
            "channel_utilisation": round(sum(util) / len(util), 4) if util else 0.0,
            "duty_cycle_pct": {"mean": round(sum(duty) / len(duty), 3) if duty else 0.0,
                               "max": round(max(duty), 3) if duty else 0.0},
            "peak_held": self.peak_held,
            "peak_queue": self.peak_queue,
            "not_sent": self.not_sent,
            "send_errors": self.send_errors,
        }

    def latencies_ms(self):
        out = []
        for m in self.messages.values():
            if not m["broadcast"] and m["dest"] in m["got"]:
                out.append(m["got"][m["dest"]] - m["t"])
        return out
