"""The LoRa channel of the simulator.

Who hears whom comes from node positions: log-distance path loss
(`topology.PathLossModel`) minus log-normal shadowing drawn once per pair of
nodes from the seed (so links are symmetric and reproducible). A receiver
demodulates a frame when its SNR reaches the spreading factor's floor
(`topology.SNR_FLOOR_DB`); weaker signals down to `interference_db` below that
still count as interference. By default that is `capture_db`: a weaker signal
can never come within `capture_db` of a frame that can be demodulated, so it
cannot decide a collision; 0 counts only frames that can be demodulated
(Meshtasticator's choice).

A frame is lost at a receiver that
  - was transmitting at any moment of it (half-duplex), or
  - heard another frame overlapping it that the capture rule says it loses to.
    Frames are compared in pairs; `capture` names the rule (CAPTURE_RULES,
    docs/simulator.md "Collisions and capture" gives the sources):
    "calibrated" (default): an overlap that touches only the first
        preamble symbols of this frame (all but the last LOCK_SYMBOLS) does
        not hurt it; otherwise this frame survives only if it is at least
        `capture_db` stronger than the other and the receiver was not
        committed to the other frame yet, i.e. the other frame had not
        finished its preamble and explicit header when this one began (a
        frame below the demodulation floor never commits the receiver).
    "lock-first": the rule before: this frame survives only if it is at
        least `capture_db` stronger and started LOCK_SYMBOLS symbols before
        the other (unless the other is below the demodulation floor).
    "power-only": LoRaSim's and Meshtasticator's rule: frames whose overlap
        touches only the first preamble symbols of the later one do not
        collide; otherwise the one `capture_db` stronger survives, whichever
        came first.

On top of that, each frame that would be received is lost at each receiver
with probability `frame_loss`, independently (fading, interference from outside
the mesh), and a link may be cut (`cut_link`): over a cut link nothing passes,
not even interference.

Carrier sense: when a transmission starts, every node that could demodulate it
is told the channel is busy until it ends (what a radio's channel activity
detection gives its node; it detects the frame's body as well as its preamble).
"""
from __future__ import annotations

import math
import random

from pollen.airtime import preset_time_on_air_us
from pollen_controller.errors import InputError
from pollen_controller.topology import SNR_FLOOR_DB, PathLossModel

LOCK_SYMBOLS = 5     # preamble symbols a receiver needs to lock on a frame
HEADER_SYMBOLS = 8   # the explicit header: the first block of 8 symbols after the preamble
SYNC_SYMBOLS = 4.25  # sync word and start-of-frame delimiter after the preamble symbols
CAPTURE_RULES = ("lock-first", "calibrated", "power-only")   # strictest first


class Transmission:
    __slots__ = ("sender", "frame", "start_ms", "end_ms", "hearers")

    def __init__(self, sender, frame, start_ms, end_ms, hearers):
        self.sender = sender
        self.frame = frame
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.hearers = hearers  # [(rx, rssi_dbm, snr_db, demodulable)]


