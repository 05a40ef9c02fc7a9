# Messages the node holds until their destination can be reached: its own
# unicasts awaiting an acknowledgement and copies it carries for others
# (store-and-forward). Every record is persisted through the storage object so
# a restart loses nothing. Record layout (little, versioned):
#   0     record version (1)
#   1     flags: bit0 = our own message
#   2-5   remaining lifetime in ms when written, big-endian (time switched off
#         does not count: a board has no clock that runs while it is off)
#   6     attempts made
#   7..   the sealed frame as it first went on air (stays encrypted at rest)
from pollen._compat import const
from pollen.wire import u32, be32

_REC_VERSION = const(1)
_PREFIX = const("h")


class Held:
    # Defaults live on the class: an instance stores only what differs (a
    # MicroPython instance keeps its attributes in a dict that grows with
    # them; 244 -> 180 bytes each for an own message, measured at 64 bits).
    frame = None       # the sealed frame while it is new; None once in storage (Custody._held_frame)
    attempts = 0
    retry_ms = None    # own messages: next end-to-end retry
    triggered = False  # own messages: the destination was heard of again
    bonus = 0          # own messages: attempts granted past max_attempts
    quiet_ms = 0       # own messages: no attempt granted past max_attempts before this
    custody = False    # carried copies: kept after no ack was heard

    def __init__(self, key, dest, frame, expires_ms, own, attempts=0):
        self.key = key
        self.dest = dest
        self.expires_ms = expires_ms
        self.own = own
        if frame is not None:
            self.frame = frame
        if attempts:
            self.attempts = attempts


def record_name(key):
    return _PREFIX + "%016x" % key


def encode(h, now_ms, frame):
    left = max(0, h.expires_ms - now_ms)
    if left > 0xFFFFFFFF:
        left = 0xFFFFFFFF
    # in one buffer: no intermediate copies of the frame on a small heap
    out = bytearray(7 + len(frame))
    out[0] = _REC_VERSION
    out[1] = 1 if h.own else 0
    out[2:6] = be32(left)
    out[6] = min(h.attempts, 255)
    out[7:] = frame
    return out


def decode(name, data, now_ms):
    # -> (key, own, expires_ms, attempts, frame) or None if not ours / damaged
    if not name.startswith(_PREFIX) or len(name) != 17 or len(data) < 8:
        return None
    if data[0] != _REC_VERSION:
        return None
    try:
        key = int(name[1:], 16)
    except ValueError:
        return None
    if "%016x" % key != name[1:]:
        return None  # not a name we write (int() also takes "+", "-", "_", "0x", spaces)
    left = u32(data, 2)
    return key, bool(data[1] & 1), now_ms + left, data[6], bytes(data[7:])


def is_record(name):
    return name.startswith(_PREFIX)

