"""The gateway's own node, behind its link (node/link.py), kept through the port
going away and coming back (docs/gateway.md, "The serial port"):

  up      events flow; commands are written
  away    the port is gone: the link is closed and opened again after 1 s,
          then 2, 4, 8 and every 10 s
  hello   the port is open again: the node is asked its status (again every
          2 s) until it answers, so we know which node it is

poll() hands the caller the node's events, and two of its own: `_away`
(field `error`) when the port went, `_back` (`id`, `was`) when the node
answered again. A link that cannot be opened again (an emulated node)
raises its LinkError out of poll() instead.
"""
from __future__ import annotations

import queue
import time

from pollen_controller.node.link import LinkError

_FIRST_DELAY_S = 1.0
_MAX_DELAY_S = 10.0
_HELLO_EVERY_S = 2.0
_STASH = 1000   # events kept while the node has not said who it is yet
_BATCH = 200    # events handed over per poll()


class AttachedNode:
    def __init__(self, link, log=None, first_delay_s: float = _FIRST_DELAY_S,
                 max_delay_s: float = _MAX_DELAY_S):
        self.link = link
        self.log = log or (lambda s: None)
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        # at start the node must be there and answer (LinkError otherwise)
        self.status = link.ask({"cmd": "status"}, "status")
        self.id = self.status["id"]
        self.state = "up"
        self.away_since = None
        self._delay_s = first_delay_s
        self._next_try = 0.0
        self._hello_ref = None
        self._hello_sent = 0.0
        self._stash: list[dict] = []
        self._last_error = None

    @property
    def up(self) -> bool:
        return self.state == "up"

    def command(self, cmd: dict) -> bool:
        """Write a command to the node; False (and the node is away) when the port is gone."""
        if self.state == "away":
            return False
        try:
            self.link.command(cmd)
            return True
        except LinkError as e:
            self._lost(e)
            return False

    def poll(self, timeout_s: float) -> list[dict]:
        now = time.monotonic()
        if self.state == "away":
            if now < self._next_try:
                time.sleep(min(timeout_s, self._next_try - now))
                return []
            self._reopen()
            if self.state == "away":
                return []
        out: list[dict] = []
        evs = []
        try:
            evs.append(self.link.events.get(timeout=timeout_s))
            while len(evs) < _BATCH:
                evs.append(self.link.events.get_nowait())
        except queue.Empty:
            pass
        for ev in evs:
            if self.state == "hello":
                out.extend(self._hello(ev))
            else:
                out.append(ev)
        try:
            self.link._check_alive()
        except LinkError as e:
            self._lost(e)
            out.append({"event": "_away", "error": str(e)})
            return out
        if self.state == "hello" and time.monotonic() - self._hello_sent >= _HELLO_EVERY_S:
            self._ask_hello()
        return out

    # ---- the port going and coming back ------------------------------------------

    def _lost(self, e: LinkError):
        if not self.link.reopenable:
            raise e
        was = self.state
        self.state = "away"
        self.link.close()
        self._delay_s = self.first_delay_s
        self._next_try = time.monotonic() + self._delay_s
        self._last_error = None
        if was != "away":
            self.away_since = time.time()
            self.log(f"node {self.id}: {e}; the broker side goes on, sends wait; "
                     f"opening the port again every {self.first_delay_s:g}..{self.max_delay_s:g} s")

    def _reopen(self):
        try:
            self.link.reopen()
        except LinkError as e:
            if str(e) != self._last_error:  # say why once, not every try
                self._last_error = str(e)
                self.log(f"node {self.id}: {e}; trying again")
            self._delay_s = min(self._delay_s * 2, self.max_delay_s)
            self._next_try = time.monotonic() + self._delay_s
            return
        self.state = "hello"
        self._stash = []
        self._ask_hello()

    def _ask_hello(self):
        self._hello_ref = self.link.new_ref()
        self._hello_sent = time.monotonic()
        self.command({"cmd": "status", "ref": self._hello_ref})

    def _hello(self, ev: dict) -> list[dict]:
        if ev.get("event") == "started":
            self._hello_sent = 0.0  # it has just booted: ask now
            return []
        if not (ev.get("event") == "status" and ev.get("ref") == self._hello_ref):
            if len(self._stash) < _STASH:
                self._stash.append(ev)
            return []
        was, self.id, self.status = self.id, ev["id"], ev
        self.state = "up"
        away_s = time.time() - (self.away_since or time.time())
        if was != self.id:
            self.log(f"node {self.id} is on the port now (it was {was}); the gateway goes on as {self.id}")
        else:
            self.log(f"node {self.id} is back after {away_s:.0f} s")
        out = [{"event": "_back", "id": self.id, "was": was}] + self._stash + [ev]
        self._stash = []
        return out