class Channel:
    def __init__(self, positions, preset, model: PathLossModel | None = None,
                 shadowing_sigma_db: float = 0.0, seed: int = 0, capture_db: float = 6.0,
                 frame_loss: float = 0.0, capture: str = "calibrated",
                 interference_db: float | None = None):
        if capture not in CAPTURE_RULES:
            raise InputError(f"capture: expected one of {', '.join(CAPTURE_RULES)}, "
                             f"got {capture!r}")
        self.model = model or PathLossModel()
        self.preset = preset
        sf, bw_hz = preset[0], preset[1]
        self.noise_dbm = self.model.noise_floor_dbm(bw_hz)
        self.floor_db = SNR_FLOOR_DB[sf]
        self.capture_db = capture_db
        self.interference_db = capture_db if interference_db is None else interference_db
        self.capture = capture
        self._lost_to = _RULES[capture]
        symbol_ms = (1 << sf) * 1000.0 / bw_hz
        preamble = preset[3]
        self.lock_ms = LOCK_SYMBOLS * symbol_ms
        # the start of a frame that an overlap may touch without harm: its
        # preamble symbols but the last LOCK_SYMBOLS
        self.head_ms = max(0, preamble - LOCK_SYMBOLS) * symbol_ms
        # from a frame's start until the receiver has its header: committed then
        self.commit_ms = (preamble + SYNC_SYMBOLS + HEADER_SYMBOLS) * symbol_ms
        # no frame lasts longer than a 255-byte one: older bookkeeping can go
        self.longest_ms = preset_time_on_air_us(255, preset) // 1000 + 1
        self.sigma = shadowing_sigma_db
        self.seed = seed
        self.pos = {n: (float(p[0]), float(p[1])) for n, p in positions.items()}
        self.up = {n: True for n in self.pos}
        self.frame_loss = frame_loss
        self._loss_rng = random.Random(f"{seed}:frame_loss")
        self._cut: set[tuple[int, int]] = set()   # links cut, (low id, high id)
        self._shadow: dict[tuple[int, int], float] = {}
        self._links: dict[int, list] = {}
        # per receiver: frames reaching it lately,
        # (start_ms, end_ms, rssi_dbm, sender, demodulable there)
        self._arrivals: dict[int, list] = {n: [] for n in self.pos}
        self._sending: dict[int, list] = {n: [] for n in self.pos}  # own [start, end]
        self.stats = {"frames": 0, "receptions": 0, "lost_collision": 0,
                      "lost_half_duplex": 0, "lost_down": 0, "lost_random": 0}

    # ---- geometry -----------------------------------------------------------

    def shadowing_db(self, a: int, b: int) -> float:
        if not self.sigma:
            return 0.0
        key = (a, b) if a < b else (b, a)
        s = self._shadow.get(key)
        if s is None:
            s = random.Random(f"{self.seed}:{key[0]}:{key[1]}").gauss(0.0, self.sigma)
            self._shadow[key] = s
        return s

    def link(self, tx: int, rx: int):
        """(rssi_dbm, snr_db) of tx at rx, whether or not it can be demodulated."""
        (x1, y1), (x2, y2) = self.pos[tx], self.pos[rx]
        rssi = self.model.rssi_dbm(math.hypot(x2 - x1, y2 - y1)) - self.shadowing_db(tx, rx)
        return rssi, rssi - self.noise_dbm

    def hearers(self, tx: int) -> list:
        """Nodes that tx reaches at least as interference: [(rx, rssi, snr, demodulable)]."""
        links = self._links.get(tx)
        if links is None:
            links = []
            weakest = self.floor_db - self.interference_db
            for rx in self.pos:
                if rx == tx or _pair(tx, rx) in self._cut:
                    continue
                rssi, snr = self.link(tx, rx)
                if snr >= weakest:
                    links.append((rx, rssi, snr, snr >= self.floor_db))
            self._links[tx] = links
        return links

    def neighbours(self, tx: int) -> list[int]:
        return [rx for rx, _, _, ok in self.hearers(tx) if ok]

    def move(self, node: int, x_m: float, y_m: float):
        self.pos[node] = (float(x_m), float(y_m))
        self._relink(node)

    def _relink(self, node: int):
        # links to and from `node` are recomputed (from it: when next needed)
        self._links.pop(node, None)
        for other in list(self._links):
            if other != node:
                self._links[other] = [h for h in self._links[other] if h[0] != node]
                rssi, snr = self.link(other, node)
                if snr >= self.floor_db - self.interference_db \
                        and _pair(other, node) not in self._cut:
                    self._links[other].append((node, rssi, snr, snr >= self.floor_db))

    def cut_link(self, a: int, b: int, cut: bool = True):
        """Cut the link between a and b (nothing passes either way), or restore it."""
        if cut:
            self._cut.add(_pair(a, b))
        else:
            self._cut.discard(_pair(a, b))
        self._relink(a)
        self._links.pop(b, None)

    def set_up(self, node: int, up: bool):
        self.up[node] = up

    # ---- transmissions ------------------------------------------------------

    def begin(self, sender: int, frame: bytes, start_ms: int, end_ms: int) -> Transmission:
        """A frame goes on air; returns it. `sensing(t)` lists who senses it."""
        self.stats["frames"] += 1
        self._sending[sender].append((start_ms, end_ms))
        hearers = self.hearers(sender)
        for rx, rssi, _, ok in hearers:
            self._arrivals[rx].append((start_ms, end_ms, rssi, sender, ok))
        return Transmission(sender, frame, start_ms, end_ms, hearers)

    def sensing(self, t: Transmission) -> list[int]:
        return [rx for rx, _, _, ok in t.hearers if ok and self.up[rx]]

    def end(self, t: Transmission) -> list:
        """The frame has left the air: [(rx, rssi_dbm, snr_db)] that received it."""
        got = []
        start, end = t.start_ms, t.end_ms
        for rx, rssi, snr, ok in t.hearers:
            if not ok:
                continue
            self.stats["receptions"] += 1
            if not self.up[rx]:
                self.stats["lost_down"] += 1
                continue
            if any(s < end and e > start for s, e in self._sending[rx]):
                self.stats["lost_half_duplex"] += 1
                continue
            if self._collided(rx, start, end, rssi, t.sender):
                self.stats["lost_collision"] += 1
                continue
            if self.frame_loss and self._loss_rng.random() < self.frame_loss:
                self.stats["lost_random"] += 1
                continue
            got.append((rx, rssi, snr))
        return got

    def _collided(self, rx, start, end, rssi, sender) -> bool:
        lost_to = self._lost_to
        for s, e, other_rssi, other, lockable in self._arrivals[rx]:
            if other == sender and s == start:
                continue
            if s >= end or e <= start:
                continue
            if lost_to(self, start, end, rssi, s, e, other_rssi, lockable):
                return True
        return False

    def forget_before(self, t_ms: int):
        """Drop bookkeeping of frames that ended before t_ms (bounded memory)."""
        for lists in (self._arrivals, self._sending):
            for n, entries in lists.items():
                if entries and entries[0][1] < t_ms:
                    lists[n] = [x for x in entries if x[1] >= t_ms]


