"""What crosses between a pollen mesh and a Meshtastic channel, and how it
is written (docs/meshtastic.md): the pure decisions, no IO. bridge.py feeds
it what each side heard, with the time.

A bridged text starts with the bridging mark the MQTT gateway uses
(gateway/bridge.py: BRIDGE_MARK, parse_mark), then the uid of the text it
carries and a space, then who said it:

  into pollen       "⇄11223344-7 ANNA: text"   (Meshtastic node !11223344,
                                                packet 7, short name ANNA)
  into Meshtastic   "⇄0000000c-17 bakery: text" (pollen node 0000000c,
                                                message 17, its name if known)

A text carrying the mark is never bridged again, by any bridge or gateway,
so nothing loops. A text too long for the other side is split in two, each
part with the mark and "(1/2) ", "(2/2) "; one that would need more parts
is refused (it cannot come from either side's air: a pollen frame holds 231
bytes, a Meshtastic packet 233).
"""
from __future__ import annotations

from pollen.wire import MAX_PAYLOAD_BYTES
from pollen_controller.errors import InputError
from pollen_controller.gateway.bridge import BRIDGE_MARK, is_node_id, parse_mark

POLLEN_TEXT_BYTES = MAX_PAYLOAD_BYTES   # a pollen post or message: one frame's payload
# A Meshtastic text as the firmware sends it from its client (src/mesh/Router.cpp
# perhapsEncode): the encoded Data (portnum 2 bytes, the payload 3 + n, the
# bitfield it adds to every packet from its client 2) must fit 255 - 16 header
# bytes, so 232 (one less than Constants.DATA_PAYLOAD_LEN, which the package
# checks); a direct message, PKI-encrypted, 12 bytes less (MESHTASTIC_PKC_OVERHEAD).
# Over that the firmware refuses the packet (TOO_LARGE). Asserted in the tests
# with the package's Data.
MESHTASTIC_TEXT_BYTES = 232
MESHTASTIC_DM_BYTES = 220
MAX_PARTS = 2
_NAME_CHARS = 16                        # of a sender's name shown in a bridged text
# A bridge on MQTT publishes its own node info with this long name and its
# pollen node's id: other bridges learn of it from that before any text
BRIDGE_NAME = "pollen bridge "


def is_bridged(text) -> bool:
    """A text some bridge or gateway brought in: never bridged again."""
    return parse_mark(text) is not None


def destination(text: str, direct: bool, sender, pairs: dict, everyone):
    """Where a text heard on one side goes on the other: (destination, None),
    or (None, why not): "bridged_skipped" (it carries the mark) or
    "unmapped" (a direct message from a sender not paired with --map)."""
    if is_bridged(text):
        return None, "bridged_skipped"
    if not direct:
        return everyone, None
    dest = pairs.get(sender)
    return (dest, None) if dest is not None else (None, "unmapped")


def bridge_name(pollen_id: str) -> str:
    """The long name of a bridge's own Meshtastic node: "pollen bridge 0000000a"."""
    return BRIDGE_NAME + pollen_id


def bridge_in_name(long_name) -> str | None:
    """The pollen node id a Meshtastic node's long name says it bridges
    ("pollen bridge 0000000a" -> "0000000a"); None for any other name."""
    if not isinstance(long_name, str) or not long_name.startswith(BRIDGE_NAME):
        return None
    pollen_id = long_name[len(BRIDGE_NAME):]
    return pollen_id if is_node_id(pollen_id) else None


def mesh_id(num: int) -> str:
    """A Meshtastic node number as its user id, "!11223344"."""
    return f"!{num & 0xFFFFFFFF:08x}"


def split_text(head: str, text: str, limit_bytes: int) -> list[str] | None:
    """head + text as one text of at most limit_bytes of UTF-8, else as
    MAX_PARTS parts "head(k/n) piece", cut between characters (at a space
    when one is near); None if it does not fit in MAX_PARTS."""
    whole = head + text
    if len(whole.encode()) <= limit_bytes:
        return [whole]
    parts, rest = [], text
    for k in range(1, MAX_PARTS + 1):
        prefix = f"{head}({k}/{MAX_PARTS}) "
        room = limit_bytes - len(prefix.encode())
        if room <= 0:
            return None
        piece = _cut(rest, room)
        parts.append(prefix + piece)
        rest = rest[len(piece):]
        if not rest:
            break
    return None if rest else parts


