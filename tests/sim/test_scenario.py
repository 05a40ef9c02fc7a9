"""Scenario files: loading, validation, and what they generate."""
import math

import pytest

from pollen.settings import Settings
from pollen_controller.sim.fields import ScenarioError
from pollen_controller.sim.scenario import (
    BROADCAST, ROUTER_KEYS, Scenario, list_scenarios, load_scenario, node_ids,
)
from pollen_controller.topology import Topology

STANDARD = ["city-200", "grid-50", "grid-50-failures", "line-10", "longfast-30",
            "villages-mule"]


def small(**over):
    # a valid scenario as a dict; keyword arguments replace top-level sections
    d = {"name": "small", "seed": 7, "duration_s": 1200,
         "nodes": {"count": 12, "placement": "random", "area_m": [3000, 2000]},
         "traffic": {"broadcast_interval_s": 120, "unicast_interval_s": 240,
                     "payload_bytes": [10, 60]},
         "mobility": [{"kind": "random_waypoint", "count": 3, "speed_mps": [1, 2],
                       "pause_s": 30}],
         "failures": [{"node": 2, "off_s": 300, "on_s": 600},
                      {"fraction": 0.25, "mean_downtime_s": 200}]}
    d.update(over)
    return d


def links(sc):
    # the links without shadowing between the placed nodes, at their start positions
    pos = sc.initial_positions()
    return Topology.from_positions({n: pos[n] for n in sc.placed_ids}, sc.preset,
                                   sc.path_loss_model())


# --- the standard set ----------------------------------------------------------

def test_the_standard_set_is_there():
    assert set(STANDARD) <= set(list_scenarios())


@pytest.mark.parametrize("name", STANDARD)
def test_standard_scenario_loads_and_generates(name):
    sc = load_scenario(name)
    assert sc.name == name
    ids = sc.node_ids
    assert list(ids) == sorted(set(ids)) and all(n & 0xFF for n in ids)
    assert set(sc.initial_positions()) == set(ids)
    traffic = sc.traffic()
    assert traffic and traffic == sorted(traffic)
    for t_ms, src, dest, size in traffic:
        assert sc.traffic_start_s * 1000 <= t_ms < sc.traffic_stop_s * 1000
        assert src in sc.placed_ids and src != dest
        assert dest == BROADCAST or dest in sc.placed_ids
        assert sc.payload_bytes[0] <= size <= sc.payload_bytes[1]
    assert sc.failures() == sorted(sc.failures())
    # what the engine builds from it: valid node settings for pollen
    settings = {k: v for k, v in sc.router_settings.items() if k != "role"}
    Settings({"node_id": ids[-1], "network_key": "00" * 32, "region": sc.region,
              "preset": sc.preset_name, **settings})


def test_line_10_hears_only_neighbours():
    sc = load_scenario("line-10")
    topo = links(sc)
    ids = sc.placed_ids
    for i, n in enumerate(ids):
        assert topo.neighbours(n) == [m for m in ids[max(0, i - 1):i + 2] if m != n]


def test_grid_50_paths_fit_the_hop_limit():
    sc = load_scenario("grid-50")
    assert len(sc.node_ids) == 50
    assert links(sc).diameter() <= 6   # the default hop limit


def test_city_200_is_multi_hop_with_community_traffic():
    sc = load_scenario("city-200")
    assert 2 <= links(sc).diameter() <= 6
    traffic = sc.traffic()
    posts = sum(1 for t in traffic if t[2] == BROADCAST)
    window_s = sc.traffic_stop_s - sc.traffic_start_s
    assert (sc.broadcast_interval_s, sc.unicast_interval_s) == (3600, 3600)
    expected = 200 * window_s / 3600
    assert abs(posts - expected) < 4 * math.sqrt(expected)   # Poisson, 4 sigma
    assert abs(len(traffic) - posts - expected) < 4 * math.sqrt(expected)


def test_villages_are_out_of_range_and_the_mule_visits_each():
    sc = load_scenario("villages-mule")
    topo = links(sc)
    for (a, b) in topo.links:
        assert sc.cluster_of[a] == sc.cluster_of[b]
    (mule_id,) = sc.extra_ids
    mule = sc.movers()[mule_id]
    visited = set()
    for t_ms in range(0, int(sc.duration_s * 1000), 60000):
        x, y = mule.position(t_ms)
        for c, centre in enumerate(sc.cluster_centres_m):
            if math.dist((x, y), centre) <= sc.radius_m:
                visited.add(c)
    assert visited == {0, 1, 2}
    unicasts = [t for t in sc.traffic() if t[2] != BROADCAST]
    assert unicasts and all(sc.cluster_of[s] != sc.cluster_of[d] for _, s, d, _ in unicasts)
    assert all(mule_id not in (s, d) for _, s, d, _ in sc.traffic())