# ---- capture rules ------------------------------------------------------------
# Each answers: does a frame (start, end, rssi) lose to one other frame (s, e,
# other_rssi) that overlaps it at this receiver? `lockable`: the other frame can
# be demodulated there (is above the floor), so the receiver may lock onto it.

def _lost_calibrated(ch, start, end, rssi, s, e, other_rssi, lockable):
    if e <= start + ch.head_ms:
        return False   # it ended before the preamble symbols this frame is locked on
    if rssi < other_rssi + ch.capture_db:
        return True    # not stronger by the capture margin
    # stronger: it takes the receiver unless the receiver already had the
    # other frame's header (then it is busy with that frame, and loses both)
    return lockable and s + ch.commit_ms <= start


def _lost_lock_first(ch, start, end, rssi, s, e, other_rssi, lockable):
    if rssi < other_rssi + ch.capture_db:
        return True
    # stronger: it survives unless the receiver had locked onto the other
    # frame's preamble first (a frame below the demodulation floor never is)
    return lockable and start + ch.lock_ms > s


def _lost_power_only(ch, start, end, rssi, s, e, other_rssi, lockable):
    if min(e, end) <= max(s, start) + ch.head_ms:
        return False   # only the first preamble symbols of the later frame overlap
    return rssi < other_rssi + ch.capture_db


_RULES = {"calibrated": _lost_calibrated, "lock-first": _lost_lock_first,
          "power-only": _lost_power_only}


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)
