# Storage for the core on a real filesystem (LittleFS on boards, the host's
# filesystem in emulation): one file per record in a folder. A put writes a
# temporary file and renames it over the old one, so a power cut leaves
# either the old record or the new one, never half of one.
import os

from pollen._compat import const

_TMP = const(".tmp")
_PROBE = const(".probe")


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class FileStorage:
    def __init__(self, folder):
        self.folder = folder
        if not _exists(folder):
            os.mkdir(folder)
        for name in os.listdir(folder):
            if name.endswith(_TMP):  # a write cut short by a power loss
                os.remove(self._path(name))
        # fail now, not at the first message, if the folder cannot be written
        self.put(_PROBE, b"")
        self.delete(_PROBE)

    def _path(self, name):
        return self.folder + "/" + name

    def get(self, name):
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def put(self, name, data):
        tmp = self._path(name + _TMP)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self._path(name))

    def delete(self, name):
        try:
            os.remove(self._path(name))
        except OSError:
            pass

    def names(self):
        return [n for n in os.listdir(self.folder) if not n.endswith(_TMP)]

    def write_at(self, name, offset, data):
        # in place, not atomic: callers mark what they wrote as done only
        # afterwards, with a put (held_files.py). Past the end, the file
        # grows (what lies between reads as zeros)
        path = self._path(name)
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "wb")
        with f:
            f.seek(offset)
            f.write(data)

    def stat(self, name):
        try:
            return os.stat(self._path(name))[6]
        except OSError:
            return None

    def read_at(self, name, offset, n):
        try:
            with open(self._path(name), "rb") as f:
                f.seek(offset)
                data = f.read(n)
        except OSError:
            return None
        return data if len(data) == n else None
