"""``consortium.toml``: the consortium's plan, the one file every other setting is derived from.

Institutions, k, the aggregator, the chain, the store, the learning task, training defaults and
deadlines. Loading is strict (unknown keys are refused) and every problem is reported on one line
that names the field and says how to fix it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedledger.config_files import ConfigError, read_toml
from fedledger.errors import FedLedgerError

if TYPE_CHECKING:  # the task module pulls in torch: load it only when a task is built
    from fedledger.fl.task import SiteData, Task

WIDTHS = (1.0, 0.5, 0.25, 0.125)
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class PlanError(FedLedgerError):
    """The plan is missing or invalid; the message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainPlan(_Strict):
    rpc_url: str = Field(description='the chain\'s JSON-RPC URL, e.g. "http://127.0.0.1:8545"')
    chain_id: int = Field(ge=1, description="the chain id the RPC URL must report, e.g. 31337 for a local Anvil")

    @field_validator("rpc_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f'must be an http(s) URL, got {value!r}: write e.g. "http://127.0.0.1:8545"')
        return value.rstrip("/")


class StorePlan(_Strict):
    spec: str = Field(description='"local:DIR" (one folder every party can reach) or "kubo:MULTIADDR" (a Kubo RPC API)')

    @field_validator("spec")
    @classmethod
    def _kind(cls, value: str) -> str:
        if not value.startswith(("local:", "kubo:")) or len(value.split(":", 1)[1]) == 0:
            raise ValueError(f'got {value!r}: write "local:/shared/store" or "kubo:/ip4/127.0.0.1/tcp/5001"')
        return value


class AggregatorPlan(_Strict):
    url: str = Field(description='the URL nodes reach the aggregator\'s HTTP API at, e.g. "http://agg.example:8700"')
    bind_host: str = Field("127.0.0.1", description='the address the aggregator listens on ("0.0.0.0" for all)')
    contact: str = ""

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f'got {value!r}: write e.g. "http://127.0.0.1:8700"')
        return value.rstrip("/")

    @property
    def port(self) -> int:
        parsed = urlparse(self.url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)


class DataPlan(_Strict):
    kind: Literal["dicom", "npz", "builtin"] = Field(
        description='"dicom" (a folder with labels.csv), "npz" (MedMNIST layout) or "builtin" (digits, breast_cancer)'
    )
    path: str = Field("", description="where the site's data is (a site may also give it at start with --data)")
    labels_csv: str = Field("", description="DICOM only: the labels CSV (file,label); default <path>/labels.csv")
    partitions: int = Field(1, ge=1, description="demos only: split a shared source this many ways")
    index: int = Field(0, ge=0, description="demos only: this site's part (0-based)")
    scheme: Literal["iid", "dirichlet"] = "iid"
    alpha: float = Field(0.5, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _index_in_range(self) -> DataPlan:
        if self.index >= self.partitions:
            raise ValueError(f"index {self.index} must be below partitions = {self.partitions}")
        return self

    def site(self, path: str | None = None) -> SiteData:
        from fedledger.fl.task import SiteData

        return SiteData(
            kind=self.kind,
            source=path or self.path,
            labels_csv=self.labels_csv or None,
            partitions=self.partitions,
            index=self.index,
            scheme=self.scheme,
            alpha=self.alpha,
            seed=self.seed,
        )


class InstitutionPlan(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description='a short lower-case name, e.g. "hospital-1"')
    sm9_identity: str = Field("", max_length=256, description='its SM9 identity; default "inst:<name>"')
    width_rate: float | None = Field(None, description="sub-model width it trains: 1, 0.5, 0.25 or 0.125")
    compute_budget: float | None = Field(
        None, gt=0, le=1, description="or: the share of the full model's training compute it can afford, (0, 1]"
    )
    contact: str = ""
    data: DataPlan

    @field_validator("width_rate")
    @classmethod
    def _width(cls, value: float | None) -> float | None:
        if value is not None and value not in WIDTHS:
            raise ValueError(f"got {value}: use one of 1, 0.5, 0.25, 0.125")
        return value

    @model_validator(mode="after")
    def _one_size(self) -> InstitutionPlan:
        if (self.width_rate is None) == (self.compute_budget is None):
            raise ValueError(f"{self.name}: give exactly one of width_rate or compute_budget")
        return self

    @property
    def identity(self) -> str:
        return self.sm9_identity or f"inst:{self.name}"

    @property
    def width(self) -> float:
        """The width rate; from a compute budget, the widest whose cost (about width squared) fits it."""
        if self.width_rate is not None:
            return self.width_rate
        budget = float(self.compute_budget or 1.0)
        return next((w for w in WIDTHS if w * w <= budget + 1e-12), WIDTHS[-1])


class ModelPlan(_Strict):
    family: Literal["cnn", "mlp"] = Field(description='"cnn" for images (C, H, W), "mlp" for feature vectors (F,)')
    hidden: list[int] = Field(min_length=1, description="hidden widths at full width, e.g. [32, 64]")

    @field_validator("hidden")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(h < 1 for h in value):
            raise ValueError("every hidden width must be a positive integer")
        return value


class TaskPlan(_Strict):
    name: str = "task"
    input_shape: list[int] = Field(description="a sample's shape: [C, H, W] for images, [F] for features")
    labels: list[str] = Field(min_length=2, description='the class names, in order, e.g. ["normal", "nodule"]')
    model: ModelPlan
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    min_samples: int = Field(20, ge=1, description="training samples every site needs at least")
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="share of each site's data kept to evaluate")

    @model_validator(mode="after")
    def _consistent(self) -> TaskPlan:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: every class name must be distinct")
        dims = 3 if self.model.family == "cnn" else 1
        if len(self.input_shape) != dims or any(d < 1 for d in self.input_shape):
            raise ValueError(
                f"input_shape {self.input_shape} does not fit model family {self.model.family!r}: "
                f"it needs {dims} positive sizes ({'[C, H, W]' if dims == 3 else '[F]'})"
            )
        return self

    def task(self) -> Task:
        from fedledger.fl.task import Task

        return Task(
            input_shape=tuple(self.input_shape),
            labels=tuple(self.labels),
            family=self.model.family,
            hidden=tuple(self.model.hidden),
            metric=self.metric,
            min_samples=self.min_samples,
            validation_fraction=self.validation_fraction,
            name=self.name,
        )


