"""What the monitor knows of the mesh, built from console events
(/docs/monitor.md, the events in docs/console.md). Pure logic, no IO: events
and a time in, rows, messages, alerts and links out.

    view = MeshView()
    update = view.apply(event, t)      # t: Unix seconds when it was heard
    view.rows(now); view.alerts(now); view.messages(20); view.links(now)

Four events count:
  status     the attached node (hops 0) and its neighbour table: each entry is
             a direct neighbour (hops 1), heard last_heard_s before t
  telemetry  another node's status frame heard over the mesh (hops as given)
  received   a post or message: its sender was alive then (relays + 1 hops)
  meshtastic_node  a node in an attached Meshtastic device's node database
             (monitor/meshtastic_source.py): a row of its own, id "!" and 8
             hex digits, net "meshtastic"

For each node the freshest observation gives last heard, hops, RSSI/SNR and
which node heard it (`via`); the freshest self-report (status or telemetry)
gives battery, airtime, duty-cycle headroom, queue, held and uptime. Fields
from the air are checked: a value of the wrong type or out of its range
(_RANGES) is taken as unknown; an event without a valid node id, or at a time
that is not one (not finite, before 1970, after 2106), is ignored and counted.
A node state loaded from history is checked the same way (clean_state).

apply() also returns what history keeps of the event (an Update): samples per
node, links, the message (once per uid), and the node states it touched.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

GONE_AFTER_S = 900          # a neighbour-table entry older than this has expired
SILENT_AFTER_S = 900        # default: 3 beacon intervals, 3 minimum telemetry intervals
STATUS_SAMPLE_S = 55        # one sample of a node's own status per ~minute kept
_NEIGHBOUR_SAMPLE_SLACK_S = 2.0   # last_heard_s is whole seconds
_MESSAGES = 200             # recent messages kept in memory
_UIDS = 4096                # message uids remembered, to drop QoS 1 repeats
MAX_NODES = 4096            # nodes known; events about more new ones are ignored, counted
_LINKS = 8 * MAX_NODES      # links known; more new ones are not kept

INTERVAL_LONG_S = 65535     # a status frame's interval saturates here: "18 h or more"
REPORT_FIELDS = ("battery_mv", "airtime_pct", "duty_headroom_pct", "queue", "held",
                 "uptime_s", "heap_free_bytes")
_INT_FIELDS = {"battery_mv", "queue", "held", "uptime_s", "heap_free_bytes", "hops", "battery_pct"}
_U32 = 2 ** 32 - 1
# What a number from the air may be: the widths of the status frame's fields
# (docs/protocol.md §11) and a message's, and radio figures no receiver
# reports beyond. Outside its range a value is taken as unknown (None), not
# clamped: no node sends it, and a clamped figure would look real. queue and
# held go to 65535, not the frame's 255: a node's own status over its console
# counts held messages up to its held_capacity (at most 1024).
_RANGES = {"hops": (0, 255), "battery_mv": (0, 65535), "airtime_pct": (0, 100),
           "duty_headroom_pct": (0, 100), "queue": (0, 65535), "held": (0, 65535),
           "uptime_s": (0, _U32), "heap_free_bytes": (0, _U32), "rssi_dbm": (-200, 50),
           "snr_db": (-50, 50), "last_heard_s": (0, _U32), "msg_id": (0, _U32), "rx": (0, _U32),
           "unfair": (0, _U32), "pin": (0, _U32),
           "battery_pct": (0, 101), "voltage_v": (0, 65.535)}   # (Meshtastic: 101 powered)
_T_MAX = 2.0 ** 32          # Unix seconds: 2106
_HEARD_BY = ("status", "neighbour", "telemetry", "message", "meshtastic")
# Meshtastic counts a node online while it was heard within 2 h (its
# firmware's NUM_ONLINE_SECS; LocalStats.num_online_nodes, telemetry.proto);
# the table shows older Meshtastic rows dim
MESHTASTIC_ONLINE_S = 2 * 3600
BATTERY_POWERED_PCT = 101   # DeviceMetrics.battery_level: "0-100 (>100 means powered)"
_KINDS = ("post", "msg", "?")
# a node's state as history keeps it (absolute Unix times, no ages)
STATE_FIELDS = ("id", "name", "seen_t", "hops", "rssi_dbm", "snr_db", "via", "heard_by",
                "report_t", "interval_s", "attached_t") + REPORT_FIELDS + \
    ("net", "short_name", "hw_model", "battery_pct")   # the last four: Meshtastic rows


def node_id(v) -> str | None:
    """A node id as 8 lowercase hex digits, or None if v is not one."""
    if not isinstance(v, str) or len(v) != 8:
        return None
    try:
        n = int(v, 16)
    except ValueError:
        return None
    return None if n in (0, 0xFFFFFFFF) else v.lower()


def mesh_id(v) -> str | None:
    """A Meshtastic node id as "!" and 8 lowercase hex digits, or None if v
    is not one (nor the broadcast !ffffffff)."""
    if not isinstance(v, str) or len(v) != 9 or v[0] != "!":
        return None
    n = node_id(v[1:])
    return None if n is None else "!" + n


def any_id(v) -> str | None:
    """A pollen node id (8 hex digits) or a Meshtastic one ("!" and 8)."""
    return node_id(v) or mesh_id(v)


def unix_time(v) -> float | None:
    """v as Unix seconds, or None if it is not a time: not a finite number,
    before 1970 or after 2106."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < _T_MAX:
        return None   # (NaN fails the comparison)
    return float(v)


