"""File scenarios in the simulator: the files section, frame loss and link cuts
in the channel, the file metrics, `pollen sim --separate` and `pollen bench
--files`, and the issue's targets for files (docs/simulator.md)."""
import json
import math

import pytest
from click.testing import CliRunner

from pollen import wire
from pollen.airtime import PRESETS, preset_time_on_air_us
from pollen_controller.cli.main import main
from pollen_controller.sim import bench
from pollen_controller.sim.channel import Channel
from pollen_controller.sim.engine import Simulation, simulate
from pollen_controller.sim.fields import ScenarioError
from pollen_controller.sim.scenario import Scenario, load_scenario
from pollen_controller.topology import PathLossModel

SF7 = PRESETS["ShortFast"]
RANGE_M = PathLossModel().range_m(SF7)
FILE_KEYS = ("file_fetches", "file_fetched", "file_failed", "file_completion", "file_seconds",
             "file_airtime_ms", "file_lower_bound_ms", "file_airtime_ratio",
             "file_catalog_airtime_share", "files_not_shared", "file_not_started",
             "file_not_applicable")
FETCH_TYPES = (wire.WANT, wire.CHUNK, wire.PART)


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def small(files=(), **top):
    d = {"name": "f", "seed": 3, "duration_s": 600, "radio": {"preset": "ShortFast"},
         "nodes": {"count": 4, "placement": "line", "spacing_m": 5100}, "files": list(files)}
    d.update(top)
    return d


# --- the files section ---------------------------------------------------------

def test_files_are_drawn_from_the_seed_with_their_times():
    one = {"seeder": 1, "size_bytes": 1000, "fetchers": [3, 4], "share_at_s": 30,
           "fetch_at_s": 90}
    (f,) = Scenario(small([one])).files()
    assert (f.index, f.name, f.seeder, f.size_bytes, f.fetchers) == (0, "file0.bin", 1, 1000, (3, 4))
    assert (f.share_ms, f.fetch_ms) == (30000, 90000)
    assert len(f.data) == 1000 and f.data == Scenario(small([one])).files()[0].data
    assert Scenario(small([one], seed=4)).files()[0].data != f.data
    two = Scenario(small([one, dict(one, name="b.txt")])).files()
    assert two[1].name == "b.txt" and two[1].data != two[0].data   # each file its own bytes
    # defaults: shared when traffic may start (60 s), fetched a minute later
    (d,) = Scenario(small([{"seeder": 2, "size_bytes": 10, "fetchers": [1]}])).files()
    assert (d.share_ms, d.fetch_ms) == (60000, 120000)


def test_link_failures_are_sorted_and_leave_node_failures_alone():
    sc = Scenario(small(failures=[{"link": [3, 2], "off_s": 100, "on_s": 200},
                                  {"link": [1, 2], "off_s": 50},
                                  {"node": 4, "off_s": 10, "on_s": 20}]))
    assert sc.link_failures() == [(50000, 1, 2, "off"), (100000, 2, 3, "off"),
                                  (200000, 2, 3, "on")]
    assert sc.failures() == [(10000, 4, "off"), (20000, 4, "on")]


def test_with_single_fetch_keeps_one_file_and_one_fetcher():
    files = [{"seeder": 1, "size_bytes": 100, "fetchers": [3, 4]},
             {"seeder": 2, "size_bytes": 200, "fetchers": [4]}]
    sc = Scenario(small(files))
    (f,) = sc.with_single_fetch(0, 4).files()
    assert (f.seeder, f.fetchers, f.data) == (1, (4,), sc.files()[0].data)
    with pytest.raises(ScenarioError, match=r"files\[1\].fetchers"):
        sc.with_single_fetch(1, 3)


# --- the channel: frame loss and cut links ---------------------------------------

def _line(n):
    return {i + 1: (i * 0.6 * RANGE_M, 0.0) for i in range(n)}


def test_frame_loss_drops_that_share_of_receptions_and_counts_them():
    for loss in (0.0, 0.3):
        ch = Channel(_line(2), SF7, frame_loss=loss, seed=5)
        got = 0
        for i in range(2000):
            got += len(ch.end(ch.begin(1, b"x" * 20, i * 100, i * 100 + 50)))
        assert ch.stats["lost_random"] == 2000 - got
        assert abs((2000 - got) / 2000 - loss) < 0.03, (loss, got)


