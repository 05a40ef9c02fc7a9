"""Scenario files: what the simulator runs (docs/scenarios.md).

A scenario is a YAML file in ``scenarios/``: nodes and where they stand, the
radio and path-loss model, traffic, shared files, mobility, failures (of nodes
and links) and router settings. Loading validates every field; a bad one raises
ScenarioError naming its path (sim/fields.py reads the fields; sim/mobility.py
moves the nodes). Everything random (placement, traffic, movement, failures,
file contents) is drawn from ``random.Random`` seeded by the scenario seed plus
a name per use, so one scenario and seed always give the same run.
"""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import NamedTuple

import yaml

import pollen_controller
from pollen_controller.bounded import read_file
from pollen.airtime import PRESETS, preset_time_on_air_us
from pollen.crypto import TAG_BYTES
from pollen.region import REGIONS
from pollen.settings import FIELDS, ConfigError, Settings
from pollen.wire import HEADER_BYTES, MAX_PAYLOAD_BYTES
from pollen_controller.sim.channel import CAPTURE_RULES
from pollen_controller.sim.fields import Fields, ScenarioError, fail
from pollen_controller.sim.mobility import cycle, random_legs, trajectory
from pollen_controller.topology import PathLossModel

BROADCAST = 0xFFFFFFFF
SCENARIO_DIR = Path(pollen_controller.__file__).parent.parent / "scenarios"

# Router overrides: node settings the scenario may set for every node (identity,
# key and radio come from elsewhere), plus the baseline's "role".
ROUTER_KEYS = tuple(k for k in FIELDS
                    if k not in ("node_id", "network_key", "name", "region", "preset")) + ("role",)
ROLES = ("client", "router")

_MAX_SCENARIO_BYTES = 1 << 20   # a scenario is a page of YAML
_TOP = ("name", "description", "seed", "duration_s", "nodes", "radio", "pathloss",
        "traffic", "mobility", "failures", "files", "router", "spam")
# placement: the keys it takes besides count and placement
_PLACEMENTS = {
    "random": ("area_m", "scale_area"),
    "grid": ("spacing_m", "columns"),
    "line": ("spacing_m",),
    "clusters": ("clusters", "radius_m", "spacing_m", "centres_m", "scale_area"),
    "explicit": ("positions_m",),
}
_PATHLOSS = ("exponent", "pl_d0_db", "d0_m", "antenna_gain_dbi", "noise_figure_db",
             "shadowing_sigma_db", "frame_loss", "capture", "interference_db")
_FILES = ("name", "seeder", "size_bytes", "share_at_s", "fetchers", "fetch_at_s")
_DEFAULT_FETCH_DELAY_S = 60.0   # fetch_at_s after share_at_s: time for the catalog to spread
_MAX_NAME_BYTES = 64            # a manifest's name (pollen.files)
_TRAFFIC = ("broadcast_interval_s", "unicast_interval_s", "payload_bytes", "start_s",
            "stop_s", "unicast_dest")
_UNICAST_DEST = ("random", "far", "other_cluster")
_SPAM = ("count", "nodes", "kind", "payload_bytes")
_SPAM_KINDS = ("post", "msg", "both")
_MOVERS = {
    "random_waypoint": ("kind", "nodes", "count", "speed_mps", "pause_s", "area_m"),
    "mule": ("kind", "node", "path", "speed_mps", "pause_s"),
}
_DEFAULT_CLUSTER_RADIUS_M = 500.0
_DEFAULT_START_S = 60.0
_NETWORK_KEY = "00" * 32   # only to let pollen.settings validate overrides


class SharedFile(NamedTuple):
    # One file of the scenario's `files` section: shared by `seeder` at
    # share_ms, fetched by each of `fetchers` at fetch_ms; data is
    # pseudo-random bytes drawn from the scenario seed.
    index: int
    name: str
    seeder: int
    size_bytes: int
    share_ms: int
    fetchers: tuple
    fetch_ms: int
    data: bytes


def node_ids(n, first=1):
    # n sequential ids from `first`, skipping those whose low byte is 0
    out, i = [], first
    while len(out) < n:
        if i & 0xFF:
            out.append(i)
        i += 1
    return out


