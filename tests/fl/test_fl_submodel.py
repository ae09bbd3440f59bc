"""Sub-model extraction, selections and the mapping's serialisation and digest."""

from __future__ import annotations

import pytest
import torch
from gmssl import sm3 as gmssl_sm3

from fedledger.fl import IndexMap, ModelSpec, build_model, extract_submodel, initial_global_state, make_index_map
from fedledger.fl.models import parameter_shapes, scaled_width

CNN = ModelSpec("cnn", (3, 12, 12), 4, (8, 12))
MLP = ModelSpec("mlp", (6,), 3, (10, 7))


@pytest.mark.parametrize(
    ("channels", "rate", "expected"), [(64, 0.125, 8), (10, 0.25, 3), (3, 1 / 3, 1), (7, 1.0, 7), (5, 0.01, 1)]
)
def test_width_is_ceil_of_rate_times_channels(channels, rate, expected):
    assert scaled_width(channels, rate) == expected


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.5])
def test_bad_rates_are_refused(rate):
    with pytest.raises(ValueError, match=r"width rate"):
        build_model(MLP, rate)


def test_input_and_output_layers_keep_their_size():
    shapes = parameter_shapes(CNN, 0.25)
    assert shapes["layers.0.weight"] == (2, 3, 3, 3)  # 3 input channels kept
    assert shapes["layers.1.weight"] == (3, 2, 3, 3)
    assert shapes["head.weight"] == (4, 3)  # 4 classes kept


@pytest.mark.parametrize("spec", [CNN, MLP])
@pytest.mark.parametrize("selection", ["static", "rolling"])
def test_extracted_sub_state_is_the_mapped_block_and_loads(spec, selection):
    g = initial_global_state(spec, 0)
    sub, imap = extract_submodel(g, spec, 0.5, selection, 9)
    model = build_model(spec, 0.5)
    model.load_state_dict(sub, strict=True)  # shapes fit the sub-model exactly
    w = g["layers.1.weight"]
    rows, cols = imap.indices["layers.1.weight"][:2]
    assert torch.equal(sub["layers.1.weight"], w[rows][:, cols])
    assert imap.indices["layers.1.weight"][1].tolist() == imap.indices["layers.0.bias"][0].tolist()


def test_static_is_prefix_and_rolling_shifts_each_round():
    static = make_index_map(MLP, 0.3, "static", 5).indices["layers.0.bias"][0]
    assert static.tolist() == [0, 1, 2]
    windows = [make_index_map(MLP, 0.3, "rolling", r).indices["layers.0.bias"][0].tolist() for r in (0, 1, 8, 9, 10)]
    assert windows == [[0, 1, 2], [1, 2, 3], [0, 8, 9], [0, 1, 9], [0, 1, 2]]
    # over C rounds every unit is covered by the rolling window
    covered = set()
    for r in range(10):
        covered |= set(make_index_map(MLP, 0.3, "rolling", r).indices["layers.0.bias"][0].tolist())
    assert covered == set(range(10))


def test_full_width_map_covers_everything():
    imap = make_index_map(MLP, 1.0, "rolling", 3)
    assert imap.is_full()
    assert not make_index_map(MLP, 0.5).is_full()


def test_index_map_json_round_trip_and_digest():
    imap = make_index_map(CNN, 0.25, "rolling", 5)
    text = imap.to_json()
    again = IndexMap.from_json(text)
    assert again == imap and again.to_json() == text
    assert imap.digest() == bytes.fromhex(gmssl_sm3.sm3_hash(list(text.encode())))  # independent SM3
    assert len(imap.digest()) == 32
    assert make_index_map(CNN, 0.25, "rolling", 6).digest() != imap.digest()
    assert make_index_map(CNN, 0.25, "static", 5).digest() != imap.digest()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(width_rate=0),
        lambda d: d["tensors"]["head.weight"].update(indices=[None, [0, 0]]),
        lambda d: d["tensors"]["head.weight"].update(indices=[None, [0, 99]]),
        lambda d: d["tensors"]["head.weight"].update(indices=[None]),
        lambda d: d["tensors"]["head.weight"].update(indices=[None, []]),
        lambda d: d["tensors"]["head.weight"].pop("global_shape"),
    ],
)
def test_malformed_index_maps_are_refused(mutate):
    data = make_index_map(CNN, 0.25).to_dict()
    mutate(data)
    with pytest.raises(ValueError):
        IndexMap.from_dict(data)


def test_spec_json_round_trip():
    assert ModelSpec.from_json(CNN.to_json()) == CNN
    with pytest.raises(ValueError):
        ModelSpec.from_json('{"family": "rnn", "input_shape": [3], "num_classes": 2, "hidden": [4]}')
    with pytest.raises(ValueError):
        ModelSpec.from_json('{"family": "mlp"}')
