"""Bad training and momentum settings are deliberate errors (FedLedgerError), so a CLI or role
loop reports them in one line instead of treating them as bugs."""

from __future__ import annotations

import pytest

from fedledger.errors import FedLedgerError
from fedledger.fl.dp_sgd import dp_sgd_plan
from fedledger.fl.rules import aggregation_for, server_momentum_for
from fedledger.fl.server_momentum import momentum_fraction
from fedledger.fl.training import TrainConfig


@pytest.mark.parametrize(
    "settings",
    [
        {"dp_noise_multiplier": -1.0},
        {"dp_max_grad_norm": 0.0},
        {"dp_noise_multiplier": 1.0, "logit_adjustment": 1.0},
        {"dp_noise_multiplier": 1.0, "proximal_mu": 0.1},
        {"optimizer": "lbfgs"},
    ],
)
def test_bad_train_config_is_a_fedledger_error(settings: dict) -> None:
    with pytest.raises(FedLedgerError):
        TrainConfig(**settings)


def test_bad_dp_sgd_plan_is_a_fedledger_error() -> None:
    with pytest.raises(FedLedgerError, match="at least one record"):
        dp_sgd_plan(0, 32, 1)


def test_bad_server_momentum_is_a_fedledger_error() -> None:
    with pytest.raises(FedLedgerError, match=r"\[0, 1\)"):
        momentum_fraction(1.0)
    with pytest.raises(FedLedgerError, match="fraction p/q"):
        server_momentum_for("alignment", 0.12345)
    with pytest.raises(FedLedgerError, match="applies to 'alignment' only"):
        server_momentum_for("median", 0.5)
    with pytest.raises(FedLedgerError, match="aggregation rule must be one of"):
        aggregation_for("mean")