def _num(v, key):
    lo, hi = _RANGES[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        return None
    return v


def _int(v, key):
    v = _num(v, key)
    return None if v is None else int(v)


def _field(v, key):
    return (_int if key in _INT_FIELDS else _num)(v, key)


def _interval(v):
    # seconds until a node's next status frame; the frame's u16 saturates at
    # 65535 ("18 h or more"), and anything longer is taken as that too
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        return None
    return INTERVAL_LONG_S if v >= INTERVAL_LONG_S else v


def _list(v) -> list:
    return v if isinstance(v, list) else []


def _name(v):
    return v[:32] if isinstance(v, str) and v else None


def _text(v) -> str:
    # a short text a node said (shown as the node's words, bounded)
    return v[:80] if isinstance(v, str) and v else "?"


def clean_state(s) -> dict | None:
    """A node state from history (STATE_FIELDS), checked like fields from the
    air: a time that is not one, a number out of range or a value of the wrong
    type becomes None. None for a state without a valid node id."""
    nid = any_id(s.get("id")) if isinstance(s, dict) else None
    if nid is None:
        return None
    n = dict.fromkeys(STATE_FIELDS)
    n.update(id=nid, name=_name(s.get("name")), via=any_id(s.get("via")),
             interval_s=_interval(s.get("interval_s")),
             heard_by=s.get("heard_by") if s.get("heard_by") in _HEARD_BY else None,
             net="meshtastic" if nid[0] == "!" else "pollen")
    for k in ("seen_t", "report_t", "attached_t"):
        n[k] = unix_time(s.get(k))
    for k in ("hops", "rssi_dbm", "snr_db", "battery_pct") + REPORT_FIELDS:
        n[k] = _field(s.get(k), k)
    if n["net"] == "meshtastic":
        n["short_name"], n["hw_model"] = _name(s.get("short_name")), _name(s.get("hw_model"))
    return n


def fmt_age(s) -> str:
    """12s, 4m, 3h05m, 2d04h; '-' for unknown."""
    if s is None:
        return "-"
    s = int(max(0, s))
    if s < 90:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


@dataclass
class Update:
    """What one event changed, for history."""
    touched: set = field(default_factory=set)
    samples: list = field(default_factory=list)
    links: list = field(default_factory=list)
    message: dict | None = None
    node: str | None = None       # the node the event is about
    keep_event: bool = True       # False: a status within STATUS_SAMPLE_S of the last kept


class MeshView:
    def __init__(self, silent_after_s: float = SILENT_AFTER_S,
                 duty_headroom_alert_pct: float = 10.0, battery_low_mv: int = 3400):
        self.silent_after_s = silent_after_s
        self.duty_headroom_alert_pct = duty_headroom_alert_pct
        self.battery_low_mv = battery_low_mv
        self.nodes: dict[str, dict] = {}
        self.attached: str | None = None      # the node whose status came last
        self.ignored = 0                      # events dropped: no valid node id
        self._links: dict[tuple, dict] = {}   # (rx, tx) -> link
        self._messages: deque = deque(maxlen=_MESSAGES)
        self._uids: OrderedDict = OrderedDict()
        self._status_sampled: dict[str, float] = {}
        self._neighbour_sampled: dict[tuple, float] = {}
        self.first_shown: dict[str, float] = {}   # node -> t it first got a row
        # a node's receive count and when it last moved: a node whose count
        # stands still while it keeps reporting has stopped hearing
        self._rx: dict[str, tuple[int, float]] = {}
        # drops that say someone misbehaves, by reason ("unfair": relays
        # held back for an origin over its fair share; "pin": a key refused
        # for an id pinned to another, identity.md): (reason, node) ->
        # (count, when it last rose, by how much)
        self._rising: dict[tuple[str, str], tuple[int, float, int]] = {}
        # an attached node's task_failed events: (how many, last t, last text)
        self._task_failures: dict[str, tuple[int, float, str]] = {}
        # Meshtastic node -> (seen_t, what it reported) of its last sample
        self._mt_sampled: dict[str, tuple] = {}

    # ---- input ----------------------------------------------------------------

    def apply(self, event: dict, t: float) -> Update:
        kind = event.get("event") if isinstance(event, dict) else None
        handler = {"status": self._status, "telemetry": self._telemetry,
                   "received": self._received, "task_failed": self._task_failed,
                   "meshtastic_node": self._meshtastic_node}.get(kind)
        u = Update()
        t = unix_time(t)
        if t is None:
            # no time, no use: its ages would be nonsense, and history keeps nothing of it
            self.ignored += 1
            u.keep_event = False
            return u
        if handler is not None:
            handler(event, t, u)
        for nid in u.touched:
            self.first_shown.setdefault(nid, t)
        return u

    def _node(self, nid: str, u: Update) -> dict | None:
        n = self.nodes.get(nid)
        if n is None:
            if len(self.nodes) >= MAX_NODES:
                self.ignored += 1
                return None
            n = self.nodes[nid] = dict.fromkeys(STATE_FIELDS)
            n["id"] = nid
            n["net"] = "meshtastic" if nid[0] == "!" else "pollen"
        u.touched.add(nid)
        return n

    def _observe(self, n, seen_t, hops, rssi_dbm, snr_db, via, heard_by):
        if n["seen_t"] is not None and seen_t < n["seen_t"]:
            return  # older than what we know: the fresher observation stands
        n.update(seen_t=seen_t, hops=hops, rssi_dbm=rssi_dbm, snr_db=snr_db, via=via,
                 heard_by=heard_by)

    def _report(self, n, t, ev):
        if n["report_t"] is not None and t < n["report_t"]:
            return
        n["report_t"] = t
        for k in REPORT_FIELDS:
            n[k] = _field(ev.get(k), k)
        counters = ev.get("counters")
        rx = _int(counters.get("rx"), "rx") if isinstance(counters, dict) else None
        if rx is not None:
            last = self._rx.get(n["id"])
            if last is None or rx != last[0]:
                self._rx[n["id"]] = (rx, t)
        dropped = ev.get("dropped")
        for reason in ("unfair", "pin"):
            count = _int(dropped.get(reason), reason) if isinstance(dropped, dict) else None
            if count is None:
                continue
            last = self._rising.get((reason, n["id"]))
            if last is None and count or last is not None and count > last[0]:
                self._rising[(reason, n["id"])] = (count, t, count - (last[0] if last else 0))
            elif last is not None and count < last[0]:   # the node restarted
                self._rising[(reason, n["id"])] = (count, last[1], last[2])

    def _task_failed(self, ev, t, u):
        # said on the console of the attached node (the node whose status
        # came last): one of its app's tasks failed a step and went on
        nid = self.attached
        if nid is None or nid not in self.nodes:
            self.ignored += 1
            u.keep_event = False
            return
        count = self._task_failures.get(nid, (0, t, ""))[0] + 1
        what = f"{_text(ev.get('task'))}: {_text(ev.get('error'))}"
        self._task_failures[nid] = (count, t, what)
        u.node = nid

    def _reporter(self, ev, u):
        # the node a status or telemetry event is about, its name updated;
        # None (counted as ignored) without a valid id
        nid = node_id(ev.get("id"))
        if nid is None:
            self.ignored += 1
            return None, None
        n = self._node(nid, u)
        if n is not None:
            n["name"] = _name(ev.get("name")) or n["name"]
        return nid, n

    def _status(self, ev, t, u):
        nid, n = self._reporter(ev, u)
        if n is None:
            return
        self.attached = nid
        n["attached_t"] = t
        n["interval_s"] = None
        self._observe(n, t, 0, None, None, None, "status")
        self._report(n, t, ev)
        u.node = nid
        last = self._status_sampled.get(nid)
        u.keep_event = last is None or t - last >= STATUS_SAMPLE_S or t < last
        if u.keep_event:
            self._status_sampled[nid] = t
            u.samples.append(self._sample(n, t, "status", 0, None, None, None))
        for nb in _list(ev.get("neighbours")):
            if not isinstance(nb, dict):
                continue
            bid, age = node_id(nb.get("id")), _num(nb.get("last_heard_s"), "last_heard_s")
            if bid is None or bid == nid or age is None:
                continue
            m = self._node(bid, u)
            if m is None:
                continue
            m["name"] = _name(nb.get("name")) or m["name"]
            seen = t - age
            rssi, snr = _num(nb.get("rssi_dbm"), "rssi_dbm"), _num(nb.get("snr_db"), "snr_db")
            self._observe(m, seen, 1, rssi, snr, nid, "neighbour")
            self._link(nid, bid, seen, rssi, snr, u)
            prev = self._neighbour_sampled.get((nid, bid))
            if age <= GONE_AFTER_S and (prev is None or seen > prev + _NEIGHBOUR_SAMPLE_SLACK_S):
                self._neighbour_sampled[(nid, bid)] = seen   # a frame heard anew
                u.samples.append(self._sample(m, seen, "neighbour", 1, rssi, snr, nid))

    def _telemetry(self, ev, t, u):
        nid, n = self._reporter(ev, u)
        if n is None:
            return
        hops = _int(ev.get("hops"), "hops")
        hops = hops if hops is not None and hops >= 1 else None
        rssi, snr = _num(ev.get("rssi_dbm"), "rssi_dbm"), _num(ev.get("snr_db"), "snr_db")
        via = node_id(ev.get("gateway")) or self.attached
        self._observe(n, t, hops, rssi, snr, via, "telemetry")
        u.node = nid
        if ev.get("malformed") or "data" in ev:
            # a frame heard whose payload did not decode: the node was there,
            # but what it said is unknown (another version?)
            u.samples.append(self._sample(n, t, "undecoded", hops, rssi, snr, via))
            return
        self._report(n, t, ev)
        n["interval_s"] = _interval(ev.get("interval_s"))
        u.samples.append(self._sample(n, t, "telemetry", hops, rssi, snr, via))
        for nb in _list(ev.get("neighbours"))[:16]:
            bid = node_id(nb.get("id")) if isinstance(nb, dict) else None
            if bid is None or bid == nid:
                continue
            self._link(nid, bid, t, _num(nb.get("rssi_dbm"), "rssi_dbm"),
                       _num(nb.get("snr_db"), "snr_db"), u)

    def _meshtastic_node(self, ev, t, u):
        # a node as an attached Meshtastic device knows it; the device itself
        # ("attached") is hops 0 while it is connected, the others its
        # hopsAway + 1 (so 1 is a neighbour the device heard directly)
        nid = mesh_id(ev.get("id"))
        if nid is None:
            self.ignored += 1
            u.keep_event = False
            return
        n = self._node(nid, u)
        if n is None:
            u.keep_event = False
            return
        u.node = nid
        for k in ("name", "short_name", "hw_model"):
            n[k] = _name(ev.get(k)) or n[k]
        rssi, snr = _num(ev.get("rssi_dbm"), "rssi_dbm"), _num(ev.get("snr_db"), "snr_db")
        hops = _int(ev.get("hops"), "hops")
        if ev.get("attached") is True:
            n["attached_t"] = t
            self._observe(n, t, 0, None, None, None, "meshtastic")
        else:
            heard = unix_time(ev.get("heard_t"))
            if heard is not None and heard <= t + 60:   # (a device clock ahead: not a time)
                self._observe(n, min(heard, t), hops, rssi, snr, mesh_id(ev.get("device")),
                              "meshtastic")
            elif n["seen_t"] is None:   # in the database, never heard with a time
                n.update(hops=hops, rssi_dbm=rssi, snr_db=snr, via=mesh_id(ev.get("device")),
                         heard_by="meshtastic")
        metrics = ev.get("metrics")
        report_t = unix_time(ev.get("report_t")) or t
        if isinstance(metrics, dict) and (n["report_t"] is None or report_t >= n["report_t"]):
            volts = _num(metrics.get("voltage_v"), "voltage_v")
            pct = metrics.get("battery_pct")
            if isinstance(pct, int) and not isinstance(pct, bool) and pct > BATTERY_POWERED_PCT:
                pct = BATTERY_POWERED_PCT   # any value over 100 means powered
            n.update(dict.fromkeys(REPORT_FIELDS), report_t=min(report_t, t),
                     battery_mv=round(volts * 1000) if volts else None,   # 0 V: not measured
                     battery_pct=_int(pct, "battery_pct"),
                     airtime_pct=_num(metrics.get("air_util_tx_pct"), "airtime_pct"),
                     uptime_s=_int(metrics.get("uptime_s"), "uptime_s"))
        # a sample when what it reports changed, or when heard anew (at most
        # one a STATUS_SAMPLE_S: a device is read every few seconds, and a
        # busy node's every packet refreshes it)
        said = self._said(n)
        last = self._mt_sampled.get(nid)
        seen = n["seen_t"]
        anew = seen is not None and (last is None or last[0] is None
                                     or seen - last[0] >= STATUS_SAMPLE_S)
        u.keep_event = last is None or said != last[1] or anew
        if u.keep_event:
            self._mt_sampled[nid] = (seen, said)
            u.samples.append(self._sample(n, seen if seen is not None else t, "meshtastic",
                                          n["hops"], n["rssi_dbm"], n["snr_db"], n["via"]))

    @staticmethod
    def _said(n):
        # what a Meshtastic node's samples follow: a change gives one at once
        return n["name"], n["hops"], n["battery_pct"], n["battery_mv"]

    def _link(self, rx, tx, t, rssi, snr, u):
        if (rx, tx) not in self._links and len(self._links) >= _LINKS:
            return
        link = {"rx": rx, "tx": tx, "t": t, "rssi_dbm": rssi, "snr_db": snr}
        self._links[(rx, tx)] = link
        u.links.append(link)

    def _received(self, ev, t, u):
        src = node_id(ev.get("from"))
        msg_id = _int(ev.get("id"), "msg_id")
        if src is None or msg_id is None:
            self.ignored += 1
            return
        via = node_id(ev.get("gateway")) or self.attached
        relays = _int(ev.get("hops"), "hops")
        hops = relays + 1 if relays is not None and relays < 255 else None
        rssi, snr = _num(ev.get("rssi_dbm"), "rssi_dbm"), _num(ev.get("snr_db"), "snr_db")
        uid = f"{src}-{msg_id}"
        if uid in self._uids:
            return  # a repeat (MQTT QoS 1 is at least once)
        self._uids[uid] = None
        if len(self._uids) > _UIDS:
            self._uids.popitem(last=False)
        n = self._node(src, u) if src != via else None
        if n is not None:
            self._observe(n, t, hops, rssi, snr, via, "message")
            u.samples.append(self._sample(n, t, "message", hops, rssi, snr, via))
        u.node = src
        text = ev.get("text")
        to = ev.get("to")
        m = {"uid": uid, "t": t, "kind": ev.get("kind") if ev.get("kind") in ("post", "msg") else "?",
             "from": src, "to": to if isinstance(to, str) else None, "id": msg_id,
             "text": text if isinstance(text, str) else "", "hops": relays,
             "rssi_dbm": rssi, "snr_db": snr, "via": via}
        self._messages.append(m)
        u.message = m

    @staticmethod
    def _sample(n, t, source, hops, rssi, snr, via):
        s = {"t": t, "node": n["id"], "source": source, "via": via, "hops": hops,
             "rssi_dbm": rssi, "snr_db": snr}
        for k in REPORT_FIELDS:
            s[k] = n[k] if source in ("status", "telemetry", "meshtastic") else None
        s["battery_pct"] = n["battery_pct"] if source == "meshtastic" else None
        return s

    # ---- history in and out -----------------------------------------------------

    def states(self, ids=None) -> list[dict]:
        """Node states with absolute times, for history."""
        ids = self.nodes if ids is None else ids
        return [dict(self.nodes[i]) for i in ids if i in self.nodes]

    def load(self, states, links=(), messages=()):
        """Seed from history: node states, links and messages (oldest first).
        What cannot be (clean_state) is taken as unknown; a link or message
        without a valid time or ids is left out."""
        for s in states:
            n = clean_state(s)
            if n is None:
                continue
            self.nodes[n["id"]] = n
            if n["seen_t"] is not None:
                self.first_shown.setdefault(n["id"], n["seen_t"])
            if n["net"] == "meshtastic":   # its last sample was of this state
                self._mt_sampled[n["id"]] = (n["seen_t"], self._said(n))
        for link in links:
            rx, tx = node_id(link.get("rx")), node_id(link.get("tx"))   # (pollen links only)
            t = unix_time(link.get("t"))
            if rx is None or tx is None or t is None:
                continue
            self._links[(rx, tx)] = {"rx": rx, "tx": tx, "t": t,
                                     "rssi_dbm": _num(link.get("rssi_dbm"), "rssi_dbm"),
                                     "snr_db": _num(link.get("snr_db"), "snr_db")}
        for m in messages:
            m = self._clean_message(m)
            if m is not None:
                self._messages.append(m)
                self._uids[m["uid"]] = None

    @staticmethod
    def _clean_message(m):
        src, t = node_id(m.get("from")), unix_time(m.get("t"))
        if src is None or t is None or not isinstance(m.get("uid"), str):
            return None
        text, to = m.get("text"), m.get("to")
        return {"uid": m["uid"], "t": t, "kind": m.get("kind") if m.get("kind") in _KINDS else "?",
                "from": src, "to": to if isinstance(to, str) else None,
                "id": _int(m.get("id"), "msg_id"), "text": text if isinstance(text, str) else "",
                "hops": _int(m.get("hops"), "hops"), "via": node_id(m.get("via")),
                "rssi_dbm": _num(m.get("rssi_dbm"), "rssi_dbm"),
                "snr_db": _num(m.get("snr_db"), "snr_db")}

    # ---- output -----------------------------------------------------------------

    def name(self, nid) -> str | None:
        n = self.nodes.get(nid)
        return n["name"] if n else None

    def label(self, nid) -> str:
        name = self.name(nid)
        return f"{name} ({nid})" if name else str(nid)

    def silent_after(self, n) -> float | None:
        """Seconds unheard after which node state n is silent; None: never.
        A node that said it reports seldom is given two of its intervals; one
        that said "18 h or more" (INTERVAL_LONG_S) has not said when it is
        due, so its silence cannot be told from its schedule."""
        iv = n.get("interval_s")
        if iv is not None and iv >= INTERVAL_LONG_S:
            return None
        return max(self.silent_after_s, 2 * iv) if iv else self.silent_after_s

    def _alert_kinds(self, n, now):
        if n["net"] == "meshtastic":
            # only a low battery: a device's node database holds every node
            # it ever heard (passers-by too), each on its own schedule (node
            # info every 3 h by default), so silence is no fault; and none of
            # them reports a receive count, a duty cycle or failed tasks
            low = (n["battery_mv"] is not None and n["battery_mv"] < self.battery_low_mv
                   and n["battery_pct"] != BATTERY_POWERED_PCT)
            return ["battery"] if low else []
        kinds = []
        after = self.silent_after(n)
        if n["seen_t"] is not None and after is not None and now - n["seen_t"] > after:
            kinds.append("silent")
        if n["duty_headroom_pct"] is not None and n["duty_headroom_pct"] < self.duty_headroom_alert_pct:
            kinds.append("duty")
        if n["battery_mv"] is not None and n["battery_mv"] < self.battery_low_mv:
            kinds.append("battery")
        rx = self._rx.get(n["id"])
        if (rx is not None and after is not None and n["report_t"] is not None
                and n["report_t"] - rx[1] > after):
            kinds.append("deaf")
        failed = self._task_failures.get(n["id"])
        if failed is not None and now - failed[1] <= self.silent_after_s:
            kinds.append("task")
        for reason in ("unfair", "pin"):
            rising = self._rising.get((reason, n["id"]))
            if rising is not None and now - rising[1] <= self.silent_after_s:
                kinds.append(reason)
        return kinds

    def rows(self, now: float) -> list[dict]:
        """The nodes table: pollen's nodes, then Meshtastic's; in each the
        attached node(s) first, then by hops and name."""
        out = []
        for n in self.nodes.values():
            # a node whose own status keeps coming is attached (a gateway): hops 0
            attached = n["attached_t"] is not None and now - n["attached_t"] <= self.silent_after_s
            out.append({
                "id": n["id"], "name": n["name"],
                "last_heard_s": None if n["seen_t"] is None else max(0, round(now - n["seen_t"])),
                "hops": 0 if attached else n["hops"],
                "rssi_dbm": None if attached else n["rssi_dbm"],
                "snr_db": None if attached else n["snr_db"],
                **{k: n[k] for k in REPORT_FIELDS},
                "via": None if attached else n["via"],
                "heard_by": n["heard_by"],
                "report_age_s": None if n["report_t"] is None else max(0, round(now - n["report_t"])),
                "interval_s": n["interval_s"],
                "alerts": self._alert_kinds(n, now),
                "net": n["net"] or "pollen",
                "short_name": n["short_name"], "hw_model": n["hw_model"],
                "battery_pct": n["battery_pct"],
            })
        out.sort(key=lambda r: (r["net"] != "pollen", r["hops"] is None,
                                r["hops"] if r["hops"] is not None else 0,
                                (r["name"] or "~").lower(), r["id"]))
        return out

    def alerts(self, now: float) -> list[dict]:
        out = []
        for r in self.rows(now):
            n = self.nodes[r["id"]]
            label = self.label(r["id"])
            for kind in r["alerts"]:
                if kind == "silent":
                    text = (f"{label} not heard for {fmt_age(r['last_heard_s'])} "
                            f"(alert after {fmt_age(self.silent_after(n))})")
                elif kind == "deaf":
                    rx = self._rx[r["id"]]
                    text = (f"{label} has heard nothing for {fmt_age(round(n['report_t'] - rx[1]))} "
                            f"(its receive count stands at {rx[0]}) but still reports")
                elif kind == "task":
                    count, _, what = self._task_failures[r["id"]]
                    text = f"{label}: a task failed and went on, {count} times (last {what})"
                elif kind == "unfair":
                    count, _, rose = self._rising[("unfair", r["id"])]
                    text = (f"{label} held back {rose} relays for an origin over its fair "
                            f"share of airtime ({count} since start): a member flooding?")
                elif kind == "pin":
                    count, _, rose = self._rising[("pin", r["id"])]
                    text = (f"{label} refused {rose} node keys unlike the ones it pinned for "
                            f"their ids ({count} since start): a node impersonated?")
                elif kind == "duty":
                    text = (f"{label} near its duty-cycle limit: "
                            f"{r['duty_headroom_pct']:.1f} % of the hourly budget left")
                else:
                    text = (f"{label} battery low: {r['battery_mv'] / 1000:.2f} V "
                            f"(alert below {self.battery_low_mv / 1000:.2f} V)")
                out.append({"id": r["id"], "name": r["name"], "kind": kind, "text": text})
        return out

    def messages(self, n: int = 20) -> list[dict]:
        """The last n messages, newest first."""
        return list(self._messages)[::-1][:n]

    def links(self, now: float, max_age_s: float | None = GONE_AFTER_S) -> list[dict]:
        """Links from neighbour tables: rx heard tx, with the age of that."""
        out = []
        for (rx, tx), link in sorted(self._links.items()):
            age = now - link["t"]
            if max_age_s is None or age <= max_age_s:
                out.append({**link, "age_s": max(0, round(age)), "rx_name": self.name(rx),
                            "tx_name": self.name(tx)})
        return out
