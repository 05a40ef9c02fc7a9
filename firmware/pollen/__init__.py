# pollen: the sans-IO protocol core of an offline LoRa community mesh.
# The same files run on boards (MicroPython), in emulation (MicroPython unix
# port) and in the host simulator (CPython). No I/O happens in this package:
# time enters as now_ms, frames as bytes, and the core answers with actions.
VERSION = "0.1.0"
