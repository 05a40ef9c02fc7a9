import json
import math

import pytest

from pollen.airtime import PRESETS
from pollen_controller.topology import (
    DEFAULT_MODEL, SNR_FLOOR_DB, Link, PathLossModel, Topology, grid, ladder, line,
)

SF12_125K = PRESETS["LongSlow"]
SF7_250K = PRESETS["ShortFast"]


@pytest.mark.parametrize("distance_m, path_loss_db", [
    (0.5, 31.2),     # closer than d0 counts as d0
    (1.0, 31.2),
    (10.0, 58.2),
    (1000.0, 112.2),
])
def test_path_loss_log_distance(distance_m, path_loss_db):
    assert DEFAULT_MODEL.path_loss_db(distance_m) == pytest.approx(path_loss_db)


def test_rssi_noise_floor_and_snr_at_1_km():
    model = PathLossModel(tx_power_dbm=14.0, antenna_gain_dbi=2.0)
    assert model.rssi_dbm(1000.0) == pytest.approx(14.0 + 4.0 - 112.2)
    assert model.noise_floor_dbm(125000) == pytest.approx(-174.0 + 50.969 + 6.0, abs=1e-3)
    link = model.link(1000.0, SF12_125K)
    assert link.rssi_dbm == pytest.approx(-94.2)
    assert link.snr_db == pytest.approx(-94.2 - model.noise_floor_dbm(125000))


def test_sensitivity_matches_sx1276_datasheet_at_sf12_125k():
    assert DEFAULT_MODEL.sensitivity_dbm(SF12_125K) == pytest.approx(-137.0, abs=0.1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_link_exists_down_to_the_snr_floor_of_the_spreading_factor(name):
    preset = PRESETS[name]
    range_m = DEFAULT_MODEL.range_m(preset)
    edge = DEFAULT_MODEL.link(range_m * 0.999, preset)
    assert edge is not None
    assert edge.snr_db == pytest.approx(SNR_FLOOR_DB[preset[0]], abs=0.05)
    assert edge.rssi_dbm >= DEFAULT_MODEL.sensitivity_dbm(preset)
    assert DEFAULT_MODEL.link(range_m * 1.001, preset) is None


def test_slower_presets_reach_further():
    ranges_m = [DEFAULT_MODEL.range_m(PRESETS[n]) for n in ("ShortFast", "MediumFast", "LongSlow")]
    assert ranges_m == sorted(ranges_m)
    assert 5000 < ranges_m[0] < ranges_m[-1] < 40000


def test_from_positions_links_are_symmetric_and_stronger_when_closer():
    topo = Topology.from_positions({1: (0, 0), 2: (100, 0), 3: (1000, 0), 4: (10**6, 0)})
    assert topo.link(1, 2) == topo.link(2, 1)
    assert topo.link(1, 2).rssi_dbm > topo.link(1, 3).rssi_dbm
    assert topo.neighbours(4) == []
    assert topo.hops(1, 4) is None
    assert topo.diameter() is None


def test_shadowing_is_seeded_and_symmetric():
    positions = {i: (i * 2000.0, 0.0) for i in range(1, 6)}
    a = Topology.from_positions(positions, shadowing_sigma_db=6.0, seed=7)
    b = Topology.from_positions(positions, shadowing_sigma_db=6.0, seed=7)
    plain = Topology.from_positions(positions)
    assert a == b
    assert a != plain
    for (tx, rx), link in a.links.items():
        assert a.link(rx, tx) == link


def test_line_default_spacing_hears_only_adjacent_nodes():
    topo = line(5, first_id=0x10)
    assert topo.node_ids == [0x10, 0x11, 0x12, 0x13, 0x14]
    assert topo.neighbours(0x12) == [0x11, 0x13]
    assert topo.hops(0x10, 0x14) == 4
    assert topo.diameter() == 4


def test_line_with_explicit_spacing():
    topo = line(4, spacing_m=10.0)   # everyone hears everyone
    assert topo.diameter() == 1
    assert topo.positions[4] == (30.0, 0.0)


def test_grid_default_spacing_hears_the_eight_around():
    topo = grid(3, 3)
    assert topo.neighbours(5) == [1, 2, 3, 4, 6, 7, 8, 9]   # centre
    assert topo.neighbours(1) == [2, 4, 5]
    assert topo.diameter() == 2


@pytest.mark.parametrize("preset_name", ["ShortFast", "LongSlow"])
@pytest.mark.parametrize("cols, rows", [(2, 2), (4, 2), (5, 3), (3, 1)])
def test_ladder_hears_own_and_adjacent_columns_only(preset_name, cols, rows):
    topo = ladder(cols, rows, preset=PRESETS[preset_name])
    column = {n: (n - 1) // rows for n in topo.node_ids}
    assert len(topo.node_ids) == cols * rows
    for a in topo.node_ids:
        expected = [b for b in topo.node_ids if b != a and abs(column[a] - column[b]) <= 1]
        assert topo.neighbours(a) == expected
    assert topo.diameter() == cols - 1
    assert topo.hops(1, cols * rows) == cols - 1


def test_ladder_diagonals_are_weaker_than_rungs():
    topo = ladder(3, 2)
    # 1,2 in column 0; 3,4 in column 1
    assert topo.link(1, 2).rssi_dbm > topo.link(1, 3).rssi_dbm > topo.link(1, 4).rssi_dbm
    assert topo.link(1, 4).snr_db > SNR_FLOOR_DB[SF7_250K[0]]


def test_from_links_is_symmetric_and_positions_optional():
    topo = Topology.from_links([1, 2, 3], [(1, 2, -80, 5.5), (2, 3, -100.5, -3)])
    assert topo.link(2, 1) == Link(-80.0, 5.5)
    assert topo.link(3, 2) == Link(-100.5, -3.0)
    assert topo.link(1, 3) is None
    assert topo.positions == {1: None, 2: None, 3: None}
    assert topo.hops(1, 3) == 2
    assert topo.hops(2, 2) == 0


def test_set_link_cuts_and_restores():
    topo = line(3)
    saved = topo.link(1, 2)
    topo.set_link(1, 2, None)
    assert topo.hops(1, 3) is None
    topo.set_link(1, 2, saved)
    assert topo.hops(1, 3) == 2
    topo.set_link(2, 3, None, symmetric=False)
    assert topo.link(2, 3) is None and topo.link(3, 2) is not None


def test_bad_node_ids_are_rejected():
    with pytest.raises(ValueError):
        Topology({2**32: None})
    with pytest.raises(ValueError):
        Topology({-1: None})
    with pytest.raises(KeyError):
        Topology.from_links([1, 2], [(1, 3, -90, 0)])
    with pytest.raises(ValueError):
        Topology.from_links([1], [(1, 1, -90, 0)])


@pytest.mark.parametrize("topo", [
    ladder(4, 2, first_id=0xA0000001),
    Topology.from_links([1, 2, 3], [(1, 2, -80, 5.5)]),
    Topology.from_positions({7: (1.5, -2.25), 0xFFFFFFFF: (3000, 0)}),
], ids=["ladder", "links-no-positions", "positions"])
def test_dict_round_trip_through_json(topo):
    data = json.loads(json.dumps(topo.to_dict()))
    again = Topology.from_dict(data)
    assert again == topo
    assert again.diameter() == topo.diameter()
    assert all(math.isfinite(d["rssi_dbm"]) for d in data["links"])
