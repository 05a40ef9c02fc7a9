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
- file_completion: file fetches that ended in "fetched" / fetches started.
- file_seconds: fetch start -> fetched, over completed fetches.
- file_airtime_ratio: airtime of WANT, CHUNK and PART frames / the lower
  bound of the completed fetches (chunks x shortest-path hops x time on air of
  one full chunk frame, summed over them).
- file_catalog_airtime_share: airtime of CATALOG frames / airtime of all frames.
- telemetry_airtime_share: airtime of telemetry frames (pollen's STATUS, the
  baseline's TELEMETRY_APP; own and relayed) / airtime of all frames;
  telemetry_duty_pct: the most any one node spent on them, % of the time.
- tx_by_type, airtime_ms_by_type: frames put on air and their airtime, by the
  type name `frames.classify` gives.
- unicast_tx_over_hops: for each delivered unicast, the transmissions of every
  frame carrying it (first copy, relays, retries, held copies) / the
  shortest-path hop count from its source to its destination when it was
  sent; unicast_ack_tx_over_hops: the same for the frames acknowledging it
  (acks, MeshCore's path returns), so one transmission per hop each way is
  1.0 and 1.0; unicast_tx_per_delivered: the mean of both together over
  delivered unicasts. unicast_tx_over_hops_routed: unicast_tx_over_hops over
  the delivered unicasts whose sender knew a way to the destination as it
  sent (a next hop; MeshCore: a returned path), the condition of issue 11's
  target; the rest pay a route discovery.
- With spammers (the scenario's spam section), every figure above counts the
  honest traffic only (deliveries of spam are not useful ones); spam_*: the
  spammers' own broadcast reach and unicast delivery, and spam_refused, what
  their nodes refused (a full queue or store).
"""
from __future__ import annotations

# frame type names (sim/frames.py) the file and telemetry metrics count
TELEMETRY_TYPES = ("status", "telemetry")   # pollen's STATUS, the baseline's TELEMETRY_APP
CATALOG = "catalog"
FETCH_TYPES = ("want", "chunk", "part")   # frame types a fetch costs (catalog gossip apart)
ACK_TYPES = ("ack", "path")   # frames that acknowledge a unicast (MeshCore: path returns)


def percentile(values, q, digits=1):
    if not values:
        return None
    v = sorted(values)
    i = min(len(v) - 1, max(0, round(q / 100 * (len(v) - 1))))
    return round(v[i], digits)


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
        self.airtime_us_by_type: dict[str, int] = {}
        self.tx_by_type: dict[str, int] = {}
        self.tx_by_msg: dict[tuple[int, int], int] = {}   # unicast (origin, id) -> frames
        self.ack_tx_by_msg: dict[tuple[int, int], int] = {}   # ... -> frames acknowledging it
        self.status_us_by_node: dict[int, int] = {}
        # (file index, node) -> [start_ms, lower bound us or None, end_ms, fetched]
        self.fetches: dict[tuple[int, int], list] = {}
        self.files_not_shared = 0     # seeder off at share_at_s
        self.file_not_started = 0     # fetcher off at fetch_at_s, or the core refused
        self.file_not_applicable = None   # why the router reports no file metrics
        self.spammers = []   # nodes sending spam (scenario spam section)
        self.spam_refused = 0   # spam the spammer's own node refused (its queue or store full)

    # ---- recording ----------------------------------------------------------

    def sent(self, src, msg_id, dest, t_ms, broadcast, hops=None, routed=None, spam=False):
        # hops: the shortest path from src to dest at t_ms (None: no path, or a broadcast);
        # routed: src knew a way to dest as it sent (None: a broadcast, or not known);
        # spam: a spammer's, measured apart from the honest traffic
        self.messages[(src, msg_id)] = {"src": src, "dest": dest, "t": t_ms,
                                        "broadcast": broadcast, "got": {}, "hops": hops,
                                        "routed": routed, "spam": spam}

    def received(self, node, info, t_ms):
        try:
            key = (int(info["from"], 16), info["id"])
        except (KeyError, ValueError, TypeError):
            return
        m = self.messages.get(key)
        if m is not None and node != m["src"] and node not in m["got"]:
            m["got"][node] = t_ms

    def transmitted(self, node, airtime_us, sensed_by, frame_type="frame", msg_key=None):
        # frame_type: a name (frames.classify); msg_key: the unicast it carries or acks
        self.tx_frames += 1
        self.tx_airtime_us += airtime_us
        self.airtime_us_by_type[frame_type] = self.airtime_us_by_type.get(frame_type, 0) \
            + airtime_us
        self.tx_by_type[frame_type] = self.tx_by_type.get(frame_type, 0) + 1
        if msg_key is not None:
            per = self.ack_tx_by_msg if frame_type in ACK_TYPES else self.tx_by_msg
            per[msg_key] = per.get(msg_key, 0) + 1
        if frame_type in TELEMETRY_TYPES:
            self.status_us_by_node[node] = self.status_us_by_node.get(node, 0) + airtime_us
        self.airtime_us_by_node[node] += airtime_us
        ms = airtime_us / 1000
        self.busy_ms_by_node[node] += ms
        for rx in sensed_by:
            self.busy_ms_by_node[rx] += ms

    def fetch_started(self, file_index, node, t_ms, bound_us):
        self.fetches[(file_index, node)] = [t_ms, bound_us, None, False]

    def fetch_ended(self, file_index, node, t_ms, fetched):
        f = self.fetches.get((file_index, node))
        if f is not None and f[2] is None:
            f[2], f[3] = t_ms, fetched

    def sample(self, held, queue):
        if held > self.peak_held:
            self.peak_held = held
        if queue > self.peak_queue:
            self.peak_queue = queue

    # ---- summary ------------------------------------------------------------

    def summary(self, duration_ms, channel_stats) -> dict:
        others = max(1, len(self.node_ids) - 1)
        reach, latencies, bcast_latencies = [], [], []
        unicasts = delivered = receptions = unicast_tx = 0
        tx_over_hops, ack_over_hops, routed_over_hops = [], [], []
        spam_reach, spam_unicasts, spam_delivered = [], 0, 0
        for key, m in self.messages.items():
            if m["spam"]:
                if m["broadcast"]:
                    spam_reach.append(len(m["got"]) / others)
                else:
                    spam_unicasts += 1
                    spam_delivered += m["dest"] in m["got"]
                continue
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
                    tx = self.tx_by_msg.get(key, 0)
                    ack_tx = self.ack_tx_by_msg.get(key, 0)
                    unicast_tx += tx + ack_tx
                    if m["hops"]:
                        tx_over_hops.append(tx / m["hops"])
                        ack_over_hops.append(ack_tx / m["hops"])
                        if m["routed"]:
                            routed_over_hops.append(tx / m["hops"])
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
            "tx_by_type": dict(sorted(self.tx_by_type.items())),
            "airtime_ms_by_type": {k: round(v / 1000, 1)
                                   for k, v in sorted(self.airtime_us_by_type.items())},
            "unicast_tx_over_hops": {"p50": percentile(tx_over_hops, 50, 3),
                                     "p95": percentile(tx_over_hops, 95, 3)},
            "unicast_ack_tx_over_hops": {"p50": percentile(ack_over_hops, 50, 3),
                                         "p95": percentile(ack_over_hops, 95, 3)},
            "unicast_tx_over_hops_routed": {"p50": percentile(routed_over_hops, 50, 3),
                                            "p95": percentile(routed_over_hops, 95, 3),
                                            "n": len(routed_over_hops)},
            "unicast_tx_per_delivered": round(unicast_tx / delivered, 3) if delivered else None,
            "airtime_ms_per_delivered":
                round(self.tx_airtime_us / 1000 / useful, 1) if useful else None,
            "collision_ratio":
                round(channel_stats["lost_collision"] / attempted, 4) if attempted else 0.0,
            "channel_utilisation": round(sum(util) / len(util), 4) if util else 0.0,
            "duty_cycle_pct": {"mean": round(sum(duty) / len(duty), 3) if duty else 0.0,
                               "max": round(max(duty), 3) if duty else 0.0},
            "telemetry_airtime_share": round(sum(self.airtime_us_by_type.get(t, 0)
                                                 for t in TELEMETRY_TYPES)
                                             / self.tx_airtime_us, 4) if self.tx_airtime_us else 0.0,
            "telemetry_duty_pct": round(max(self.status_us_by_node.values(), default=0)
                                        / 1e6 / dur_s * 100, 3),
            "peak_held": self.peak_held,
            "peak_queue": self.peak_queue,
            "not_sent": self.not_sent,
            "send_errors": self.send_errors,
            "spammers": list(self.spammers),
            "spam_broadcasts": len(spam_reach),
            "spam_unicasts": spam_unicasts,
            "spam_broadcast_reach":
                round(sum(spam_reach) / len(spam_reach), 4) if spam_reach else None,
            "spam_unicast_delivery":
                round(spam_delivered / spam_unicasts, 4) if spam_unicasts else None,
            "spam_refused": self.spam_refused,
            **self.file_summary(),
        }

    def fetch_airtime_us(self):
        return sum(self.airtime_us_by_type.get(t, 0) for t in FETCH_TYPES)

    def fetch_seconds(self):
        # fetch start -> fetched, for each completed fetch
        return [(f[2] - f[0]) / 1000 for f in self.fetches.values() if f[3]]

    def file_summary(self) -> dict:
        done = [f for f in self.fetches.values() if f[3]]
        seconds = self.fetch_seconds()
        bounds = [f[1] for f in done]
        bound_us = sum(bounds) if done and None not in bounds else None
        used_us = self.fetch_airtime_us()
        cat_us = self.airtime_us_by_type.get(CATALOG, 0)
        return {
            "file_fetches": len(self.fetches),
            "file_fetched": len(done),
            "file_failed": len([f for f in self.fetches.values() if f[2] is not None and not f[3]]),
            "file_completion": round(len(done) / len(self.fetches), 4) if self.fetches else None,
            "file_seconds": {"p50": percentile(seconds, 50), "p95": percentile(seconds, 95)},
            "file_airtime_ms": round(used_us / 1000, 1),
            "file_lower_bound_ms": round(bound_us / 1000, 1) if bound_us is not None else None,
            "file_airtime_ratio": round(used_us / bound_us, 3) if bound_us else None,
            "file_catalog_airtime_share":
                round(cat_us / self.tx_airtime_us, 4) if self.tx_airtime_us else 0.0,
            "files_not_shared": self.files_not_shared,
            "file_not_started": self.file_not_started,
            "file_not_applicable": self.file_not_applicable,
        }

    def latencies_ms(self):
        out = []
        for m in self.messages.values():
            if not m["broadcast"] and not m["spam"] and m["dest"] in m["got"]:
                out.append(m["got"][m["dest"]] - m["t"])
        return out