class TrainingPlan(_Strict):
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    seed: int = 0


class DeadlinesPlan(_Strict):
    round_seconds: float = Field(300.0, gt=0, description="how long the aggregator waits for updates per round")
    session_seconds: float = Field(120.0, gt=0, description="how long one signing session may take")


class Plan(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description='the consortium\'s short name, e.g. "lung-ct"')
    k: int = Field(ge=1, description="how many institutions must sign each global model")
    chain: ChainPlan
    store: StorePlan
    aggregator: AggregatorPlan
    task: TaskPlan
    training: TrainingPlan = TrainingPlan()
    deadlines: DeadlinesPlan = DeadlinesPlan()
    institutions: list[InstitutionPlan] = Field(min_length=1, description="one [[institutions]] table per member")

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        names = [i.name for i in self.institutions]
        for reserved in ("aggregator", "kgc", "deployer"):
            if reserved in names:
                raise ValueError(f"institutions: {reserved!r} names a role, not an institution: rename it")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"institutions: name {duplicates[0]!r} appears twice: every name must be unique")
        ids = [i.identity for i in self.institutions]
        duplicates = sorted({n for n in ids if ids.count(n) > 1})
        if duplicates:
            raise ValueError(f"institutions: SM9 identity {duplicates[0]!r} appears twice: each needs its own")
        if self.k > len(self.institutions):
            raise ValueError(f"k = {self.k} exceeds the {len(self.institutions)} institutions: lower k or add members")
        image = self.task.model.family == "cnn"
        for inst in self.institutions:
            if inst.data.kind == "dicom" and not (image and self.task.input_shape[0] == 1):
                raise ValueError(
                    f"institutions.{inst.name}.data: DICOM slices are grey images; the task needs "
                    'family = "cnn" and input_shape = [1, S, S]'
                )
        return self

    def institution(self, name: str) -> InstitutionPlan:
        for inst in self.institutions:
            if inst.name == name:
                return inst
        raise PlanError(f"institution {name!r} is not in the plan: add an [[institutions]] table for it")


def _field_hint(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The description of the field at ``loc`` (walking nested models and lists)."""
    current: Any = model
    description = ""
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        info = fields.get(part)
        if info is None:
            return description
        description = info.description or ""
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return description


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """A readable path: institutions.hospital-2.width_rate rather than institutions.1.width_rate."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int) and parts and parts[-1] == "institutions":
            try:
                parts.append(str(raw["institutions"][part]["name"]))
                continue
            except (KeyError, IndexError, TypeError):
                pass
        parts.append(str(part))
    return ".".join(parts) or "plan"


def _message(error: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    where = _where(loc, raw)
    kind = error["type"]
    hint = _field_hint(Plan, loc)
    if kind == "missing":
        return f"{where} is missing: add it" + (f" ({hint})" if hint else "")
    if kind == "extra_forbidden":
        return f"{where} is not a plan setting: remove it or check its spelling"
    text = re.sub(r"^(Value error|Assertion failed), ", "", str(error["msg"]))
    return f"{where}: {text}" + (f" (expected: {hint})" if hint and kind != "value_error" else "")


def parse_plan(raw: dict[str, Any], source: str = "plan") -> Plan:
    """Validate a plan's data; PlanError with one line per the first problems found."""
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        problems = [_message(e, raw) for e in exc.errors()]  # type: ignore[arg-type]
        raise PlanError(f"{source}: " + "; ".join(problems)) from None


def load_plan(path: str | Path) -> Plan:
    """Read and validate ``consortium.toml``."""
    target = Path(path)
    try:
        raw = read_toml(target, f"no plan at {target}: write one (see docs/operations.md#the-consortium-plan)")
    except ConfigError as exc:
        raise PlanError(str(exc)) from None
    return parse_plan(raw, str(target))