def list_scenarios():
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path) -> "Scenario":
    # A bare name ("city-200") is looked up in scenarios/; anything else is a path.
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in s or s.endswith((".yaml", ".yml")):
        path = Path(s)
    else:
        path = SCENARIO_DIR / (s + ".yaml")
    if not path.is_file():
        known = ", ".join(list_scenarios())
        raise ScenarioError(f"scenario '{s}': not found (standard scenarios: {known})")
    raw = read_file(path, _MAX_SCENARIO_BYTES, ScenarioError)
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario '{path.name}': not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"scenario '{path.name}': not valid YAML{where}") from None
    except OSError as e:
        raise ScenarioError(f"scenario '{path.name}': cannot be read ({e.strerror})") from None
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return Scenario(data, path.name)


class Scenario:
    def __init__(self, data, source="<dict>"):
        self.source = source
        if not isinstance(data, dict):
            raise ScenarioError(f"scenario '{source}': expected a mapping of fields, "
                                f"got {type(data).__name__}")
        self._data = copy.deepcopy(data)
        top = Fields(source, "", data, _TOP)
        name = top.get("name", Path(source).stem, "text")
        if not isinstance(name, str) or not name:
            top.fail("name", "text", name)
        self.name = name
        self.description = str(top.get("description", ""))
        self.seed = top.number("seed", 1, integer=True)
        self.duration_s = top.number("duration_s", above=0)
        self._duration_ms = round(self.duration_s * 1000)
        self._parse_nodes(Fields(source, "nodes", top.get("nodes", expected="a mapping"),
                                  ("count", "placement") + _all_placement_keys()))
        self._parse_radio(Fields(source, "radio", top.get("radio", {}),
                                  ("preset", "region", "tx_power_dbm")))
        self._parse_pathloss(Fields(source, "pathloss", top.get("pathloss", {}), _PATHLOSS))
        self._parse_router(Fields(source, "router", top.get("router", {}), ROUTER_KEYS))
        self._parse_traffic(Fields(source, "traffic", top.get("traffic", {}), _TRAFFIC))
        self._parse_mobility(top)
        self._parse_failures(top)
        self._parse_files(top)
        self._parse_spam(Fields(source, "spam", top.get("spam", {}), _SPAM))
        self.node_ids = tuple(self.placed_ids + self.extra_ids)
        self._positions = None

    def __repr__(self):
        return f"Scenario({self.name!r}, {len(self.node_ids)} nodes, {self.duration_s:g} s)"

    # ---- parsing ------------------------------------------------------------

    def _parse_nodes(self, f):
        self.placement = p = f.choice("placement", tuple(_PLACEMENTS))
        for k in f.d:
            if k not in ("count", "placement") + _PLACEMENTS[p] \
                    or k == "spacing_m" and "centres_m" in f.d:
                takes = ", ".join(_PLACEMENTS[p])
                if p == "clusters":
                    takes += "; spacing_m or centres_m, not both"
                raise ScenarioError(f"scenario '{f.src}': field 'nodes.{k}': not used by "
                                    f"placement '{p}' (it takes: {takes})")
        if p == "explicit":
            raw = f.get("positions_m", expected="a list of [x_m, y_m]")
            if not isinstance(raw, list) or not raw:
                f.fail("positions_m", "a list of [x_m, y_m]", raw)
            self._explicit = [f.point(f"positions_m[{i}]", v) for i, v in enumerate(raw)]
            self.count = f.number("count", len(raw), lo=1, integer=True)
            if self.count != len(raw):
                f.fail("count", f"{len(raw)} (the number of positions_m)", self.count)
        else:
            self.count = f.number("count", lo=1, integer=True)
        self.scale_area = f.get("scale_area", True)
        if not isinstance(self.scale_area, bool):
            f.fail("scale_area", "true or false", self.scale_area)
        if p == "random":
            self.area_m = f.point("area_m", f.get("area_m", expected="[width_m, height_m]"),
                                  "[width_m, height_m] (numbers > 0)", above=0)
        if p in ("grid", "line") or p == "clusters" and not f.has("centres_m"):
            self.spacing_m = f.number("spacing_m", above=0)
        if p == "grid":
            self.columns = f.number("columns", math.ceil(math.sqrt(self.count)), lo=1,
                                    integer=True)
        self.cluster_centres_m = []
        if p == "clusters":
            self.radius_m = f.number("radius_m", _DEFAULT_CLUSTER_RADIUS_M, lo=0)
            if f.has("centres_m"):
                raw = f.d["centres_m"]
                if not isinstance(raw, list) or not raw:
                    f.fail("centres_m", "a list of [x_m, y_m]", raw)
                centres = [f.point(f"centres_m[{i}]", v) for i, v in enumerate(raw)]
                k = f.number("clusters", len(centres), lo=1, integer=True)
                if k != len(centres):
                    f.fail("clusters", f"{len(centres)} (the number of centres_m)", k)
            else:
                k = f.number("clusters", lo=1, integer=True)
                centres = _ring(k, self.spacing_m, self.radius_m)
            if k > self.count:
                f.fail("count", f"at least one node per cluster (>= {k})", self.count)
            self.cluster_centres_m = centres
        self.placed_ids = node_ids(self.count)
        self.extra_ids = []
        self.cluster_of = {}
        if p == "clusters":
            k = len(self.cluster_centres_m)
            i = 0
            for c in range(k):
                for _ in range(self.count // k + (c < self.count % k)):
                    self.cluster_of[self.placed_ids[i]] = c
                    i += 1

    def _parse_radio(self, f):
        self.preset_name = f.choice("preset", tuple(PRESETS), "LongFast")
        self.preset = PRESETS[self.preset_name]
        self.region = f.choice("region", tuple(REGIONS), "EU868")
        max_dbm = REGIONS[self.region][2]
        self.tx_power_dbm = f.number("tx_power_dbm", min(14.0, max_dbm), hi=max_dbm)
        try:   # the firmware's own rule: the largest beacon must fit the dwell time
            Settings({"node_id": 1, "network_key": _NETWORK_KEY, "region": self.region,
                      "preset": self.preset_name})
        except ConfigError as e:   # "config field 'preset': expected X, got Y"
            f.fail("preset", str(e).split("expected ", 1)[-1].rsplit(", got ", 1)[0],
                   self.preset_name)

    def _parse_pathloss(self, f):
        base = PathLossModel()
        self.pathloss = {
            "exponent": f.number("exponent", base.exponent, above=0),
            "pl_d0_db": f.number("pl_d0_db", base.pl_d0_db),
            "d0_m": f.number("d0_m", base.d0_m, above=0),
            "antenna_gain_dbi": f.number("antenna_gain_dbi", base.antenna_gain_dbi),
            "noise_figure_db": f.number("noise_figure_db", base.noise_figure_db, lo=0),
            "shadowing_sigma_db": f.number("shadowing_sigma_db", 0.0, lo=0),
            "tx_power_dbm": self.tx_power_dbm,
        }
        # not a path-loss model field: the channel's chance to lose any one frame
        # at any one receiver on top of it (kept out of self.pathloss)
        self.frame_loss = f.number("frame_loss", 0.0, lo=0, hi=0.9)
        # nor are the rule that decides which of two overlapping frames survives
        # and how far below the demodulation floor a frame still interferes
        self.capture = f.choice("capture", CAPTURE_RULES, "calibrated")
        self.interference_db = f.number("interference_db", 6.0, lo=0, hi=30)

    def _parse_router(self, f):
        out = {}
        for k, v in f.d.items():
            if k == "role":
                f.choice("role", ROLES)
            else:
                try:
                    Settings({"node_id": 1, "network_key": _NETWORK_KEY, k: v})
                except ConfigError as e:
                    raise ScenarioError(f"scenario '{f.src}': field 'router.{k}': "
                                        + str(e).split(": ", 1)[-1]) from None
            out[k] = v
        self.router_settings = out

    def _parse_traffic(self, f):
        self.broadcast_interval_s = f.number("broadcast_interval_s", 0.0, lo=0)
        self.unicast_interval_s = f.number("unicast_interval_s", 0.0, lo=0)
        lo, hi = f.span("payload_bytes", 40, lo=1)
        if lo != int(lo) or hi != int(hi) or hi > MAX_PAYLOAD_BYTES:
            f.fail("payload_bytes", f"an integer 1..{MAX_PAYLOAD_BYTES} or [min, max] of them",
                   f.d["payload_bytes"])
        self.payload_bytes = int(lo), int(hi)
        dwell_ms = REGIONS[self.region][3]
        air_us = preset_time_on_air_us(HEADER_BYTES + self.payload_bytes[1] + TAG_BYTES,
                                       self.preset)
        if dwell_ms and air_us > dwell_ms * 1000:
            f.fail("payload_bytes", f"texts whose frames fit {self.region}'s {dwell_ms} ms "
                                    f"dwell time with {self.preset_name}", f.d["payload_bytes"])
        self.traffic_start_s = f.number("start_s", min(_DEFAULT_START_S, self.duration_s / 2),
                                        lo=0)
        self.traffic_stop_s = f.number("stop_s", self.duration_s * 5 / 6, hi=self.duration_s)
        if self.traffic_stop_s <= self.traffic_start_s:
            f.fail("stop_s", f"a time after start_s ({self.traffic_start_s:g} s)",
                   self.traffic_stop_s)
        self.unicast_dest = f.choice("unicast_dest", _UNICAST_DEST, "random")
        if self.unicast_interval_s and self.count < 2:
            f.fail("unicast_interval_s", "0 with a single node", self.unicast_interval_s)
        if self.unicast_dest == "other_cluster" and len(self.cluster_centres_m) < 2:
            f.fail("unicast_dest", "'other_cluster' only with placement 'clusters' "
                                   "and 2 or more clusters", self.unicast_dest)

    def _parse_mobility(self, top):
        raw = top.get("mobility", [])
        if not isinstance(raw, list):
            top.fail("mobility", "a list of movers", raw)
        self._mobility = []
        taken = set()
        for i, item in enumerate(raw):
            path = f"mobility[{i}]"
            if not isinstance(item, dict):
                fail(self.source, path, "a mapping with a 'kind'", item)
            kind = item.get("kind")
            if not isinstance(kind, str) or kind not in _MOVERS:
                fail(self.source, path + ".kind", "one of " + ", ".join(_MOVERS), kind)
            f = Fields(self.source, path, item, _MOVERS[kind])
            spec = {"kind": kind, "pause_s": f.span("pause_s", 0.0, lo=0)}
            if kind == "random_waypoint":
                spec["speed_mps"] = f.span("speed_mps", above=0)
                if f.has("area_m"):
                    spec["area_m"] = f.point("area_m", f.d["area_m"],
                                             "[width_m, height_m] (numbers > 0)", above=0)
                if f.has("nodes") == f.has("count"):
                    f.fail("nodes", "either 'nodes' (a list of ids) or 'count'", f.d.get("nodes"))
                if f.has("nodes"):
                    ids = f.d["nodes"]
                    if not isinstance(ids, list) or not ids:
                        f.fail("nodes", "a list of node ids", ids)
                    for n in ids:
                        self._take(f, "nodes", n, taken)
                    spec["nodes"] = list(ids)
                else:
                    spec["count"] = f.number("count", lo=1, integer=True)
            else:
                spec["speed_mps"] = f.number("speed_mps", above=0)
                node = f.get("node", "extra")
                if node == "extra":
                    node = node_ids(1, (self.extra_ids or self.placed_ids)[-1] + 1)[0]
                    self.extra_ids.append(node)
                else:
                    self._take(f, "node", node, taken)
                spec["node"] = node
                spec["path"] = self._mule_path(f)
            self._mobility.append(spec)
        free = len(self.placed_ids) - len(taken)
        wanted = sum(s.get("count", 0) for s in self._mobility)
        if wanted > free:
            top.fail("mobility", f"random_waypoint counts that fit the {free} nodes "
                                 f"not otherwise moving", wanted)

    def _take(self, f, key, n, taken):
        if not isinstance(n, int) or isinstance(n, bool) or n not in self.placed_ids:
            f.fail(key, f"a node id {self.placed_ids[0]}..{self.placed_ids[-1]}", n)
        if n in taken:
            f.fail(key, "a node no other mover moves", n)
        taken.add(n)

    def _mule_path(self, f):
        raw = f.get("path", expected="a list of cluster indices or [x_m, y_m]")
        if not isinstance(raw, list) or len(raw) < 2:
            f.fail("path", "a list of 2 or more cluster indices or [x_m, y_m]", raw)
        points = []
        for j, v in enumerate(raw):
            if isinstance(v, int) and not isinstance(v, bool):
                if not 0 <= v < len(self.cluster_centres_m):
                    f.fail(f"path[{j}]", "a cluster index 0..%d" % (len(self.cluster_centres_m) - 1)
                           if self.cluster_centres_m else "[x_m, y_m] (no clusters placed)", v)
                points.append(self.cluster_centres_m[v])
            else:
                points.append(f.point(f"path[{j}]", v))
        if len(set(points)) < 2:
            f.fail("path", "at least two different points", raw)
        return points

    def _parse_failures(self, top):
        raw = top.get("failures", [])
        if not isinstance(raw, list):
            top.fail("failures", "a list", raw)
        self._failures, self._random_failures, self._link_failures = [], [], []
        spans = {}
        for i, item in enumerate(raw):
            path = f"failures[{i}]"
            if isinstance(item, dict) and "fraction" in item:
                f = Fields(self.source, path, item, ("fraction", "mean_downtime_s"))
                self._random_failures.append((f.number("fraction", lo=0, hi=1),
                                              f.number("mean_downtime_s", above=0)))
                continue
            if isinstance(item, dict) and "link" in item:
                f = Fields(self.source, path, item, ("link", "off_s", "on_s"))
                pair = f.d["link"]
                if not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]:
                    f.fail("link", "[a, b]: two different node ids", pair)
                for j, n in enumerate(pair):
                    self._node_id(f, f"link[{j}]", n)
                what, key = f"link {min(pair)}-{max(pair)}", (min(pair), max(pair))
            else:
                f = Fields(self.source, path, item, ("node", "off_s", "on_s"))
                key = f.get("node", expected="a node id (or 'link' for a link, "
                                             "'fraction' for random failures)")
                self._node_id(f, "node", key)
                what = f"node {key}"
            off_s = f.number("off_s", lo=0, hi=self.duration_s)
            on_s = f.number("on_s", math.inf, above=off_s)
            for a, b in spans.get(key, ()):
                if off_s < b and a < on_s:
                    f.fail("off_s", f"a time outside {what}'s other failure", off_s)
            spans.setdefault(key, []).append((off_s, on_s))
            (self._link_failures if isinstance(key, tuple) else self._failures).append(
                (key, off_s, on_s))

    def _node_id(self, f, key, n):
        if not isinstance(n, int) or isinstance(n, bool) \
                or n not in self.placed_ids + self.extra_ids:
            f.fail(key, "a node id of this scenario", n)
        return n

    def _parse_files(self, top):
        raw = top.get("files", [])
        if not isinstance(raw, list):
            top.fail("files", "a list of files", raw)
        node = Settings(dict({k: v for k, v in self.router_settings.items() if k != "role"},
                             node_id=1, network_key=_NETWORK_KEY))
        limit = min(node.max_file_bytes, node.file_quota_bytes)
        self._files = []
        for i, item in enumerate(raw):
            f = Fields(self.source, f"files[{i}]", item, _FILES)
            name = f.get("name", f"file{i}.bin")
            if not isinstance(name, str) or not 0 < len(name.encode()) <= _MAX_NAME_BYTES:
                f.fail("name", f"text of 1..{_MAX_NAME_BYTES} bytes", name)
            seeder = self._node_id(f, "seeder", f.get("seeder", expected="a node id"))
            size = f.number("size_bytes", lo=1, integer=True)
            if size > limit:
                f.fail("size_bytes", f"an integer 1..{limit} (router.max_file_bytes "
                                     f"{node.max_file_bytes}, router.file_quota_bytes "
                                     f"{node.file_quota_bytes})", size)
            share_s = f.number("share_at_s", self.traffic_start_s, lo=0, hi=self.duration_s)
            fetchers = f.get("fetchers", expected="a list of node ids")
            if not isinstance(fetchers, list) or not fetchers:
                f.fail("fetchers", "a list of node ids", fetchers)
            for j, n in enumerate(fetchers):
                self._node_id(f, f"fetchers[{j}]", n)
                if n == seeder or n in fetchers[:j]:
                    f.fail(f"fetchers[{j}]", "a node other than the seeder, named once", n)
            fetch_s = f.number("fetch_at_s", share_s + _DEFAULT_FETCH_DELAY_S, lo=share_s)
            if fetch_s >= self.duration_s:
                f.fail("fetch_at_s", f"a time before duration_s ({self.duration_s:g} s)", fetch_s)
            self._files.append((name, seeder, size, share_s, tuple(fetchers), fetch_s))

    def _parse_spam(self, f):
        # members whose nodes originate traffic as fast as their duty cycle
        # lets them, instead of their share of the scenario's traffic
        self.spam_kind = f.choice("kind", _SPAM_KINDS, "post")
        self.spam_bytes = f.number("payload_bytes", 40, lo=1, hi=MAX_PAYLOAD_BYTES, integer=True)
        if f.has("nodes"):
            raw = f.d["nodes"]
            if not isinstance(raw, list):
                f.fail("nodes", "a list of node ids", raw)
            for j, n in enumerate(raw):
                if n not in self.placed_ids or isinstance(n, bool) or n in raw[:j]:
                    f.fail(f"nodes[{j}]", "a placed node id of this scenario, named once", n)
            if f.has("count") and f.d["count"] != len(raw):
                f.fail("count", f"{len(raw)} (the number of nodes)", f.d["count"])
            self._spam_nodes = list(raw)
            self._spam_count = len(raw)
        else:
            self._spam_nodes = None
            self._spam_count = f.number("count", 0, lo=0, hi=len(self.placed_ids), integer=True)
        dwell_ms = REGIONS[self.region][3]
        if dwell_ms and self._spam_air_us() > dwell_ms * 1000:
            f.fail("payload_bytes", f"texts whose frames fit {self.region}'s {dwell_ms} ms "
                                    f"dwell time with {self.preset_name}", self.spam_bytes)

    def _spam_air_us(self):
        return preset_time_on_air_us(HEADER_BYTES + self.spam_bytes + TAG_BYTES, self.preset)

    # ---- scaling ------------------------------------------------------------

    def with_nodes(self, n):
        # The same scenario with n placed nodes at the same density (see
        # docs/scenarios.md). Failures and movers must still name existing nodes.
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ScenarioError(f"scenario '{self.source}': field 'nodes.count': "
                                f"expected an integer >= 1, got {n!r}")
        data = copy.deepcopy(self._data)
        nodes = data["nodes"]
        factor = math.sqrt(n / self.count)
        if self.placement == "explicit" and n != self.count:
            raise ScenarioError(f"scenario '{self.source}': field 'nodes.count': expected "
                                f"{self.count} (placement 'explicit' has fixed positions), got {n}")
        nodes["count"] = n
        if self.placement == "random" and self.scale_area:
            nodes["area_m"] = [self.area_m[0] * factor, self.area_m[1] * factor]
        elif self.placement == "clusters" and self.scale_area:
            nodes["radius_m"] = self.radius_m * factor
        elif self.placement == "grid" and "columns" in nodes:
            nodes["columns"] = max(1, round(self.columns * factor))
        return Scenario(data, self.source)

    def with_seed(self, seed):
        # The same scenario with another seed: what a scenario file with that
        # `seed` would give. Everything drawn from the seed is drawn anew:
        # random and cluster placements, traffic, random failures and
        # waypoints, file bytes (and, in the engine, shadowing and timing).
        # grid, line and explicit placements are fixed by construction.
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ScenarioError(f"scenario '{self.source}': field 'seed': "
                                f"expected an integer, got {seed!r}")
        data = copy.deepcopy(self._data)
        data["seed"] = seed
        return Scenario(data, self.source)

    def with_spam(self, count=None, kind=None):
        # The same scenario with `count` spammers chosen from the seed (0:
        # none; None: the scenario's own) sending `kind` (None: the scenario's)
        data = copy.deepcopy(self._data)
        spam = dict(data.get("spam") or {})
        if count is not None:
            spam["count"] = count
            spam.pop("nodes", None)
        if kind is not None:
            spam["kind"] = kind
        data["spam"] = spam
        return Scenario(data, self.source)

    def with_capture(self, rule, interference_db=None):
        # The same scenario under another capture rule (pathloss.capture) and,
        # if given, another interference floor (pathloss.interference_db)
        data = copy.deepcopy(self._data)
        data["pathloss"] = dict(data.get("pathloss") or {}, capture=rule)
        if interference_db is not None:
            data["pathloss"]["interference_db"] = interference_db
        return Scenario(data, self.source)

    # ---- what the simulator asks --------------------------------------------

    def _rng(self, *use):
        return random.Random("/".join(str(u) for u in (self.seed,) + use))

    def path_loss_model(self):
        pl = {k: v for k, v in self.pathloss.items() if k != "shadowing_sigma_db"}
        return PathLossModel(**pl)

    def range_m(self):
        # where a link without shadowing reaches the SNR floor of the preset
        return self.path_loss_model().range_m(self.preset)

    def initial_positions(self):
        if self._positions is None:
            self._positions = self._place()
        return dict(self._positions)

    def _place(self):
        p, ids, rng = self.placement, self.placed_ids, self._rng("placement")
        if p == "random":
            w, h = self.area_m
            xy = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in ids]
        elif p == "line":
            xy = [(i * self.spacing_m, 0.0) for i in range(len(ids))]
        elif p == "grid":
            c, s = self.columns, self.spacing_m
            xy = [((i % c) * s, (i // c) * s) for i in range(len(ids))]
        elif p == "explicit":
            xy = list(self._explicit)
        else:   # clusters: uniform over each disc
            xy = []
            for n in ids:
                cx, cy = self.cluster_centres_m[self.cluster_of[n]]
                r, a = self.radius_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
                xy.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        out = dict(zip(ids, xy))
        for spec in self._mobility:
            if spec["kind"] == "mule" and spec["node"] in self.extra_ids:
                out[spec["node"]] = spec["path"][0]
        return out

    def spammers(self):
        # the spamming nodes: named in spam.nodes, or spam.count drawn from the seed
        if self._spam_nodes is not None:
            return sorted(self._spam_nodes)
        return sorted(self._rng("spam").sample(self.placed_ids, self._spam_count))

    def spam_interval_ms(self):
        # one frame of spam_bytes each time the duty cycle has room for it
        # (only its first transmission counted: relays and beacons share the
        # budget, so the node's queue fills and it defers); without a duty
        # cycle, back to back
        per_mille = REGIONS[self.region][1]
        air_us = self._spam_air_us()
        return -(-air_us // per_mille) if per_mille else -(-air_us // 1000)

    def spam(self):
        # [(t_ms, src, dest, payload_bytes)]: each spammer sends every
        # spam_interval_ms from start_s (plus a random phase) to stop_s; a
        # post, a direct message to a random other node, or each in turn
        out = []
        interval = self.spam_interval_ms()
        ids = self.placed_ids
        for src in self.spammers():
            rng = self._rng("spam", src)
            t = round(self.traffic_start_s * 1000) + rng.randrange(interval)
            i = 0
            while t < self.traffic_stop_s * 1000:
                post = self.spam_kind == "post" or self.spam_kind == "both" and i % 2 == 0
                dest = BROADCAST
                if not post and len(ids) > 1:
                    dest = ids[rng.randrange(len(ids) - 1)]
                    dest = ids[-1] if dest == src else dest
                out.append((t, src, dest, self.spam_bytes))
                t += interval
                i += 1
        return out

    def traffic(self):
        # [(t_ms, src, dest, payload_bytes)]: Poisson per node, between start_s
        # and stop_s; extra (mule) nodes neither send nor receive traffic;
        # spammers receive it but send only spam()
        spammers = set(self.spammers())
        ids = self.placed_ids
        out = []
        far = self._far_thirds() if self.unicast_dest == "far" else None
        for kind, interval_s in (("broadcast", self.broadcast_interval_s),
                                 ("unicast", self.unicast_interval_s)):
            if not interval_s:
                continue
            for src in ids:
                if src in spammers:
                    continue   # (each node draws its own stream: the others' are as without)
                rng = self._rng("traffic", kind, src)
                t_s = self.traffic_start_s + rng.expovariate(1 / interval_s)
                while t_s < self.traffic_stop_s:
                    if kind == "broadcast":
                        dest = BROADCAST
                    elif far is not None:
                        dest = rng.choice(far[src])
                    elif self.unicast_dest == "other_cluster":
                        dest = self._other_cluster(rng, src)
                    else:
                        dest = ids[rng.randrange(len(ids) - 1)]
                        dest = ids[-1] if dest == src else dest
                    out.append((int(t_s * 1000), src, dest, rng.randint(*self.payload_bytes)))
                    t_s += rng.expovariate(1 / interval_s)
        out.sort()
        return out

    def _far_thirds(self):
        pos = self.initial_positions()
        out = {}
        for a in self.placed_ids:
            others = sorted((b for b in self.placed_ids if b != a),
                            key=lambda b: (-math.dist(pos[a], pos[b]), b))
            out[a] = others[:max(1, math.ceil(len(others) / 3))]
        return out

    def _other_cluster(self, rng, src):
        c = self.cluster_of[src]
        others = [n for n in self.placed_ids if self.cluster_of[n] != c]
        return rng.choice(others)

    def movers(self):
        pos = self.initial_positions()
        end_ms = self._duration_ms
        out = {}
        taken = {n for s in self._mobility for n in s.get("nodes", [s.get("node")])}
        for i, spec in enumerate(self._mobility):
            rng = self._rng("mobility", i)
            pause = spec["pause_s"]
            if spec["kind"] == "mule":
                n, path = spec["node"], spec["path"]
                loop = cycle(path)
                legs = ((x, y, spec["speed_mps"], round(rng.uniform(*pause) * 1000))
                        for x, y in loop)
                out[n] = trajectory(pos[n], legs, end_ms)
                continue
            if "nodes" in spec:
                chosen = spec["nodes"]
            else:
                free = [n for n in self.placed_ids if n not in taken]
                chosen = sorted(rng.sample(free, spec["count"]))
                taken.update(chosen)
            x0, y0, x1, y1 = self._area(spec.get("area_m"), pos)
            for n in chosen:
                r = self._rng("mobility", i, n)
                out[n] = trajectory(pos[n], random_legs(r, (x0, y0, x1, y1),
                                                          spec["speed_mps"], pause), end_ms)
        return out

    def _area(self, area_m, pos):
        if area_m is not None:
            return 0.0, 0.0, area_m[0], area_m[1]
        if self.placement == "random":
            return 0.0, 0.0, self.area_m[0], self.area_m[1]
        xs = [pos[n][0] for n in self.placed_ids]
        ys = [pos[n][1] for n in self.placed_ids]
        return min(xs), min(ys), max(xs), max(ys)

    def files(self):
        # [SharedFile], in the order of the scenario's files section
        out = []
        for i, (name, seeder, size, share_s, fetchers, fetch_s) in enumerate(self._files):
            data = self._rng("files", i).randbytes(size)
            out.append(SharedFile(i, name, seeder, size, round(share_s * 1000), fetchers,
                                  round(fetch_s * 1000), data))
        return out

    def with_single_fetch(self, index, fetcher):
        # The same scenario with only file `index`, fetched by `fetcher` alone:
        # what one fetch costs when nobody else fetches (pollen sim --separate).
        data = copy.deepcopy(self._data)
        item = data["files"][index]
        if fetcher not in item["fetchers"]:
            raise ScenarioError(f"scenario '{self.source}': field 'files[{index}].fetchers': "
                                f"expected a list naming node {fetcher}, got {item['fetchers']!r}")
        item["fetchers"] = [fetcher]
        data["files"] = [item]
        return Scenario(data, self.source)

    def link_failures(self):
        # [(t_ms, a, b, "off" | "on")] sorted, a < b: the link cut and restored
        events = []
        for (a, b), off_s, on_s in self._link_failures:
            events += [(int(t_s * 1000), a, b, what) for t_s, what in ((off_s, "off"), (on_s, "on"))
                       if t_s * 1000 < self._duration_ms]
        events.sort()
        return events

    def failures(self):
        # [(t_ms, node_id, "off" | "on")] sorted; events after the end are left out
        events = []
        for n, off_s, on_s in self._failures:
            events.append((off_s, n, "off"))
            events.append((on_s, n, "on"))
        named = {n for n, _, _ in self._failures}
        for i, (fraction, mean_s) in enumerate(self._random_failures):
            rng = self._rng("failures", i)
            free = [n for n in self.placed_ids if n not in named]
            chosen = rng.sample(free, min(len(free), round(fraction * len(self.placed_ids))))
            for n in chosen:
                off_s = rng.uniform(self.traffic_start_s, self.traffic_stop_s)
                events.append((off_s, n, "off"))
                events.append((off_s + rng.expovariate(1 / mean_s), n, "on"))
            named.update(chosen)
        out = [(int(t_s * 1000), n, what) for t_s, n, what in events
               if t_s * 1000 < self._duration_ms]
        out.sort()
        return out


def _all_placement_keys():
    keys = []
    for ks in _PLACEMENTS.values():
        keys += [k for k in ks if k not in keys]
    return tuple(keys)


def _ring(k, spacing_m, radius_m):
    # k cluster centres on a circle, neighbouring centres spacing_m apart, all
    # clusters at x, y >= 0
    if k == 1:
        return [(radius_m, radius_m)]
    ring_m = spacing_m / (2 * math.sin(math.pi / k))
    c = ring_m + radius_m
    return [(c + ring_m * math.cos(2 * math.pi * i / k - math.pi / 2),
             c + ring_m * math.sin(2 * math.pi * i / k - math.pi / 2)) for i in range(k)]