def test_failures_example_is_sorted_and_paired():
    sc = load_scenario("grid-50-failures")
    events = sc.failures()
    assert events == sorted(events)
    state = {}
    for t_ms, n, what in events:
        assert state.get(n, "on") != what   # off, on, off, ... per node
        state[n] = what
    assert state[15] == "off"                # never comes back
    randomly = {n for _, n, _ in events} - {15, 25, 26}
    assert len(randomly) == 5                # a tenth of 50


# --- invalid files -------------------------------------------------------------

VALID = """\
name: t
duration_s: 600
nodes: {count: 5, placement: line, spacing_m: 1000}
"""


@pytest.mark.parametrize("extra, field, says", [
    ("colour: red\n", "colour", "unknown"),
    ("traffic: {broadcast_interval_s: -3}\n", "traffic.broadcast_interval_s",
     "expected a number >= 0, got -3"),
    ("traffic: {unicast_interval_s: often}\n", "traffic.unicast_interval_s", "got 'often'"),
    ("traffic: {payload_bytes: 300}\n", "traffic.payload_bytes", "1..231"),
    ("traffic: {start_s: 100, stop_s: 50}\n", "traffic.stop_s", "after start_s"),
    ("traffic: {sender: everyone}\n", "traffic.sender", "unknown"),
    ("radio: {preset: VeryFast}\n", "radio.preset", "one of ShortFast"),
    ("radio: {region: US915}\n", "radio.preset", "dwell"),
    ("radio: {tx_power_dbm: 27}\n", "radio.tx_power_dbm", "<= 14"),
    ("pathloss: {exponent: 0}\n", "pathloss.exponent", "> 0"),
    ("pathloss: {shadowing_sigma_db: -1}\n", "pathloss.shadowing_sigma_db", ">= 0"),
    ("router: {hop_limit: 9}\n", "router.hop_limit", "1..7"),
    ("router: {network_key: x}\n", "router.network_key", "unknown"),
    ("router: {role: boss}\n", "router.role", "client, router"),
    ("seed: 1.5\n", "seed", "an integer"),
    ("mobility: [{kind: teleport}]\n", "mobility[0].kind", "random_waypoint, mule"),
    ("mobility: [{kind: mule, path: [0, 1], speed_mps: 10}]\n", "mobility[0].path[0]",
     "no clusters"),
    ("mobility: [{kind: random_waypoint, nodes: [9], speed_mps: 1}]\n",
     "mobility[0].nodes", "node id"),
    ("failures: [{node: 3, off_s: 100, on_s: 50}]\n", "failures[0].on_s", "> 100"),
    ("failures: [{fraction: 1.5, mean_downtime_s: 60}]\n", "failures[0].fraction", "0..1"),
    ("failures: [{node: 256, off_s: 10}]\n", "failures[0].node", "node id"),
    # file scenarios: files, link failures, frame loss
    ("files: oops\n", "files", "a list of files"),
    ("files: [{seeder: 9, size_bytes: 10, fetchers: [2]}]\n", "files[0].seeder", "node id"),
    ("files: [{size_bytes: 10, fetchers: [2]}]\n", "files[0].seeder", "a node id"),
    ("files: [{seeder: 1, size_bytes: 0, fetchers: [2]}]\n", "files[0].size_bytes", ">= 1"),
    ("files: [{seeder: 1, size_bytes: 70000, fetchers: [2]}]\n", "files[0].size_bytes",
     "1..65536 (router.max_file_bytes 65536"),
    ("router: {max_file_bytes: 2048}\nfiles: [{seeder: 1, size_bytes: 4096, fetchers: [2]}]\n",
     "files[0].size_bytes", "1..2048"),
    ("files: [{seeder: 1, size_bytes: 10}]\n", "files[0].fetchers", "a list of node ids"),
    ("files: [{seeder: 1, size_bytes: 10, fetchers: []}]\n", "files[0].fetchers",
     "a list of node ids"),
    ("files: [{seeder: 1, size_bytes: 10, fetchers: [2, 1]}]\n", "files[0].fetchers[1]",
     "other than the seeder"),
    ("files: [{seeder: 1, size_bytes: 10, fetchers: [2, 2]}]\n", "files[0].fetchers[1]",
     "named once"),
    ("files: [{seeder: 1, size_bytes: 10, fetchers: [6]}]\n", "files[0].fetchers[0]", "node id"),
    ("files: [{seeder: 1, size_bytes: 10, fetchers: [2], share_at_s: 100, fetch_at_s: 50}]\n",
     "files[0].fetch_at_s", ">= 100"),
    ("files: [{seeder: 1, size_bytes: 10, fetchers: [2], fetch_at_s: 600}]\n",
     "files[0].fetch_at_s", "before duration_s"),
    ("files: [{seeder: 1, size_bytes: 10, fetchers: [2], name: ''}]\n", "files[0].name",
     "text of 1..64 bytes"),
    ("files: [{seeder: 1, size_bytes: 10, fetchers: [2], colour: red}]\n", "files[0].colour",
     "unknown"),
    ("failures: [{link: [1, 9], off_s: 10}]\n", "failures[0].link[1]", "node id"),
    ("failures: [{link: [2, 2], off_s: 10}]\n", "failures[0].link", "two different node ids"),
    ("failures: [{link: [1, 2], off_s: 10, node: 3}]\n", "failures[0].node", "unknown"),
    ("failures: [{link: [1, 2], off_s: 10, on_s: 50}, {link: [2, 1], off_s: 20}]\n",
     "failures[1].off_s", "outside link 1-2's other failure"),
    ("pathloss: {frame_loss: 1}\n", "pathloss.frame_loss", "0..0.9"),
    ("pathloss: {capture: strongest}\n", "pathloss.capture",
     "one of lock-first, calibrated, power-only"),
    ("pathloss: {interference_db: -1}\n", "pathloss.interference_db", "0..30"),
    # spammers
    ("spam: {count: 9}\n", "spam.count", "0..5"),
    ("spam: {kind: flood}\n", "spam.kind", "one of post, msg, both"),
    ("spam: {nodes: [2, 7]}\n", "spam.nodes[1]", "a placed node id"),
    ("spam: {nodes: [2, 2]}\n", "spam.nodes[1]", "named once"),
    ("spam: {nodes: [2], count: 2}\n", "spam.count", "1 (the number of nodes)"),
    ("spam: {payload_bytes: 300}\n", "spam.payload_bytes", "1..231"),
    ("spam: {rate: 3}\n", "spam.rate", "unknown"),
])
def test_invalid_field_is_named(tmp_path, extra, field, says):
    path = tmp_path / "bad.yaml"
    path.write_text(VALID + extra)
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert str(e.value).startswith(f"scenario 'bad.yaml': field '{field}': ")
    assert says in str(e.value)


