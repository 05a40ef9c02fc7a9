# The I/O half of a node: adapters that connect the sans-IO core in pollen/
# to a radio, a filesystem and a console. Board- or emulation-specific.
