"""The consortium's selection and server momentum as a manifest rule and as config fields: old
manifests mean no momentum and any window, bad values are one-line refusals, and momentum after
another strategy (central DP) takes the same step as momentum on plain alignment."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aggregator.config import load_config as load_aggregator_config
from fedledger.config_files import ConfigError
from fedledger.fl import AlignmentAggregation, ClientUpdate, ModelSpec, ValidationPolicy, make_index_map
from fedledger.fl.server_momentum import MomentumAfter, ServerMomentumAlignment
from fedledger.protocol.manifest import ManifestError
from fedledger.protocol.round_check import AggregationRule
from node.config import load_config as load_node_config

OLD_RULE = {"max_norm": None, "name": "alignment", "norm_policy": "reject"}  # a manifest rule before the keys
SPEC = ModelSpec("mlp", (3,), 2, (8,), normalise=False)


def test_an_old_manifest_rule_means_no_momentum_and_any_window_and_keeps_its_bytes() -> None:
    rule = AggregationRule.from_dict(OLD_RULE)
    assert (rule.selection, rule.server_momentum) == (None, 0.0)
    assert rule.to_dict() == OLD_RULE  # momentum off writes no key: such manifests are byte-identical
    assert rule.expected_map(SPEC, 0.5, 3) is None


def test_the_recommended_terms_round_trip_and_name_the_window() -> None:
    rule = AggregationRule(selection="rolling", server_momentum=0.5)
    raw = rule.to_dict()
    assert raw == OLD_RULE | {"selection": "rolling", "server_momentum": 0.5}
    assert AggregationRule.from_dict(raw) == rule
    assert rule.expected_map(SPEC, 0.5, 3) == make_index_map(SPEC, 0.5, "rolling", 3)
    assert rule.expected_map(SPEC, 0.5, 3) != make_index_map(SPEC, 0.5, "static", 3)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"server_momentum": 0.0}, "0 is written by omission"),
        ({"server_momentum": 1}, "must be a number in \\(0, 1\\)"),
        ({"server_momentum": 0.3333}, "fraction p/q with q <= 1000"),
        ({"server_momentum": 1.5}, "server momentum must be in \\[0, 1\\)"),
        ({"server_momentum": 0.5, "name": "median"}, "the robust rule median keeps it at 0"),
        ({"selection": "widest"}, "unknown selection 'widest'"),
        ({"selection": 3}, "selection must be a string"),
    ],
)
def test_a_forged_or_malformed_rule_is_refused_by_name(extra: dict, problem: str) -> None:
    with pytest.raises(ManifestError, match=problem):
        AggregationRule.from_dict(OLD_RULE | extra)


def _node_toml(folder: Path, terms: str) -> Path:
    path = folder / "node.toml"
    path.write_text(
        'name = "h1"\nsm9_identity = "inst:h1"\nwidth_rate = 0.5\naggregator_url = "https://x"\n'
        f'rpc_url = "http://x"\ncontract = "0x{"ab" * 20}"\nstore = "local:x"\n{terms}\n'
        '[data]\nsource = "digits"\n'
    )
    return path


def _aggregator_toml(folder: Path, terms: str) -> Path:
    path = folder / "aggregator.toml"
    path.write_text(f'rpc_url = "http://x"\ncontract = "0x{"ab" * 20}"\nstore = "local:x"\nmodel = {{}}\n{terms}\n')
    return path


@pytest.mark.parametrize("write", [_node_toml, _aggregator_toml])
def test_configs_default_to_the_recommended_method_and_refuse_momentum_with_a_robust_rule(
    tmp_path: Path, write
) -> None:  # type: ignore[no-untyped-def]
    load = load_node_config if write is _node_toml else load_aggregator_config
    config, _ = load(write(tmp_path, ""))
    assert (config.selection, config.effective_server_momentum()) == ("rolling", 0.5)
    config, _ = load(write(tmp_path, 'aggregation_rule = "median"'))
    assert config.effective_server_momentum() == 0.0  # momentum is defined on the aligned mean only
    config, _ = load(write(tmp_path, 'server_momentum = 0\nselection = "static"'))
    assert config.aggregation_terms(ValidationPolicy()).to_dict() == OLD_RULE | {"selection": "static"}
    for terms, problem in (
        ('aggregation_rule = "median"\nserver_momentum = 0.5', "server momentum applies to 'alignment' only"),
        ("server_momentum = 0.3333", "fraction p/q with q <= 1000"),
        ("server_momentum = 1.0", "server_momentum"),
        ('selection = "widest"', "selection"),
    ):
        with pytest.raises(ConfigError, match=problem) as refused:
            load(write(tmp_path, terms))
        assert "\n" not in str(refused.value)


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"layers.0.weight": (8, 3), "layers.0.bias": (8,), "head.weight": (2, 8), "head.bias": (2,)}
    return {name: torch.randn(shape, generator=g) for name, shape in shapes.items()}


def _updates() -> list[ClientUpdate]:
    out = []
    for i, (rate, n, selection) in enumerate(((0.5, 7, "rolling"), (0.25, 3, "random"), (0.125, 11, "rolling"))):
        index_map = make_index_map(SPEC, rate, selection, 5, salt=i)
        g = torch.Generator().manual_seed(100 + i)
        state = {t: torch.randn(index_map.sub_shape(t), generator=g) for t in index_map.indices}
        out.append(ClientUpdate(f"inst{i}", state, index_map, n))
    return out


def test_momentum_after_another_strategy_is_the_same_step_on_the_same_covered_entries() -> None:
    before, previous = _state(1), _state(2)
    after = MomentumAfter(AlignmentAggregation(), 0.5, before).aggregate(previous, _updates())
    direct = ServerMomentumAlignment(0.5, before).aggregate(previous, _updates())
    assert all(torch.equal(after[n], direct[n]) for n in direct)
    bias = after["layers.0.bias"]
    uncovered = [u for u in range(8) if all(u not in m.index_map.indices["layers.0.bias"][0] for m in _updates())]
    assert uncovered and all(bias[u] == previous["layers.0.bias"][u] for u in uncovered)
    no_history = MomentumAfter(AlignmentAggregation(), 0.5, None).aggregate(previous, _updates())
    plain = AlignmentAggregation().aggregate(previous, _updates())
    assert all(torch.equal(no_history[n], plain[n]) for n in plain)


def test_init_takes_the_terms_by_name_and_refuses_a_beta_no_round_can_use(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedledger.cli import app

    (tmp_path / "password").write_text("aggregator password\n")
    args = ["aggregator", "init", "--home", str(tmp_path / "agg"), "--rpc-url", "http://127.0.0.1:9", "--contract",
            "0x" + "ab" * 20, "--store", "local:x", "--master-public-key", "m.pem", "--threshold-public", "t.json",
            "--consortium", "c.json", "--password-file", str(tmp_path / "password")]  # fmt: skip
    refused = CliRunner().invoke(app, [*args, "--server-momentum", "0.3333"])
    assert refused.exit_code == 2 and "fraction p/q with q <= 1000" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "agg" / "aggregator.toml").exists()
    wrong = CliRunner().invoke(app, [*args, "--selection", "widest"])
    assert wrong.exit_code == 2 and "selection" in wrong.output


def test_a_secure_join_must_carry_its_widths_window_for_the_round() -> None:
    from fedledger.protocol.secagg_round import Join, SecureRoundError, check_join_window
    from fedledger.secagg.member import RoundKeys

    def join(selection: str) -> Join:
        index_map = make_index_map(SPEC, 0.5, selection, 3).to_dict()
        return Join(3, 2, "0x" + "ab" * 20, RoundKeys().advert(3, 2), index_map, 10)

    rolling = AggregationRule("alignment", selection="rolling", server_momentum=0.5)
    check_join_window(join("rolling"), SPEC, rolling, 3)
    with pytest.raises(SecureRoundError, match=r"member 2: its index map is not the rolling window of width 0\.5"):
        check_join_window(join("static"), SPEC, rolling, 3)
    check_join_window(join("static"), SPEC, AggregationRule(), 3)  # an old rule names no selection
