# What a node reports to its console and to hosts: its status and its file
# catalog, as the user sees them (docs/console.md). Only the console and
# hosts ask for these, so this code is loaded when they do and the node app
# drops it again afterwards: on a 128K heap every KB of code counts.
from pollen.files import cid_str


def status_items(node, now_ms):
    # the fields after Node.status_items' own, as (field, value) pairs one
    # at a time: the app streams them to its console, so a small heap never
    # holds them all at once
    yield "neighbours", [{"id": "%08x" % k, "name": e[0], "rssi_dbm": e[1], "snr_db": e[2],
                          "last_heard_s": (now_ms - e[3]) // 1000}
                         for k, e in node.neigh.table.items()]
    yield "routes", len(node.routes)
    yield "held", len(node.held)
    yield "queue", len(node.jobs)
    yield "airtime_ms", node.duty.total_us // 1000
    yield "airtime_pct", node.airtime_per_mille(now_ms) / 10
    yield "battery_mv", node.battery_mv
    yield "duty_headroom_pct", round(node.duty.headroom_per_mille(now_ms) / 10, 1)
    yield "files", sharing_status(node, now_ms)
    yield "last_internal_error", node.last_internal


def sharing_status(node, now_ms):
    files = node.files
    complete = len(files.holdings())
    node.catalog.expire(now_ms)
    return {"held": complete, "partial": len(files.state) - complete,
            "used_bytes": files.used_bytes(), "quota_bytes": files.quota_bytes,
            "fetching": len(node.fetches), "catalog": len(node.catalog.table),
            "chunk_bytes": node.file_chunk_bytes, "max_file_bytes": node.s.max_file_bytes,
            "bad_senders": dict(("%08x" % k, v) for k, v in node.bad_senders.items())}


def catalog_entries(node, now_ms, search=None):
    # What this node holds and knows of, for the user: [dict], nearest first.
    files = node.files
    catalog = node.catalog
    out = {}
    for cid, m in files.manifests.items():
        complete = files.complete(cid)
        out[cid] = {"cid": cid_str(cid), "name": m.name, "size_bytes": m.size_bytes,
                    "media_type": m.media_type, "hops": 0 if complete else None,
                    "holders": 1 if complete else 0, "last_seen_s": 0,
                    "held": "complete" if complete else "partial",
                    "chunks": m.chunks, "have": files.chunks_held(cid)}
    catalog.expire(now_ms)
    for cid, e in catalog.table.items():
        src = catalog.sources(cid, now_ms)
        d = out.get(cid)
        if d is None:
            d = {"cid": cid_str(cid), "name": e[0], "size_bytes": e[1] * 1024,
                 "media_type": None, "hops": None, "holders": 0, "held": None}
            out[cid] = d
        d["holders"] += len([1 for s in src if s[1] == 0])
        d["last_seen_s"] = (now_ms - e[2]) // 1000 if d["hops"] != 0 else 0
        if src and d["hops"] is None:
            d["hops"] = src[0][1] + 1
    rows = list(out.values())
    if search:
        q = search.lower()
        rows = [r for r in rows if q in r["name"].lower()]
    rows.sort(key=lambda r: (r["hops"] if r["hops"] is not None else 99, r["name"]))
    return rows


def status(node, now_ms):
    # Node.status: a snapshot of the node's state, one dict
    s = dict(node.status_items(now_ms))
    s["counters"] = dict(node.counters)
    s["dropped"] = dict(node.drops)
    return s
