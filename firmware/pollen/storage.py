# The storage interface the core uses, and an in-memory implementation for
# the simulator and tests. Boards and emulation pass a file-backed one with the
# same methods (see firmware/pollen_io/filestore.py). A put must be atomic:
# after a power cut a record is either the old or the new one. write_at and
# read_at change and read part of a record in place (a file's chunks, kept
# in one data record): not atomic, so what they write is marked done only
# afterwards, in a record that is put (held_files.py). stat(name) is a
# record's length in bytes (None if there is none), as os.stat's size.


class MemoryStorage:
    def __init__(self):
        self.records = {}

    def get(self, name):
        r = self.records.get(name)
        if isinstance(r, dict):  # a record written in pieces (write_at), whole
            out = bytearray(max(o + len(d) for o, d in r.items()) if r else 0)
            for o, d in r.items():
                out[o:o + len(d)] = d
            return bytes(out)
        return r

    def put(self, name, data):
        self.records[name] = bytes(data)

    def delete(self, name):
        self.records.pop(name, None)

    def names(self):
        return list(self.records)

    def write_at(self, name, offset, data):
        # kept as pieces by offset, not one block that grows (a 64 KiB file
        # would need 64 KiB in one piece of a fragmented heap); read back
        # as written: whole pieces (held_files reads whole chunks)
        r = self.records.get(name)
        if not isinstance(r, dict):
            r = self.records[name] = {0: r} if r else {}
        r[offset] = bytes(data)

    def read_at(self, name, offset, n):
        r = self.records.get(name)
        if isinstance(r, dict):
            piece = r.get(offset)
            # a piece as written (a chunk), or else the range from the whole
            r, offset = (piece, 0) if piece is not None and len(piece) >= n else (self.get(name), offset)
        if r is None or len(r) < offset + n:
            return None
        return bytes(r[offset:offset + n])

    def stat(self, name):
        r = self.get(name)
        return None if r is None else len(r)
