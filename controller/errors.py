"""The host's errors: one family, so the CLI can tell a failure to report from a bug.

A PollenError is a failure the user can act on (bad input, a board that does
not answer, a file that cannot be read); `pollen` prints it as one line,
`pollen: message`, and exits 1. Anything else is a bug and keeps its
traceback. Raise the most specific class below with a message that names
what failed (the file, the field, the port); leave a broken invariant inside
the host a builtin (ValueError, RuntimeError, AssertionError).

The classes that were ValueErrors or RuntimeErrors before the family keep
that base, so code and tests that catch them as such still do.

The core's own errors (pollen.ids.ConfigError, pollen.files.FileError) cannot
subclass these (the core runs on boards); the CLI names them beside PollenError.
"""
from __future__ import annotations


class PollenError(Exception):
    """A failure to report to the user in one line (not a bug)."""


class InputError(PollenError, ValueError):
    """What the user gave is wrong: an option's value, a setting."""


class ScenarioError(InputError):
    """A simulator scenario: its file or one of its fields."""


class NetworkError(InputError):
    """A community network file or shared string."""


class MqttUrlError(InputError):
    """A broker URL (--mqtt)."""


class DemoError(PollenError, ValueError):
    """pollen demo: its options, or a node that refused a command."""


class BoardError(PollenError):
    """A board: its profile (hardware/boards/), its port, what it answered."""


class LinkError(PollenError, RuntimeError):
    """The console link to a node: not answering, refusing, gone."""


class PortBusyError(BoardError, LinkError):
    """A node's serial port held by another command or program (port_lock.py):
    a BoardError to flash and provision, a LinkError to the node's links (a
    monitor or gateway waiting for its port goes on waiting)."""


class MeshtasticError(LinkError):
    """A Meshtastic device (bridge_meshtastic/device.py): not there, or not
    finishing the want_config handshake."""


class BuildError(PollenError, RuntimeError):
    """Compiling the firmware (mpy-cross) or making a ROMFS image."""


class DepsError(PollenError, RuntimeError):
    """micropython-lib packages: the download or the offline cache."""


class LinkTimeout(LinkError):
    """The node did not answer in time (its port is still there)."""


class LinkTimeout(LinkError):
    """The node is there but did not send what was waited for in time."""


class FilesError(PollenError, ValueError):
    """Sharing or fetching a file through a node."""


class EmulationError(PollenError, RuntimeError):
    """Emulated nodes: the MicroPython unix port missing, a node that stopped."""


class HistoryError(PollenError, RuntimeError):
    """The monitor's SQLite history: missing, damaged, locked, too new."""


class GatewayError(PollenError, ValueError):
    """The gateway: a downlink payload, --network, the broker connection."""


class StoreError(PollenError, ValueError):
    """The gateway's outbox or inbox (SQLite)."""


class RemoteError(PollenError, ValueError):
    """Malformed data from a node or a broker: the remote's fault, dropped and
    counted where it arrives (it reaches the user only from a library call)."""


class MalformedDatagram(RemoteError):
    """A datagram on the virtual radio medium that is not one of its kind."""
