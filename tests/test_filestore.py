"""File-backed storage the firmware uses on boards and in emulation."""
from pollen_io.filestore import FileStorage


def test_put_get_delete_names(tmp_path):
    s = FileStorage(str(tmp_path / "store"))
    assert s.names() == [] and s.get("nothing") is None
    s.put("h01", b"\x01\x02")
    s.put("ids", b"abcd")
    s.put("h01", b"\x03")  # replaced whole
    assert s.get("h01") == b"\x03" and sorted(s.names()) == ["h01", "ids"]
    s.delete("h01")
    s.delete("h01")  # deleting twice is fine
    assert s.names() == ["ids"]


def test_a_write_cut_short_by_power_loss_leaves_the_old_record(tmp_path):
    folder = tmp_path / "store"
    s = FileStorage(str(folder))
    s.put("h01", b"old record")
    # a power cut after the temporary file was half written, before the rename
    (folder / "h01.tmp").write_bytes(b"new rec")
    s2 = FileStorage(str(folder))  # the next boot
    assert s2.get("h01") == b"old record"
    assert s2.names() == ["h01"] and not (folder / "h01.tmp").exists()
