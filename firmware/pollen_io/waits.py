# What the app does after a step of one of its tasks failed (App.failed),
# loaded only then: kept out of the heap of a node that never needs it.
# The failure is counted and said on the console (a task_failed event,
# docs/console.md: the host counts them), and asyncio's table of waits is
# repaired.
#
# A wait on a stream (the console, the radio's socket or interrupt flag)
# that fails half-way for want of heap leaves an entry in asyncio's poller
# table after the table took it and before the poller did. Left there,
# every later wait on that stream fails (OSError ENOENT): a console or a
# radio that never hears again. The entries naming the running task are
# such leftovers: a task that is running waits for nothing.
import sys
import json
import asyncio


def failed(node, e, task):
    # (a MemoryError is already counted as a drop: App.failed)
    if not isinstance(e, MemoryError):
        sys.print_exception(e, sys.stderr)
        node._internal("task: %r" % e)
    forget_stale()
    # the event as app.emit writes it, without importing the app back
    json.dump({"event": "task_failed", "task": task, "error": repr(e)}, sys.stdout)
    sys.stdout.write("\n")


def forget_stale():
    q = asyncio.core._io_queue
    me = asyncio.core.cur_task
    for k in [k for k, e in q.map.items() if e[0] is me or e[1] is me]:
        e = q.map.pop(k)
        try:
            q.poller.unregister(e[2])
        except Exception:
            pass  # the poller never had it
