# The node's console commands (docs/console.md), for pollen_io/app.py:
# loaded once the node has started, not before its start, whose heap is a
# node's peak (about 1.9 KB at 128K, where a node with a full store needed
# every KB to start), and kept from then on.
import sys
import gc
import json

from pollen import VERSION
from pollen._compat import const
from pollen.ids import ConfigError, parse_node_id

from pollen_io.app import emit, runtime

# the numbers of wire.py used here, as private copies (_compat.publish)
_BROADCAST = const(0xFFFFFFFF)

_FILE_CMDS = const(("share", "put", "fetch", "catalog", "manifest", "get"))


def run(app, line):
    try:
        c = json.loads(line)
    except ValueError:
        emit("error", error="command is not valid JSON")
        return
    if not isinstance(c, dict) or not isinstance(c.get("cmd"), str):
        emit("error", error="command needs a \"cmd\" field")
        return
    ref = c.get("ref")
    cmd = c["cmd"]
    try:
        if cmd == "send":
            cmd_send(app, c, ref)
        elif cmd == "status":
            emit_status(app, ref)
        elif cmd in _FILE_CMDS:
            # loaded for each file command and dropped after it, with this
            # module (App.command; the catalog's code too): a relay never
            # holds it, nor does a node serving a file between the host's commands
            from pollen_io import file_console
            getattr(file_console, "cmd_" + cmd)(app, c, ref)
        elif cmd == "config":
            from pollen_io import config_console  # (as file_console)
            config_console.cmd_config(ref)
        else:
            emit("error", error="unknown cmd %r (known: send, status, config, %s)"
                 % (cmd, ", ".join(_FILE_CMDS)), ref=ref)
    except (ValueError, TypeError) as e:
        emit("error", error="%s: %s" % (cmd, e), ref=ref)
    except MemoryError as e:
        # the node goes on: what it holds is in storage, not in this command
        sys.print_exception(e, sys.stderr)
        gc.collect()
        emit("error", error="%s: out of memory (%d bytes free)" % (cmd, gc.mem_free()), ref=ref)
    except Exception as e:
        # a bug, not the host's mistake: said as such, and the console
        # (the host's only way to the node) stays open
        sys.print_exception(e, sys.stderr)
        emit("error", error="%s: internal error: %r" % (cmd, e), ref=ref)


def cmd_send(app, c, ref):
    to = c.get("to", "all")
    text = c.get("text")
    if not isinstance(text, str):
        raise ValueError("field 'text': expected a string")
    if to == "all":
        dest = _BROADCAST
    else:
        try:
            dest = parse_node_id(to, "to")
        except ConfigError as e:
            raise ValueError(str(e).replace("config field", "field"))
    msg_id = app.node.send(dest, text, app.clock.now())
    emit("sent", id=msg_id, to="all" if dest == _BROADCAST else "%08x" % dest, ref=ref)


def emit_status(app, ref=None):
    # field by field: the status as one dict would need a big block of
    # a small (and by now fragmented) heap
    out = sys.stdout
    out.write('{"event": "status"')
    try:
        for k, v in app.node.status_items(app.clock.now()):
            _field(k, v)
        _field("heap_bytes", gc.mem_alloc())
        _field("heap_free_bytes", gc.mem_free())
        _field("peak_heap_bytes", app.peak_heap)
        _field("runtime", runtime())
        _field("version", VERSION)
    finally:
        # the line always ends (a status cut short by an error is still
        # one line, and the error event follows on its own)
        if ref is not None:
            _field("ref", ref)
        out.write("}\n")


def _field(name, value):
    sys.stdout.write(', "%s": ' % name)
    json.dump(value, sys.stdout)
