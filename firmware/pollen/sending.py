# What a node does when its user sends (Node.send): checks the text and
# the destination, takes a message id, and puts a post on the queue (kept
# in storage until it is first on air) or a direct message into custody
# (sealed with the pair key if the node has an identity, or waiting for the
# destination's key: identity_work.py). Loaded for a send and dropped after:
# sends are rare, and its code is not in a node's heap meanwhile.
from pollen import wire
from pollen import held as heldrec
from pollen.wire import Frame
from pollen.jobs import Job
from pollen._compat import const

# the numbers of wire.py and jobs.py used here, as private copies (_compat.publish)
_HEADER_BYTES = const(16)
_MAX_PAYLOAD_BYTES = const(231)
_BROADCAST = const(0xFFFFFFFF)
_POST = const(2)
_MSG = const(3)
_F_WANT_ACK = const(0x80)
_J_FLOOD = const(1)


def send(node, dest, text, now_ms, hop_limit=None):
    # Node.send: a message from the app. Raises ValueError on misuse (too
    # long, bad destination); once this returns, the message is persisted.
    payload = text.encode() if isinstance(text, str) else bytes(text)
    if len(payload) > _MAX_PAYLOAD_BYTES:
        raise ValueError("text is %d bytes; at most %d fit in a frame"
                         % (len(payload), _MAX_PAYLOAD_BYTES))
    if dest == node.id or dest == 0 or dest & 0xFF == 0 and dest != _BROADCAST:
        raise ValueError("bad destination %08x" % dest)
    if node.dwell_us and node._airtime_us(_HEADER_BYTES + len(payload) + 8) > node.dwell_us:
        raise ValueError("frame would exceed the region's %d ms dwell time"
                         % (node.dwell_us // 1000))
    limit = node.s.hop_limit if hop_limit is None else hop_limit
    if dest != _BROADCAST and len(node.held) >= node.s.held_capacity \
            and not node._evict_held():
        raise ValueError("store full: %d messages wait for delivery" % len(node.held))
    msg_id = node._new_id(0)
    node.counters["originated"] += 1
    if dest == _BROADCAST:
        f = Frame(_POST, 0, limit, 0, node.id, _BROADCAST, msg_id, 0, node.low, payload)
        data = wire.pack(f, node.key)
        key = f.key()
        node._add_job(Job(key, _J_FLOOD, data, now_ms + node._rand(node.slot_ms),
                          0, _BROADCAST, 1 + node.s.post_retries))
        if key not in node.jobs:
            raise ValueError("queue full: %d frames wait to go on air" % len(node.jobs))
        # kept in storage (as a held record) until it first goes on air:
        # a power cut before then does not lose it (restart.py sends it)
        try:
            node.storage.put(heldrec.record_name(key), heldrec.encode(
                heldrec.Held(key, _BROADCAST, None, now_ms + node.s.lifetime_ms, True),
                now_ms, data))
        except Exception:
            del node.jobs[key]  # not accepted: nothing goes
            raise
        node.seen.add(key)
        node.posts.add(key, data, now_ms)
        return msg_id
    pair = None
    if node.ident:
        # a private message: sealed with the pair key, or kept (in
        # storage: accepted) until the destination's key is known
        pair = node.ident.key(dest)
        if pair is None:
            from pollen.identity_work import wait
            wait(node.ident, node, dest, msg_id, limit, payload, now_ms)
            return msg_id
    seal(node, dest, msg_id, limit, payload, pair, now_ms)
    return msg_id

def seal(node, dest, msg_id, limit, payload, cipher, now_ms):
    # our unicast goes into custody (held, persisted) and is first sent
    f = Frame(_MSG, _F_WANT_ACK, limit, 0, node.id, dest, msg_id, 0, node.low, payload)
    data = wire.pack(f, node.key, cipher)
    key = f.key()
    node.seen.add(key)
    h = heldrec.Held(key, dest, data, now_ms + node.s.lifetime_ms, True)
    node.held[key] = h
    node._persist(h, now_ms, data)
    h.frame = data  # (for its first attempt: not read back from storage)
    # accepted: it is in storage. Anything that goes wrong from here is
    # the node's trouble, not a failed send: the retry timer sends it
    try:
        node._attempt(h, now_ms)
    except MemoryError:
        h.retry_ms = now_ms + node.slot_ms * 8
        node._internal("MemoryError: first attempt of %08x" % msg_id)
