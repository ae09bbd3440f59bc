"""Heterogeneous federated learning with model alignment.

Institutions train sub-models sized to their hardware (width rate r keeps ceil(r*C) units of
every hidden layer); the aggregator aligns them into one full-width global model. This package
knows nothing of chains or signatures: it produces files and digests that others record.
"""

from __future__ import annotations

from fedledger.fl.aggregation import (
    AggregationError,
    AlignmentAggregation,
    ClientUpdate,
    FedAvg,
    StreamingAccumulator,
    full_width_update,
)
from fedledger.fl.data import Dataset, DatasetError, Shard, load_dataset, partition, pooled
from fedledger.fl.evaluation import evaluate, predict
from fedledger.fl.models import ModelSpec, build_model, default_spec, initial_global_state, parameter_shapes
from fedledger.fl.submodel import IndexMap, extract_submodel, extract_with_map, make_index_map
from fedledger.fl.training import TrainConfig, configure_threads, train_local
from fedledger.fl.update_format import (
    GlobalMetadata,
    ModelFileError,
    UpdateMetadata,
    global_digest,
    load_client_update,
    load_global,
    load_update,
    save_global,
    save_update,
)
from fedledger.fl.validation import UpdateRejected, UpdateValidator, ValidationPolicy, validate_update

__all__ = [
    "AggregationError",
    "AlignmentAggregation",
    "ClientUpdate",
    "Dataset",
    "DatasetError",
    "FedAvg",
    "GlobalMetadata",
    "IndexMap",
    "ModelFileError",
    "ModelSpec",
    "Shard",
    "StreamingAccumulator",
    "TrainConfig",
    "UpdateMetadata",
    "UpdateRejected",
    "UpdateValidator",
    "ValidationPolicy",
    "build_model",
    "configure_threads",
    "default_spec",
    "evaluate",
    "extract_submodel",
    "extract_with_map",
    "full_width_update",
    "global_digest",
    "initial_global_state",
    "load_client_update",
    "load_dataset",
    "load_global",
    "load_update",
    "make_index_map",
    "parameter_shapes",
    "partition",
    "pooled",
    "predict",
    "save_global",
    "save_update",
    "train_local",
    "validate_update",
]