def test_a_cut_link_carries_nothing_until_restored():
    ch = Channel(_line(3), SF7)
    ch.cut_link(3, 2)
    assert ch.neighbours(2) == [1] and ch.neighbours(3) == []
    assert 2 not in [rx for rx, *_ in ch.hearers(3)]       # not even interference
    tx = ch.begin(2, b"x" * 20, 0, 50)
    assert ch.sensing(tx) == [1] and [rx for rx, *_ in ch.end(tx)] == [1]
    ch.cut_link(2, 3, cut=False)
    assert ch.neighbours(2) == [1, 3] and ch.neighbours(3) == [2]
    assert [rx for rx, *_ in ch.end(ch.begin(3, b"x" * 20, 100, 150))] == [2]


# --- the metrics -----------------------------------------------------------------

class Tally(Simulation):
    """The engine with every frame's airtime also added up here, by type."""

    def _transmit(self, n, frame, t):
        self.by_type = getattr(self, "by_type", {})
        air_us = preset_time_on_air_us(len(frame), self.sc.preset)
        self.by_type[frame[0] & 0x0F] = self.by_type.get(frame[0] & 0x0F, 0) + air_us
        super()._transmit(n, frame, t)


def test_file_4hop_airtime_and_lower_bound_as_documented():
    sim = Tally(load_scenario("file-4hop"))
    r = sim.run()
    # 16384 bytes in 200-byte chunks: 82 chunks, 4 hops, one full chunk frame
    # is 16 header + 16 cid + 2 index + 200 data + 8 tag = 242 bytes
    assert r["file_lower_bound_ms"] == round(82 * 4 * preset_time_on_air_us(242, SF7) / 1000, 1)
    fetch_us = sum(sim.by_type.get(t, 0) for t in FETCH_TYPES)
    assert r["file_airtime_ms"] == round(fetch_us / 1000, 1)
    assert r["file_airtime_ratio"] == round(fetch_us / 1000 / r["file_lower_bound_ms"], 3)
    share = sim.by_type[wire.CATALOG] / sum(sim.by_type.values())
    assert r["file_catalog_airtime_share"] == round(share, 4) and 0 < share < 0.1
    assert (r["file_fetches"], r["file_fetched"], r["file_completion"]) == (1, 1, 1.0)
    assert 0 < r["file_seconds"]["p50"] == r["file_seconds"]["p95"] < 1800 - 120


def test_a_scenario_without_files_reports_no_file_metrics():
    r = simulate(Scenario(small(traffic={"broadcast_interval_s": 120})))
    assert r["file_fetches"] == 0 and r["file_completion"] is None
    assert r["file_airtime_ratio"] is None and r["file_catalog_airtime_share"] == 0.0


def test_a_fetcher_that_is_off_does_not_start_and_an_unshared_file_cannot_come():
    f = {"seeder": 1, "size_bytes": 600, "fetchers": [2, 3], "share_at_s": 30, "fetch_at_s": 60}
    r = simulate(Scenario(small([f], failures=[{"node": 3, "off_s": 50, "on_s": 70}])))
    assert (r["file_fetches"], r["file_not_started"], r["file_completion"]) == (1, 1, 1.0)
    r = simulate(Scenario(small([f], failures=[{"node": 1, "off_s": 20}])))
    assert r["files_not_shared"] == 1 and r["file_fetched"] == 0 and r["file_fetches"] == 2


# --- the targets (issue 5) --------------------------------------------------------

def test_file_4hop_within_twice_the_lower_bound_for_seeds_1_to_10():
    # the airtime target for every completed fetch; completion on (almost) every
    # seed as a floor against regressions: every time is test_every_fetch_completes
    incomplete = []
    for seed in range(1, 11):
        r = simulate(load_scenario("file-4hop"), seed=seed)
        if r["file_completion"] < 1:
            incomplete.append(seed)
            continue
        assert 1.0 < r["file_airtime_ratio"] <= 2.0, (seed, r["file_airtime_ratio"])
    assert len(incomplete) <= 1, incomplete