@pytest.mark.parametrize("nodes, field, says", [
    ("{count: 5, placement: hexagon}", "nodes.placement", "one of random, grid"),
    ("{count: -1, placement: line, spacing_m: 5}", "nodes.count", ">= 1"),
    ("{count: 5, placement: random}", "nodes.area_m", "[width_m, height_m]"),
    ("{count: 5, placement: random, area_m: [10, -1]}", "nodes.area_m", "> 0"),
    ("{count: 5, placement: grid, spacing_m: 5, area_m: [1, 1]}", "nodes.area_m",
     "not used by placement 'grid'"),
    ("{count: 2, placement: clusters, clusters: 3, spacing_m: 100}", "nodes.count",
     "one node per cluster"),
    ("{placement: explicit, positions_m: [[0, 0], [5]]}", "nodes.positions_m[1]", "[x_m, y_m]"),
])
def test_invalid_placement_is_named(tmp_path, nodes, field, says):
    path = tmp_path / "bad.yaml"
    path.write_text(f"duration_s: 60\nnodes: {nodes}\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert str(e.value).startswith(f"scenario 'bad.yaml': field '{field}': ")
    assert says in str(e.value)


def test_unreadable_files(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("nodes: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ScenarioError, match="expected a mapping"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="not found .*city-200"):
        load_scenario("no-such-scenario")


def test_router_keys_are_settings_and_role():
    assert "hop_limit" in ROUTER_KEYS and "role" in ROUTER_KEYS
    assert not {"node_id", "network_key", "name", "region", "preset"} & set(ROUTER_KEYS)


# --- determinism ---------------------------------------------------------------

def snapshot(sc):
    movers = {n: m.waypoints for n, m in sc.movers().items()}
    return sc.initial_positions(), sc.traffic(), movers, sc.failures()


def test_same_seed_same_everything():
    assert snapshot(Scenario(small())) == snapshot(Scenario(small()))


def test_other_seed_differs_in_everything():
    a, b = snapshot(Scenario(small())), snapshot(Scenario(small(seed=8)))
    for part_a, part_b in zip(a, b):
        assert part_a != part_b


def test_with_seed_is_the_scenario_with_that_seed():
    a = Scenario(small())
    assert snapshot(a.with_seed(8)) == snapshot(Scenario(small(seed=8)))
    assert snapshot(a.with_seed(8)) == snapshot(a.with_seed(8))
    assert snapshot(a.with_seed(7)) == snapshot(a)   # its own seed: the same
    assert a.with_seed(8).seed == 8 and a.seed == 7
    with pytest.raises(ScenarioError, match="field 'seed': expected an integer"):
        a.with_seed("8")


def test_with_seed_keeps_fixed_placements_and_redraws_traffic():
    # grid, line and explicit placements are fixed by construction; random and
    # cluster ones are drawn from the seed, cluster centres are not
    for nodes in ({"count": 9, "placement": "grid", "spacing_m": 500},
                  {"count": 5, "placement": "line", "spacing_m": 500},
                  {"placement": "explicit", "positions_m": [[0, 0], [300, 0], [0, 400]]}):
        sc = Scenario(small(nodes=nodes, mobility=[], failures=[]))
        other = sc.with_seed(99)
        assert other.initial_positions() == sc.initial_positions()
        assert other.traffic() != sc.traffic()
    sc = Scenario(small(nodes={"count": 9, "placement": "clusters", "clusters": 3,
                               "spacing_m": 3000}, mobility=[], failures=[]))
    other = sc.with_seed(99)
    assert other.cluster_centres_m == sc.cluster_centres_m
    assert other.initial_positions() != sc.initial_positions()


def test_with_seed_and_with_nodes_compose():
    sc = Scenario(small())
    assert snapshot(sc.with_nodes(20).with_seed(3)) == snapshot(sc.with_seed(3).with_nodes(20))


# --- what is generated ---------------------------------------------------------

def test_node_ids_skip_a_zero_low_byte():
    ids = node_ids(300)
    assert ids[:2] == [1, 2] and 256 not in ids and 512 not in ids
    assert len(ids) == 300 and ids[-1] == 301


def test_placements():
    def positions(nodes):
        return list(Scenario({"duration_s": 60, "nodes": nodes}).initial_positions().values())

    assert positions({"count": 3, "placement": "line", "spacing_m": 50}) == [
        (0, 0), (50, 0), (100, 0)]
    assert positions({"count": 5, "placement": "grid", "spacing_m": 10, "columns": 2}) == [
        (0, 0), (10, 0), (0, 10), (10, 10), (0, 20)]
    assert positions({"placement": "explicit", "positions_m": [[1, 2], [3, 4]]}) == [
        (1, 2), (3, 4)]
    for x, y in positions({"count": 40, "placement": "random", "area_m": [300, 100]}):
        assert 0 <= x <= 300 and 0 <= y <= 100


def test_clusters_spread_nodes_and_keep_spacing():
    sc = Scenario({"duration_s": 60, "nodes": {"count": 10, "placement": "clusters",
                                               "clusters": 3, "radius_m": 100,
                                               "spacing_m": 2000}})
    sizes = [list(sc.cluster_of.values()).count(c) for c in range(3)]
    assert sizes == [4, 3, 3]
    c = sc.cluster_centres_m
    for i in range(3):
        assert math.dist(c[i], c[(i + 1) % 3]) == pytest.approx(2000)
    for n, (x, y) in sc.initial_positions().items():
        assert math.dist((x, y), c[sc.cluster_of[n]]) <= 100


def test_far_destinations_are_in_the_farthest_third():
    sc = Scenario({"duration_s": 600, "nodes": {"count": 10, "placement": "line",
                                                "spacing_m": 10},
                   "traffic": {"unicast_interval_s": 30, "unicast_dest": "far"}})
    traffic = sc.traffic()
    assert len({src for _, src, _, _ in traffic}) == 10
    for _, src, dest, size in traffic:
        others = sorted((n for n in range(1, 11) if n != src), key=lambda n: -abs(n - src))
        assert dest in others[:3]
        assert size == 40


def test_with_nodes_keeps_density():
    sc = Scenario(small())
    big = sc.with_nodes(48)
    assert len(big.node_ids) == 48 and big.area_m == pytest.approx((6000, 4000))
    fixed = Scenario(small(nodes={"count": 12, "placement": "random", "area_m": [30, 20],
                                  "scale_area": False})).with_nodes(48)
    assert fixed.area_m == (30, 20)
    assert load_scenario("longfast-30").with_nodes(80).area_m == (15000, 15000)
    assert sc.with_nodes(12).initial_positions() == sc.initial_positions()
    villages = load_scenario("villages-mule").with_nodes(61)
    assert [list(villages.cluster_of.values()).count(c) for c in range(3)] == [21, 20, 20]
    assert villages.extra_ids == [62]
    grid = load_scenario("grid-50").with_nodes(200)
    assert grid.columns == 20 and len(grid.node_ids) == 200


def test_with_nodes_refuses_what_cannot_scale():
    with pytest.raises(ScenarioError, match=r"'failures\[0\]\.node'"):
        Scenario(small(traffic={}, mobility=[])).with_nodes(1)   # node 2 fails at 300 s
    explicit = Scenario({"duration_s": 60, "nodes": {"placement": "explicit",
                                                     "positions_m": [[0, 0], [1, 1]]}})
    with pytest.raises(ScenarioError, match="'nodes.count'"):
        explicit.with_nodes(3)
    with pytest.raises(ScenarioError, match="'nodes.count'"):
        explicit.with_nodes(0)


def test_random_waypoint_movers_move_from_their_start():
    sc = Scenario(small())
    movers = sc.movers()
    assert len(movers) == 3
    start = sc.initial_positions()
    for n, m in movers.items():
        assert m.position(0) == start[n]
        seen = {m.position(t_ms) for t_ms in range(0, 1200000, 60000)}
        assert len(seen) > 5
        for x, y in seen:
            assert 0 <= x <= 3000 and 0 <= y <= 2000
        times = [w[0] for w in m.waypoints]
        assert times == sorted(times) and times[-1] >= 1200000


def test_mule_goes_round_its_points_and_pauses():
    sc = Scenario({"duration_s": 1000, "nodes": {"count": 2, "placement": "line",
                                                 "spacing_m": 10},
                   "mobility": [{"kind": "mule", "path": [[0, 0], [100, 0]],
                                 "speed_mps": 10, "pause_s": 20}]})
    assert sc.extra_ids == [3] and sc.initial_positions()[3] == (0, 0)
    m = sc.movers()[3]
    assert m.position(10000) == (0, 0)           # pausing at the first point
    assert m.position(25000) == (50, 0)          # half way
    assert m.position(35000) == (100, 0)         # pausing at the second
    assert m.position(55000) == (50, 0)          # on its way back
    assert m.position(70000) == (0, 0)           # pausing at the first again
    assert m.position(85000) == (50, 0)          # round again


def test_failures_sorted_and_random_ones_drawn_once_per_node():
    sc = Scenario(small())
    events = sc.failures()
    assert events == sorted(events)
    assert (300000, 2, "off") in events and (600000, 2, "on") in events
    offs = [n for _, n, what in events if what == "off"]
    assert len(offs) == len(set(offs)) == 1 + 3   # node 2 and a quarter of 12
    for t_ms, n, what in events:
        if what == "off" and n != 2:
            assert sc.traffic_start_s * 1000 <= t_ms < sc.traffic_stop_s * 1000


def test_spammers_send_at_their_duty_limit_instead_of_their_traffic():
    sc = Scenario(small(spam={"count": 2, "kind": "both"}))
    spammers = sc.spammers()
    assert len(spammers) == 2 and spammers == Scenario(small(spam={"count": 2})).spammers()
    assert not any(src in spammers for _, src, _, _ in sc.traffic())
    # the others' traffic is what it is without spammers
    honest = [m for m in Scenario(small()).traffic() if m[1] not in spammers]
    assert sc.traffic() == honest
    spam = sc.spam()
    interval = sc.spam_interval_ms()   # EU868 1 %: a 64-byte LongFast frame every ~70 s
    assert 60000 < interval < 80000
    for n in spammers:
        times = [t for t, src, _, _ in spam if src == n]
        assert all(b - a == interval for a, b in zip(times, times[1:]))
        assert sc.traffic_start_s * 1000 <= times[0] < sc.traffic_stop_s * 1000
    kinds = {dest == 0xFFFFFFFF for _, _, dest, _ in spam}
    assert kinds == {True, False}   # posts and messages in turn
    assert {size for *_, size in spam} == {40}
    # --spam: the scenario with N spammers from its seed; 0: none
    assert Scenario(small()).with_spam(2).spammers() == spammers
    assert sc.with_spam(0).spam() == [] and sc.with_spam(kind="post").spammers() == spammers
    assert sc.with_seed(8).spammers() != spammers or sc.with_seed(9).spammers() != spammers
