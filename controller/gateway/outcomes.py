"""What became of each send from the broker (docs/gateway.md, "What became of
a send"): the pure bookkeeping, no IO. gateway/gateway.py publishes what it
returns on pollen/NETWORK/send/outcome:

  sent       the gateway's node accepted it (it has a message id now)
  delivered  the destination acknowledged it (a message to one node only)
  failed     the gateway or the node refused it, or it expired unacknowledged

A send may carry a "ref" (any JSON value, at most 200 characters as JSON);
every outcome echoes it. Messages waiting for their acknowledgement are
remembered in memory only (at most _AWAITED): after a gateway restart,
their delivered/failed outcome is not published.
"""
from __future__ import annotations

import json
from collections import OrderedDict

OUTCOME_KEY = "_outcome"   # in an inbox command from the send topic: {"ref": ...}; never sent to the node
_AWAITED = 1000
_MAX_REF_CHARS = 200


def check_ref(ref) -> str | None:
    """A send's ref: why it cannot be echoed, or None when it is fine."""
    if ref is None:
        return None
    try:
        n = len(json.dumps(ref))
    except (TypeError, ValueError):
        return "field 'ref': not a JSON value"
    return f"field 'ref': {n} characters as JSON; at most {_MAX_REF_CHARS}" if n > _MAX_REF_CHARS else None


def for_node(cmd: dict) -> dict:
    """The command as the node gets it: without the gateway's own keys."""
    return {k: v for k, v in cmd.items() if k != OUTCOME_KEY}


class Outcomes:
    def __init__(self):
        self.awaited: OrderedDict[int, dict] = OrderedDict()   # message id -> outcome base

    @staticmethod
    def _base(cmd: dict) -> dict | None:
        if OUTCOME_KEY not in cmd:
            return None   # not from the send topic (a post bridged in): no outcome
        base = {"to": cmd.get("to"), "text": cmd.get("text")}
        ref = (cmd.get(OUTCOME_KEY) or {}).get("ref")
        if ref is not None:
            base["ref"] = ref
        return base

    def sent(self, cmd: dict, ev: dict) -> dict | None:
        """The node answered `sent` to cmd: the outcome to publish, or None."""
        base = self._base(cmd)
        if base is None:
            return None
        msg_id = ev.get("id")
        if base["to"] != "all" and isinstance(msg_id, int):
            self.awaited[msg_id] = dict(base, id=msg_id)
            while len(self.awaited) > _AWAITED:
                self.awaited.popitem(last=False)
        return dict(base, outcome="sent", id=msg_id)

    def refused(self, cmd: dict, error: str) -> dict | None:
        base = self._base(cmd)
        return None if base is None else dict(base, outcome="failed", error=error)

    @staticmethod
    def invalid(payload: bytes, error: str) -> dict | None:
        """A send the gateway refused before the node saw it (no text, a
        text over 231 bytes, a bad `to`): a failed outcome, so a publisher
        that waits on send/outcome hears of it too, with its ref; None for a
        payload that is not a JSON object (only the errors topic tells that)."""
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(body, dict):
            return None
        out = {"to": body.get("to") if isinstance(body.get("to"), str) else None}
        text = body.get("text")
        if isinstance(text, str):
            out["text"] = text[:_MAX_REF_CHARS]   # as much as the errors topic keeps
        if body.get("ref") is not None and check_ref(body["ref"]) is None:
            out["ref"] = body["ref"]
        return dict(out, outcome="failed", error=error)

    def delivered(self, ev: dict) -> dict | None:
        base = self.awaited.pop(ev.get("id"), None)
        return None if base is None else dict(base, outcome="delivered", hops=ev.get("hops"))

    def expired(self, ev: dict) -> dict | None:
        base = self.awaited.pop(ev.get("id"), None)
        return None if base is None else dict(base, outcome="failed",
                                              error="expired: never acknowledged by its destination")
