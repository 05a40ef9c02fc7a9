# The storage interface the core uses, and an in-memory implementation for
# the simulator and tests. Boards and emulation pass a file-backed one with the
# same four methods (see firmware/pollen_io/filestore.py). A put must be
# atomic: after a power cut a record is either the old or the new one.


class MemoryStorage:
    def __init__(self):
        self.records = {}

    def get(self, name):
        return self.records.get(name)

    def put(self, name, data):
        self.records[name] = bytes(data)

    def delete(self, name):
        self.records.pop(name, None)

    def names(self):
        return list(self.records)
