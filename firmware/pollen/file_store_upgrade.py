# Moving a file kept in the file store's first layout (a record per chunk,
# "f<cid>c<i>", and a 5-byte state) to the current one (held_files.py):
# its chunk records into the data record, then the state with its bitmap,
# then the chunk records go. A cut part way is finished at the next start
# (the state is still the old one until then). Loaded only when such a
# file is found, so its code costs a node's heap nothing otherwise.
from pollen import files


def upgrade(storage, cid, m, st, names):
    # -> the new state record
    h = "f" + files.cid_hex(cid)
    bits = bytearray((m.chunks + 7) // 8)
    for i in range(m.chunks):
        name = h + "c%d" % i
        data = storage.get(name) if name in names else None
        if data is not None:
            storage.write_at(h + "d", i * m.chunk_bytes, data)
            bits[i >> 3] |= 1 << (i & 7)
    st = bytes(st[:5]) + bytes(bits)
    storage.put(h + "s", st)
    for i in range(m.chunks):
        storage.delete(h + "c%d" % i)
    return st