def test_three_fetchers_together_cost_less_airtime_than_three_fetches_alone():
    sc = load_scenario("file-swarm")
    comparable, per_fetched = [], []
    for seed in range(1, 11):
        s = bench.separate(sc, seed)
        assert [(x["file"], x["fetcher"]) for x in s["runs"]] == [(0, 4), (0, 5), (0, 6)]
        assert s["separate_airtime_ms"] == round(sum(x["file_airtime_ms"] for x in s["runs"]), 1)
        if s["comparable"]:
            comparable.append(s["ratio"])
        if s["per_fetched_ratio"] is not None:
            per_fetched.append(s["per_fetched_ratio"])
    # where every fetch completed both ways (few seeds: see test_every_fetch_completes)
    # the total is less; where only some did, the airtime per completed fetch
    # mostly is (not always: a failed fetch's airtime buys nothing)
    assert all(r < 1 for r in comparable), comparable
    assert per_fetched and sorted(per_fetched)[len(per_fetched) // 2] < 1, per_fetched


def test_partition_stalls_the_fetch_until_the_link_is_restored():
    sc = load_scenario("file-partition")
    (cut_ms, a, b, _), (healed_ms, *_) = sc.link_failures()
    completed = 0
    for seed in range(1, 11):
        sim = Simulation(sc, "pollen", seed)
        crossed = []
        end = sim.channel.end

        def watch(tx, end=end, crossed=crossed):
            got = end(tx)
            if cut_ms <= tx.start_ms < healed_ms and tx.sender in (a, b):
                crossed += [rx for rx, *_ in got if rx in (a, b)]
            return got

        sim.channel.end = watch
        r = sim.run()
        assert crossed == []
        if r["file_fetched"]:
            completed += 1
            ((start_ms, _, done_ms, _),) = sim.metrics.fetches.values()
            assert done_ms > healed_ms, seed   # it could not finish across the cut
    assert completed >= 1


@pytest.mark.parametrize("name, seeds", [("file-4hop", 40), ("file-swarm", 20),
                                         ("file-partition", 20)])
def test_every_fetch_completes(name, seeds):
    # the target: "completes every time"; seeds 1..seeds
    sc = load_scenario(name)
    assert [s for s in range(1, seeds + 1) if simulate(sc, seed=s)["file_completion"] < 1] == []


# --- the command line --------------------------------------------------------------

def test_sim_json_and_table_show_the_file_metrics():
    r = json.loads(run("sim", "file-4hop", "--json").output)
    for k in FILE_KEYS:
        assert k in r, k
    assert set(r["file_seconds"]) == {"p50", "p95"} and r["file_completion"] == 1.0
    out = run("sim", "file-4hop").output
    assert "file fetches           1/1 completed (100.0%)" in out
    assert "x the lower bound" in out and "catalog airtime share" in out


def test_sim_separate_compares_the_fetches_with_each_alone():
    r = json.loads(run("sim", "file-swarm", "--separate", "--json", "--seed", "8").output)
    s = r["file_separate"]
    assert [(x["file"], x["fetcher"]) for x in s["runs"]] == [(0, 4), (0, 5), (0, 6)]
    assert s["together_airtime_ms"] == r["file_airtime_ms"]
    assert s["ratio"] == round(s["together_airtime_ms"] / s["separate_airtime_ms"], 3)
    out = run("sim", "file-swarm", "--separate", "--seed", "8").output
    assert "together / separate" in out


def test_the_baseline_has_no_file_transfer_and_says_so():
    r = json.loads(run("sim", "file-4hop", "--router", "managed-flood", "--json").output)
    assert r["file_not_applicable"] == "managed-flood has no file transfer"
    assert r["file_fetches"] == 0 and r["file_completion"] is None
    assert "not applicable (managed-flood has no file transfer)" in run(
        "sim", "file-4hop", "--router", "managed-flood").output
    for args in (("file-swarm", "--router", "managed-flood"), ("line-10",)):
        res = CliRunner().invoke(main, ["sim", *args, "--separate"])
        assert res.exit_code != 0 and "--separate" in res.output


def test_bench_files_runs_each_file_scenario_over_the_seeds():
    res = CliRunner().invoke(main, ["bench", "--files", "--seeds", "2", "--json"])
    rows = json.loads(res.stdout.splitlines()[-1])["files"]
    assert [r["scenario"] for r in rows] == ["file-4hop", "file-swarm", "file-partition"]
    for r in rows:
        assert r["seeds"] == 2 and r["fetches"] == 2 * (3 if r["scenario"] == "file-swarm" else 1)
        assert set(r["file_seconds"]) == {"p50", "p95"}
        assert set(r["file_airtime_ratio"]) == {"min", "max"}
        assert (r["separate_ratio"] is None) == (r["scenario"] != "file-swarm")
    four = rows[0]
    assert four["fetched"] == 2 and math.isclose(four["file_completion"], 1.0)
