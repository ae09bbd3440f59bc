"""The selections beyond HeteroFL/FedRolex: random units, faster rolling, staggered (tiled) windows."""

from __future__ import annotations

import pytest
import torch

from fedledger.fl import ModelSpec, build_model, extract_submodel, initial_global_state, make_index_map
from fedledger.fl.submodel import IndexMap, select_units, tiled_offsets

MLP = ModelSpec("mlp", (6,), 3, (16, 12))


def _units(rate: float, selection: str, round_index: int, **kw: object) -> list[int]:
    return make_index_map(MLP, rate, selection, round_index, **kw).indices["layers.0.bias"][0].tolist()


def test_defaults_reproduce_static_and_one_unit_rolling():
    assert _units(0.25, "static", 7) == [0, 1, 2, 3]
    assert _units(0.25, "rolling", 14) == [0, 1, 14, 15]  # start 14, wraps after 15
    assert _units(0.25, "rolling", 14, step=None, offset=0.0) == _units(0.25, "rolling", 14)


def test_rolling_step_is_a_fraction_of_the_layer():
    # 16 units, step 1/4 -> 4 units per round; window of 4 units
    assert [_units(0.25, "rolling", r, step=0.25) for r in range(5)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
        [12, 13, 14, 15],
        [0, 1, 2, 3],
    ]
    # second layer (12 units, 3 per window) moves 3 units per round with the same fraction
    second = [make_index_map(MLP, 0.25, "rolling", r, step=0.25).indices["layers.1.bias"][0].tolist() for r in (0, 1)]
    assert second == [[0, 1, 2], [3, 4, 5]]


def test_offset_starts_the_window_and_static_offset_stays_put():
    assert _units(0.5, "static", 0, offset=0.5) == list(range(8, 16))
    assert _units(0.5, "static", 9, offset=0.5) == list(range(8, 16))
    assert _units(0.25, "rolling", 1, step=0.25, offset=0.75) == [0, 1, 2, 3]  # 12 + 4 wraps to 0


def test_tiled_offsets_lay_windows_end_to_end():
    assert tiled_offsets([1.0, 0.5, 0.5, 0.25, 0.125]) == [0.0, 0.0, 0.5, 0.0, 0.25]
    # the two half-width institutions cover complementary halves in every round
    offsets = tiled_offsets([1.0, 0.5, 0.5])
    for r in range(6):
        a = set(_units(0.5, "rolling", r, step=0.5, offset=offsets[1]))
        b = set(_units(0.5, "rolling", r, step=0.5, offset=offsets[2]))
        assert not a & b and a | b == set(range(16))


def test_random_is_deterministic_sized_sorted_and_varies():
    a = _units(0.25, "random", 3, salt=5)
    assert a == _units(0.25, "random", 3, salt=5)
    assert len(a) == 4 == len(set(a)) and a == sorted(a) and all(0 <= u < 16 for u in a)
    draws = {tuple(_units(0.25, "random", r, salt=5)) for r in range(20)}
    assert len(draws) > 10  # 1820 possible windows; 20 rounds repeat rarely
    assert {tuple(_units(0.25, "random", 3, salt=s)) for s in range(10)} != {tuple(a)}
    # two layers of the same map draw independently (salt mixed with the layer)
    spec = ModelSpec("mlp", (6,), 3, (16, 16))
    imap = make_index_map(spec, 0.25, "random", 0, salt=1)
    layers = [imap.indices[f"layers.{i}.bias"][0].tolist() for i in range(2)]
    assert layers[0] != layers[1]


def test_random_covers_every_unit_over_rounds():
    covered: set[int] = set()
    for r in range(40):
        covered |= set(_units(0.125, "random", r, salt=2))
    assert covered == set(range(16))


@pytest.mark.parametrize(
    "kw",
    [
        {"selection": "random", "salt": 1},
        {"selection": "rolling", "step": 0.25},
        {"selection": "rolling", "step": 0.25, "offset": 0.5},
        {"selection": "static", "offset": 0.5},
    ],
)
def test_digest_names_the_exact_indices(kw):
    selection = kw.pop("selection")
    imap = make_index_map(MLP, 0.25, selection, 3, **kw)
    same = make_index_map(MLP, 0.25, selection, 3, **kw)
    assert imap.digest() == same.digest()
    assert IndexMap.from_json(imap.to_json()) == imap
    assert make_index_map(MLP, 0.25, "static", 0).digest() != imap.digest()
    other_round = make_index_map(MLP, 0.25, selection, 4, **kw)
    if selection != "static":
        assert other_round.digest() != imap.digest()


def test_scattered_random_sub_state_is_the_mapped_block_and_trains_in_place():
    g = initial_global_state(MLP, 0)
    sub, imap = extract_submodel(g, MLP, 0.25, "random", 2, salt=9)
    build_model(MLP, 0.25).load_state_dict(sub, strict=True)
    rows, cols = imap.indices["layers.1.weight"]
    assert torch.equal(sub["layers.1.weight"], g["layers.1.weight"][rows][:, cols])
    assert torch.equal(sub["head.weight"], g["head.weight"][:, rows])


@pytest.mark.parametrize(
    "kw", [{"offset": 1.0}, {"offset": -0.1}, {"step": 0.0}, {"step": 1.5}, {"selection": "shuffle"}]
)
def test_bad_selection_knobs_are_refused(kw):
    selection = kw.pop("selection", "rolling")
    with pytest.raises(ValueError):
        select_units(16, 4, selection, 0, **kw)