def _cut(text: str, room_bytes: int) -> str:
    raw = text.encode()
    if len(raw) <= room_bytes:
        return text
    piece = raw[:room_bytes].decode(errors="ignore")   # never half a character
    space = piece.rfind(" ")
    if space >= len(piece) * 3 // 4:                    # a word boundary near the end
        piece = piece[:space + 1]
    return piece


def to_pollen(from_num: int, packet_id: int, short_name: str | None, text: str) -> list[str] | None:
    """A Meshtastic text as the pollen text(s) to post; None when too long."""
    name = _name(short_name) or mesh_id(from_num)
    head = f"{BRIDGE_MARK}{from_num & 0xFFFFFFFF:08x}-{packet_id} {name}: "
    return split_text(head, text, POLLEN_TEXT_BYTES)


def to_meshtastic(from_id: str, msg_id: int, name: str | None, text: str,
                  direct: bool = False) -> list[str] | None:
    """A pollen text as the Meshtastic text(s) to send (to the channel, or a
    direct message); None when too long."""
    name = _name(name)
    head = f"{BRIDGE_MARK}{from_id}-{msg_id} " + (f"{name}: " if name else "")
    return split_text(head, text, MESHTASTIC_DM_BYTES if direct else MESHTASTIC_TEXT_BYTES)


def _name(name) -> str:
    # a name from the air, in one line and short: no control or format characters
    if not isinstance(name, str):
        return ""
    return "".join(c for c in name if c.isprintable())[:_NAME_CHARS].strip()


class IdMap:
    """--map POLLENID=!MESHID: who is who for direct messages, both ways."""

    def __init__(self, pairs=()):
        self.to_mesh: dict[str, int] = {}
        self.to_pollen: dict[int, str] = {}
        for pair in pairs:
            pollen_id, num = parse_pair(pair)
            if pollen_id in self.to_mesh or num in self.to_pollen:
                raise InputError(f"--map {pair!r}: {pollen_id} or {mesh_id(num)} is mapped twice")
            self.to_mesh[pollen_id], self.to_pollen[num] = num, pollen_id


def parse_pair(pair: str) -> tuple[str, int]:
    """"0000000c=!11223344" -> ("0000000c", 0x11223344); InputError naming it."""
    left, eq, right = pair.partition("=")
    left, right = left.strip().lower(), right.strip().lower()
    if not eq:
        raise InputError(f"--map {pair!r}: expected POLLENID=!MESHID, e.g. 0000000c=!11223344")
    if len(left) < 8 and left and all(c in "0123456789abcdef" for c in left):
        left = left.zfill(8)
    if not is_node_id(left) or left in ("00000000", "ffffffff"):
        raise InputError(f"--map {pair!r}: the pollen id {left!r} is not a node id (8 hex digits)")
    digits = right[1:] if right.startswith("!") else right
    if not (1 <= len(digits) <= 8 and all(c in "0123456789abcdef" for c in digits)) \
            or int(digits, 16) in (0, 0xFFFFFFFF):
        raise InputError(f"--map {pair!r}: the Meshtastic id {right!r} is not a node id"
                         f" (! and 8 hex digits, as `meshtastic --nodes` shows)")
    return left, int(digits, 16)


class RateLimit:
    """A token bucket: `per_minute` texts a minute on average, `burst` at once."""

    def __init__(self, per_minute: float, burst: int, field: str = "rate limit"):
        if not per_minute > 0 or burst < 1:
            raise InputError(f"{field}: expected texts a minute above 0 (and a burst of 1 or"
                             f" more), got {per_minute:g} a minute, burst {burst}")
        self.per_s, self.burst = per_minute / 60.0, float(burst)
        self.tokens, self.at = float(burst), None

    def _fill(self, now_s: float):
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now_s - self.at) * self.per_s)
        self.at = now_s

    def take(self, now_s: float) -> bool:
        """True (and one token spent) if a text may go now."""
        self._fill(now_s)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
