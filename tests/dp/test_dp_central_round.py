"""Central DP at the aggregator: clipped alignment plus seeded Gaussian noise that every co-signer
recomputes bit for bit from the committed secret; the secret must open the commitment."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
import torch

from fedledger.dp.central_aggregation import CentralDPAggregation, clip_update
from fedledger.fl import AlignmentAggregation, ClientUpdate, ModelSpec, make_index_map
from fedledger.protocol.noise_seed import NoiseSeedError, noise_commitment, noise_seed

SPEC = ModelSpec("mlp", (8,), 2, (64,), normalise=False)
CONTRACT = "0x" + "ab" * 20


def _global() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    shapes = {"layers.0.weight": (64, 8), "layers.0.bias": (64,), "head.weight": (2, 64), "head.bias": (2,)}
    return {n: torch.randn(s) for n, s in shapes.items()}


def _updates(global_state: dict[str, torch.Tensor], scale: float = 0.01) -> list[ClientUpdate]:
    out = []
    for i, (rate, n) in enumerate([(1.0, 30), (0.5, 20), (0.25, 50)]):
        index_map = make_index_map(SPEC, rate, "static", 0)
        generator = torch.Generator().manual_seed(i)
        state = {}
        for name, dims in index_map.indices.items():
            base = global_state[name]
            for d, idx in enumerate(dims):
                if idx is not None:
                    base = base.index_select(d, idx)
            state[name] = base + scale * torch.randn(base.shape, generator=generator)
        out.append(ClientUpdate(f"0x{i:040x}", state, index_map, n))
    return out


def _seed(secret: bytes, round_index: int = 3, root: bytes = b"\x11" * 32) -> bytes:
    commitment = noise_commitment(secret, 31337, CONTRACT, round_index)
    return noise_seed(secret, commitment, 31337, CONTRACT, round_index, root)


def _flat(state: dict[str, torch.Tensor]) -> np.ndarray:
    return np.concatenate([state[n].numpy().ravel() for n in sorted(state)])


def test_co_signers_recompute_the_noised_model_bit_for_bit_and_a_wrong_seed_differs() -> None:
    g = _global()
    secret = secrets.token_bytes(32)
    first = CentralDPAggregation(0.5, 1.0, _seed(secret)).aggregate(g, _updates(g))
    again = CentralDPAggregation(0.5, 1.0, _seed(secret)).aggregate(g, _updates(g))
    assert all(torch.equal(first[n], again[n]) for n in first)
    other = CentralDPAggregation(0.5, 1.0, _seed(secrets.token_bytes(32))).aggregate(g, _updates(g))
    assert not np.array_equal(_flat(first), _flat(other))


def test_noise_has_the_calibrated_spread_and_the_plain_mean_underneath() -> None:
    g = _global()
    updates = _updates(g)
    plain = AlignmentAggregation().aggregate(g, [clip_update(u, g, 0.5) for u in updates])
    noised = CentralDPAggregation(0.5, 1.0, _seed(secrets.token_bytes(32))).aggregate(g, updates)
    # the first 16 hidden units are covered by all three (weight 100): std = z * w_max * C / W = 50 * 0.5 / 100
    bias = (noised["layers.0.bias"][:16] - plain["layers.0.bias"][:16]).numpy()
    assert 0.05 < float(np.std(bias)) < 0.6  # expected 0.25 over 16 samples
    assert np.abs(_flat(noised) - _flat(plain)).max() > 0


def test_clipping_bounds_each_members_change() -> None:
    g = _global()
    big = _updates(g, scale=10.0)[0]
    clipped = clip_update(big, g, 1.0)
    change = np.concatenate([(clipped.state[n] - g[n]).numpy().ravel() for n in sorted(g)])  # full width
    assert np.linalg.norm(change.astype(np.float64)) <= 1.0
    small = _updates(g, scale=1e-4)[0]
    assert all(torch.equal(clip_update(small, g, 1.0).state[n], small.state[n]) for n in g)


def test_secret_must_open_the_commitment_and_the_seed_binds_the_round_and_updates() -> None:
    secret = secrets.token_bytes(32)
    commitment = noise_commitment(secret, 31337, CONTRACT, 3)
    with pytest.raises(NoiseSeedError, match="does not open"):
        noise_seed(secrets.token_bytes(32), commitment, 31337, CONTRACT, 3, b"\x11" * 32)
    with pytest.raises(NoiseSeedError, match="does not open"):
        noise_seed(secret, commitment, 31337, CONTRACT, 4, b"\x11" * 32)
    with pytest.raises(NoiseSeedError, match="32 bytes"):
        noise_commitment(b"short", 31337, CONTRACT, 3)
    assert _seed(secret, 3, b"\x11" * 32) != _seed(secret, 3, b"\x22" * 32)
