"""What bridge.py asks of its Meshtastic side: a device (device.py, through
the `meshtastic` package) or a channel on an MQTT broker (mqtt_side.py).

  on_text(packet, side)   set by the bridge; called (on the side's own
                          thread) with {"from", "to", "id", "channel",
                          "decoded": {"text"}} for each text heard
  num                     the side's own node number (its texts are not bridged)
  up                      texts can be handed over now
  poll()                  the bridge's loop: notice the side going, reconnect
  send(text, channel, to, ref) -> packet id | None
                          hand one text over (to: a node number or None for
                          the channel; ref: the outbox row, the same when
                          the bridge hands a text again); None: not now
  confirmed(packet_id) -> bool | None
                          taken for good (None: this side never says)
  refused(packet_id) -> str | None
                          why the side refused it (a device: a Routing.Error
                          name in its QueueStatus); None if it did not
  drop(why)               not confirmed in time: the side is taken as gone
  stats["connects"]       counts connections (a text handed on an earlier
                          one is handed again)
  short_name(num)         a sender's short name, if known
  report() -> dict        counters said when the bridge stops
  close()
"""
from __future__ import annotations

from typing import Protocol


class Side(Protocol):
    num: int | None
    stats: dict
    where: str

    @property
    def up(self) -> bool: ...

    def poll(self) -> None: ...

    def send(self, text: str, channel, to_num: int | None = None, ref=None) -> int | None: ...

    def confirmed(self, packet_id: int) -> bool | None: ...

    def refused(self, packet_id: int) -> str | None: ...

    def drop(self, why: str) -> None: ...

    def short_name(self, num: int) -> str | None: ...

    def report(self) -> dict: ...

    def close(self) -> None: ...
