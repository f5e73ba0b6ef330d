"""Configuration of a training run: frozen dataclasses, loaded from TOML and overridden from the command line."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model.bundle.reserved import DEFAULT_MODEL_NAME
from model.training.filterable import parse_entries


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from and how they are split.

    Attributes:
        source: "movielens-100k" (from the recbole wheel), "synthetic", or "files" (the paths below).
        interactions: the interaction log (source = "files"): a Parquet, CSV or TSV file, or a directory or glob
            of Parquet files.
        user_features: optional side-feature table of users (source = "files"; a file, directory or glob).
        item_features: optional side-feature table of items (source = "files"; a file, directory or glob).
        streaming: stream the log instead of loading it (source = "files", Parquet): DuckDB prepares it into
            <output_dir>/prepared (split, vocabularies, item frequencies, example shards; see retrieval-prepare)
            and training reads the shards in record batches, with memory bounded by the vocabularies and the
            batch size. Two-tower only.
        prepared: a directory written by retrieval-prepare to train from (implies streaming; interactions,
            the columns and the split are then the prepared log's). Required by multi-worker streaming: each
            worker reads its own share of the example shards.
        eval_queries: validation and test queries sampled (seeded) from the held-out examples, at most this many
            each (0 = all); streaming reads the exclusions of those users only.
        duckdb_memory_limit: streaming: DuckDB's memory limit while preparing; it spills to disk beyond it.
        shards: streaming: example shards written when preparing (a multiple of the training workers).
        user_col: user id column of the log.
        item_col: item id column of the log.
        time_col: timestamp column of the log.
        weight_col: optional weight/rating column of the log.
        user_categorical: categorical columns of the user table.
        user_numeric: numeric columns of the user table.
        item_categorical: categorical columns of the item table.
        item_numeric: numeric columns of the item table.
        item_multi_categorical: multi-valued (space-separated) columns of the item table.
        display_column: item column shown to people (e.g. a title), kept in the bundle but not a feature.
        split: "leave-last-out" or "time".
        validation_cutoff: first timestamp of validation (split = "time").
        test_cutoff: first timestamp of test (split = "time").
        use_weights: weight examples by the weight column instead of treating all as positives.
        refit_on_validation: move the validation interactions into training and train exactly
            `train.epochs` epochs with no validation, early stopping or best-epoch selection (the last epoch
            is kept); test queries, histories and exclusions are unchanged. For refitting a configuration
            whose hyperparameters and epoch count were chosen on validation by an earlier run. With a
            prepared log (data.prepared / data.streaming) the refit is made at preparation
            (`retrieval-prepare --refit-on-validation`); a prepared log made the other way is refused.
    """

    source: Literal["movielens-100k", "synthetic", "files"] = "movielens-100k"
    interactions: str = ""
    user_features: str = ""
    item_features: str = ""
    streaming: bool = False
    prepared: str = ""
    eval_queries: int = 0
    duckdb_memory_limit: str = "1GB"
    shards: int = 8
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    weight_col: str = ""
    user_categorical: tuple[str, ...] = ()
    user_numeric: tuple[str, ...] = ()
    item_categorical: tuple[str, ...] = ()
    item_numeric: tuple[str, ...] = ()
    item_multi_categorical: tuple[str, ...] = ()
    display_column: str = ""
    split: Literal["leave-last-out", "time"] = "leave-last-out"
    validation_cutoff: float = 0.0
    test_cutoff: float = 0.0
    use_weights: bool = False
    refit_on_validation: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Towers, scorer and negative sampling.

    Attributes:
        embedding_dim: output size of both towers.
        hidden_units: hidden layer widths of both towers.
        dropout: dropout after hidden layers.
        feature_dim: default embedding size of categorical features.
        feature_dim_multiplier: if > 0, size embeddings as multiplier * cardinality ** 0.25.
        similarity: "cosine" (L2-normalised embeddings) or "dot".
        temperature: logits are divided by it (0.1: the MovieLens benchmark's choice on validation).
        logq_correction: subtract log sampling probabilities.
        sampler: "in-batch", "mixed" (in-batch + popularity) or "cross-batch" (in-batch + memory bank).
        popularity_samples: popularity negatives per batch (sampler = "mixed").
        memory_batches: batches kept in the memory bank (sampler = "cross-batch").
        memory_warmup_steps: steps before the memory bank serves negatives.
        streaming_frequency: estimate item frequencies while training instead of counting them.
        hard_negatives: keep only this many hardest negatives per row (0 = all).
        tower: "two-tower" (user features -> query) or "sequential" (item history -> query, see [sequence]).
    """

    embedding_dim: int = 64
    hidden_units: tuple[int, ...] = (128,)
    dropout: float = 0.0
    feature_dim: int = 32
    feature_dim_multiplier: float = 0.0
    similarity: Literal["cosine", "dot"] = "cosine"
    temperature: float = 0.1
    logq_correction: bool = True
    sampler: Literal["in-batch", "mixed", "cross-batch"] = "in-batch"
    popularity_samples: int = 256
    memory_batches: int = 4
    memory_warmup_steps: int = 200
    streaming_frequency: bool = False
    hard_negatives: int = 0
    tower: Literal["two-tower", "sequential"] = "two-tower"


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: examples per step.
        learning_rate: Adam learning rate (the peak of a schedule; 0.005: the MovieLens benchmark's choice on
            validation).
        lr_schedule: "constant", or "cosine": decays from learning_rate to 0 over `decay_epochs` epochs and
            stays there.
        decay_epochs: length of the cosine decay in epochs (0 = `epochs`); set it when a run is cut short (a
            refit for the best epoch count) and must follow the same schedule as the longer run.
        seed: seed of weights, shuffling and sampling.
        patience: early stopping after this many epochs without a better validation recall (0 = off).
        eval_k: K of the validation Recall@K that selects the best epoch.
        mixed_precision: train under the mixed_float16 policy.
        jit_compile: compile the train step with XLA.
        strategy: "default", "mirrored" or "multi-worker" (reads TF_CONFIG).
        steps_per_epoch: each epoch is this many steps (0 = one pass over the examples, or windows).
        shuffle_buffer: streaming: examples (windows) shuffled together (file order is shuffled every epoch too).
        verbose: Keras progress output (0 = none: the one log line per epoch, 1 = progress bar, 2 = a Keras line
            per epoch; -1 = a progress bar on a terminal, else none).
    """

    epochs: int = 20
    batch_size: int = 512
    learning_rate: float = 0.005
    lr_schedule: Literal["constant", "cosine"] = "constant"
    decay_epochs: int = 0
    seed: int = 42
    patience: int = 5
    eval_k: int = 10
    mixed_precision: bool = False
    jit_compile: bool = False
    strategy: Literal["default", "mirrored", "multi-worker"] = "default"
    steps_per_epoch: int = 0
    shuffle_buffer: int = 262144
    verbose: int = -1


@dataclass(frozen=True)
class SequenceConfig:
    """The sequential query tower (model.tower = "sequential"); the width is model.embedding_dim.

    Attributes:
        encoder: "transformer" or "average" (mean of the last `last_n` item embeddings, YouTube-DNN style).
        objective: "masked" (BERT4Rec, random masking) or "causal" (SASRec, next item at every position).
        max_length: window length L of training sequences and of served histories.
        mask_probability: masking probability of the masked objective.
        num_layers: transformer blocks.
        num_heads: attention heads.
        ff_dim: feed-forward width of a block (0 = 4 * embedding_dim).
        dropout: dropout of the encoder and its head.
        last_n: items averaged by the average encoder.
        head_units: hidden ReLU layers of the head after the encoder.
        tied_item_embeddings: the item tower is the encoder's item-id embedding table (weight tying);
            False trains a separate item tower from the item features.
        stride: training windows end every `stride` items of a user (0 = max_length: every item is a target
            once; a causal window holds max_length + 1 items, the inputs and their next items).
        max_targets: at most this many scored positions per batch (0 = all).
        mask_seen_negatives: the items of a target's own training window are never its negatives (masked like
            accidental hits), as the evaluation and the service's exclude-history option never rank them.
        padding: "left" or "right".
        user_features: feed the user side features (not the user id) to the head as context.
        full_softmax: score every catalog item as a negative instead of using model.sampler.
    """

    encoder: Literal["transformer", "average"] = "transformer"
    objective: Literal["masked", "causal"] = "causal"
    max_length: int = 50
    mask_probability: float = 0.2
    num_layers: int = 2
    num_heads: int = 2
    ff_dim: int = 0
    dropout: float = 0.2
    last_n: int = 10
    head_units: tuple[int, ...] = ()
    tied_item_embeddings: bool = True
    stride: int = 0
    max_targets: int = 0
    mask_seen_negatives: bool = False
    padding: Literal["left", "right"] = "left"
    user_features: bool = False
    full_softmax: bool = False


@dataclass(frozen=True)
class ExportConfig:
    """Where the model bundle goes.

    Attributes:
        models_dir: root of the bundles (models/<name>/<version>/).
        name: model name.
        index: "flat", "ivf", "hnsw" or "ivfpq".
        enabled: export a bundle at the end of the run.
        filterable: item columns requests may filter on, each COLUMN or NAME=COLUMN (the attribute NAME holds
            the item-table COLUMN; default NAME: the column's); the kind (categorical, multi-valued categorical,
            numeric) is the column's kind in the item table. Empty: the source's default, "genre=genres,
            release_year" for movielens-100k and none otherwise; "none": no attribute. A column the item table
            lacks stops the run before training.
    """

    models_dir: str = "models"
    name: str = DEFAULT_MODEL_NAME
    index: Literal["flat", "ivf", "hnsw", "ivfpq"] = "flat"
    enabled: bool = True
    filterable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parse_entries(self.filterable)  # the syntax, checked when the config is built


@dataclass(frozen=True)
class RunConfig:
    """A whole training run.

    Attributes:
        output_dir: where config.json, metrics.json, training.png, summary.md and checkpoints go.
        pushgateway: Prometheus Pushgateway address (host:port or URL) to push run metrics to; "" = off.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    output_dir: str = "runs/latest"
    pushgateway: str = ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Converts a TOML/CLI value to the field's declared type, with an error naming the field."""
    origin = typing.get_origin(annotation)
    try:
        if origin is Literal:
            choices = typing.get_args(annotation)
            if value not in choices:
                raise ValueError(f"{value!r} is not one of {', '.join(map(repr, choices))}")
            return value
        if origin is tuple:
            (inner, _ellipsis) = typing.get_args(annotation)
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(_coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in items if v != "")
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if annotation in (int, float, str):
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"not an integer: {value!r}")
            return annotation(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config field {where}: {err}") from None
    raise TypeError(f"config field {where}: unsupported type {annotation}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build_config(values: dict[str, Any], cls: type = RunConfig, prefix: str = "") -> Any:
    """Builds a config dataclass from nested dicts, rejecting unknown keys with their full name."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {[prefix + u for u in unknown]}; known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"config section {prefix}{name} must be a table, got {value!r}")
            kwargs[name] = build_config(value, hint, f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    return cls(**kwargs)


def load_toml(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def apply_overrides(values: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Sets dotted keys ("train.epochs") in a nested dict; the values are coerced later."""
    merged = json.loads(json.dumps(values))
    for dotted, value in overrides.items():
        node = merged
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return merged


def field_paths(cls: type = RunConfig, prefix: str = "") -> dict[str, tuple[Any, str]]:
    """Every leaf field as dotted path -> (type, default as text), for command-line flags."""
    paths: dict[str, tuple[Any, str]] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            paths.update(field_paths(hint, f"{prefix}{f.name}."))  # type: ignore[arg-type]
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
            paths[prefix + f.name] = (hint, ",".join(map(str, default)) if isinstance(default, tuple) else str(default))
    return paths


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))
