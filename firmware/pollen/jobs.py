# A job: one message the node means to put on air, and what it listens for
# afterwards. The node keeps at most MAX_JOBS of them (see Node._add_job for
# the policy when full).
from pollen._compat import const, publish

# the numbers of wire.py used here, as private copies (_compat.publish)
_BROADCAST = const(0xFFFFFFFF)


# What a job does once its frame is on air.
_J_ONCE = const(0)      # beacons, acks we originate: fire and forget
_J_FLOOD = const(1)     # a flooded copy: cancelled by overheard copies, one coverage retry
_J_ROUTED = const(2)    # a copy for one next hop: expects to hear it forwarded (or acked)
_J_STORED = const(3)    # a held message sent to its destination when it reappeared

_MAX_JOBS = const(24)


class Job:
    def __init__(self, key, kind, frame, due_ms, hops, dest=_BROADCAST, tries=1):
        self.key = key
        self.kind = kind
        self.frame = frame
        self.due_ms = due_ms      # transmit at or after; None once sent
        self.watch_ms = None      # when sent: deadline for hearing the next hop
        self.hops = hops          # hop count in our copy
        self.dest = dest
        self.tries = tries        # transmissions left
        self.copies = 1           # copies heard (ours included) before we sent; 0: a retry
        self.onward = False       # a copy further along was heard after we sent
        self.heard_from = []      # low bytes of nodes heard sending this message


publish(globals())  # hosts: wire.MSG and the like (_compat.py)
