"""`pollen sim` and `pollen bench` as a user runs them."""
import json

from click.testing import CliRunner

from pollen_controller.cli.main import main
from pollen_controller.sim.engine import ROUTERS

FIELDS = ("scenario", "router", "nodes", "seed", "broadcast_reach", "unicast_delivery",
          "latency_ms", "tx_per_delivered", "airtime_ms_per_delivered", "collision_ratio",
          "channel_utilisation", "sim_seconds", "wall_seconds", "events")


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_sim_json_has_every_field_and_is_deterministic():
    a = json.loads(run("sim", "line-10", "--json").output)
    for f in FIELDS:
        assert f in a, f
    assert a["scenario"] == "line-10" and a["router"] == "pollen" and a["nodes"] == 10
    assert 0 < a["broadcast_reach"] <= 1 and a["events"] > 0
    b = json.loads(run("sim", "line-10", "--json").output)
    for r in (a, b):
        r.pop("wall_seconds"), r.pop("events_per_second")
    assert a == b
    c = json.loads(run("sim", "line-10", "--json", "--seed", "7").output)
    assert c["seed"] == 7 and c["tx_frames"] != a["tx_frames"]


def test_sim_baseline_router_and_node_override(tmp_path):
    r = json.loads(run("sim", "grid-50", "--router", "managed-flood", "--nodes", "20",
                       "--json").output)
    assert r["router"] == "managed-flood" and r["nodes"] == 20
    out = run("sim", "line-10", "--plot", str(tmp_path))
    assert "broadcast reach" in out.output
    for png in ("topology.png", "latency_cdf.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a line of nodes is a readable band, not a strip: its height is a good share of its width
    import struct

    width, height = struct.unpack(">II", (tmp_path / "topology.png").read_bytes()[16:24])
    assert width > height >= 0.3 * width


def test_sim_plot_prints_no_library_warnings(tmp_path, caplog):
    # matplotlib said "Ignoring fixed y limits to fulfill fixed data aspect
    # with adjustable data limits." twice on every run of --plot
    import logging

    with caplog.at_level(logging.WARNING):
        out = run("sim", "line-10", "--plot", str(tmp_path))
    assert "Ignoring fixed" not in out.output and "Ignoring fixed" not in caplog.text


def test_topology_frame_pads_a_flat_layout_and_keeps_the_shape():
    from pollen_controller.sim.plots import _frame

    (x0, x1), (y0, y1), (w, h) = _frame([0, 12, 108], [0, 0, 0])   # line-10, km
    assert x0 < 0 and x1 > 108 and y0 < 0 < y1 and y1 - y0 > 10     # not a flat strip
    assert w == 9 and 3.5 <= h < w
    (_, _), (_, _), (w, h) = _frame([0, 63], [0, 63])              # a square grid
    assert w == h


def test_sim_rejects_a_bad_scenario_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nduration_s: 60\nnodes: {count: 5, placement: line, spacing_m: 100}\n"
                   "traffic: {broadcast_interval_s: -3}\n")
    r = CliRunner().invoke(main, ["sim", str(bad)])
    assert r.exit_code != 0
    assert "traffic.broadcast_interval_s" in r.output
    r = CliRunner().invoke(main, ["sim", "no-such-scenario"])
    assert r.exit_code != 0 and "no-such-scenario" in r.output
    r = CliRunner().invoke(main, ["sim", "line-10", "--router", "ospf"])
    assert r.exit_code != 0 and "--router" in r.output


def test_sim_spam_reports_honest_traffic_apart_from_the_spam():
    plain = json.loads(run("sim", "line-10", "--json").output)
    assert plain["spammers"] == [] and plain["spam_broadcasts"] == 0
    r = json.loads(run("sim", "line-10", "--spam", "1", "--spam-kind", "both", "--json").output)
    assert len(r["spammers"]) == 1
    assert r["spam_broadcasts"] > 0 and r["spam_unicasts"] > 0
    assert 0 < r["spam_broadcast_reach"] <= 1
    # the spammer's own traffic is not in the honest figures
    assert r["broadcasts"] < plain["broadcasts"] and r["unicasts"] < plain["unicasts"]
    out = run("sim", "line-10", "--spam", "1").output
    assert "spam" in out and "honest traffic only" in out
    bad = CliRunner().invoke(main, ["sim", "line-10", "--spam", "11"])
    assert bad.exit_code != 0 and "--spam" in bad.output


def test_bench_quick_runs_every_router_on_the_same_seeds():
    r = run("bench", "--quick", "--seeds", "1", "--no-speed", "--no-curve", "--json")
    out = json.loads(r.output.splitlines()[-1])["standard"]
    assert out["seeds"] == [1] and out["routers"] == list(ROUTERS)
    names = [row["scenario"] for row in out["scenarios"]]
    assert names == ["line-10", "grid-50", "villages-mule", "longfast-30"]
    runs = {(x["scenario"], x["router"]): x for x in out["runs"]}
    assert len(runs) == len(out["runs"]) == 4 * len(ROUTERS)
    for row in out["scenarios"]:
        assert set(row["stats"]) == set(ROUTERS)
        assert {x["seed"] for (name, _), x in runs.items() if name == row["scenario"]} == {1}
        best = row["best"]["tx_per_delivered"]
        p = runs[(row["scenario"], "pollen")]["tx_per_delivered"]
        b = runs[(row["scenario"], best)]["tx_per_delivered"] if best else None
        if b:
            assert row["ratio"]["tx_per_delivered"] == round(p / b, 3)
        assert [t["metric"] for t in row["targets"]][:2] == ["unicast_delivery"] * 2


def test_bench_load_sweep_prints_a_table_and_draws_it(tmp_path):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("name: tiny\nduration_s: 300\nradio: {preset: ShortFast}\n"
                    "nodes: {count: 4, placement: line, spacing_m: 5100}\n"
                    "traffic: {broadcast_interval_s: 60, unicast_interval_s: 60, start_s: 30, "
                    "stop_s: 240}\n")
    r = run("bench", "--load-sweep", str(tiny), "--seeds", "1", "--plot", str(tmp_path))
    assert "goodput" in r.output and "offered/h" in r.output
    assert len([x for x in r.output.splitlines() if x.endswith(("(channel)", "(duty cycle)"))]) \
        == 6
    assert (tmp_path / "load_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_load_sweep_for_some_routers_only(tmp_path):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("name: tiny\nduration_s: 120\nradio: {preset: ShortFast}\n"
                    "nodes: {count: 3, placement: line, spacing_m: 5100}\n"
                    "traffic: {broadcast_interval_s: 60, unicast_interval_s: 60, start_s: 10, "
                    "stop_s: 100}\n")
    r = run("bench", "--load-sweep", str(tiny), "--seeds", "1", "--routers", "pollen", "--json")
    out = json.loads(r.stdout)["load_sweep"]
    assert out["routers"] == ["pollen"]
    assert all(list(p["routers"]) == ["pollen"] for p in out["points"])
    for bad, word in (("pollen,nosuch", "'nosuch'"), ("pollen,pollen", "twice")):
        r = run("bench", "--load-sweep", str(tiny), "--routers", bad)
        assert r.exit_code == 2 and "--routers" in r.output and word in r.output, r.output
    r = run("bench", "--quick", "--routers", "pollen")
    assert r.exit_code == 2 and "--load-sweep only" in r.output, r.output
