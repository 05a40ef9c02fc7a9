# The I/O half of a node: adapters that connect the sans-IO core in pollen/
# to a radio, a filesystem and a console. Board- or emulation-specific.
#
# Here, the console's primitives: what the node says to its host, one JSON
# line per event on stdout (docs/console.md), streamed, never built whole
# (a status or a long list as one string would need a big block of a
# small heap). app.py, console_commands.py and file_console.py import them
# from here, and none of them imports another. In the package's own module,
# not one of their own: a module of its own kept 450 bytes more of a
# running node's heap (its module object, globals and names), more than a
# 128K node in `pollen demo` had to spare.
import sys
import json


def emit(event, **fields):
    fields["event"] = event
    json.dump(fields, sys.stdout)
    sys.stdout.write("\n")


def field(name, value):
    # one field of an event written field by field (console_commands.emit_status)
    sys.stdout.write(', "%s": ' % name)
    json.dump(value, sys.stdout)


def runtime():
    v = sys.implementation.version
    return "%s %d.%d.%d" % (sys.implementation.name, v[0], v[1], v[2])
