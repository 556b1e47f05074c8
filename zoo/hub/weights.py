"""Weights files: safetensors with zoo's metadata, read and checked, and loaded into models strictly.

No pickle anywhere: tensors go into safetensors, everything else into its
string metadata as JSON, written through zoo.core.files (atomic).

A zoo checkpoint is a safetensors file whose metadata follows
:class:`CheckpointMeta`. Loading one into a model (:func:`load_into`) is
strict: every key present, every shape equal, every value finite, and the
architecture recorded in the file equal to the model's, down to the switches
that leave the parameter shapes alone (GoogLeNet's residual shortcuts).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

import zoo.models  # noqa: F401  registers every architecture, which a checkpoint's arch is checked against
from zoo.core.errors import ArgumentError, CheckpointError
from zoo.core.files import atomic_write_bytes, check_readable, naming_os_errors, sha256_file
from zoo.data.datasets import DataConfig, find_spec
from zoo.models.layers import ZooModel
from zoo.models.registry import MODEL_RANGES, SHA256_PATTERN, check_input_size, list_models

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "CURVE_NAME",
    "SHA256_PATTERN",
    "WEIGHTS_NAME",
    "CheckpointMeta",
    "adapt_input_conv",
    "check_compatible",
    "check_recorded_sizes",
    "check_finite",
    "fit_head_and_stem",
    "float_dtypes",
    "load_into",
    "load_tensors",
    "read_checkpoint",
    "read_metadata",
    "save_tensors",
    "state_dict_of",
    "strip_prefixes",
    "structure_difference",
    "unwrap_model",
    "unwrap_zoo_model",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
CURVE_NAME = "training_curves.png"
"""The files of a published checkpoint folder (the curve only when the training history is known)."""

FORMAT_VERSION = 2
"""Version of the metadata schema below; a file with a higher one needs a newer zoo."""

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes added by DistributedDataParallel / DataParallel and by torch.compile."""


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically write ``tensors`` and string ``metadata`` as one safetensors file.

    Serialised in memory (one copy of the tensors' bytes) and written by zoo.core.files: safetensors' save_file makes
    a 0600 temporary file of its own, which a kill leaves behind, and reports a full disk as a SafetensorError.
    """
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, safetensors_bytes(contiguous, metadata=metadata))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file; anything else is a CheckpointError (never a pickle fallback)."""
    return _read_safetensors(Path(path), tensors=True)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, without reading its tensors."""
    return _read_safetensors(Path(path), tensors=False)[1]


_FLOAT_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def float_dtypes(path: str | os.PathLike) -> set[str]:
    """The floating-point dtypes of a safetensors file's tensors, read from its header (no tensor is loaded)."""
    check_readable(path, CheckpointError)
    try:
        with naming_os_errors(path), safe_open(path, framework="pt") as f:  # safetensors' OSErrors name no file
            return {_FLOAT_DTYPES[d] for d in (f.get_slice(k).get_dtype() for k in f.keys()) if d in _FLOAT_DTYPES}
    except SafetensorError as e:
        raise _not_safetensors(Path(path), e) from e


def _read_safetensors(path: Path, *, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    check_readable(path, CheckpointError)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with naming_os_errors(path), safe_open(path, framework="pt") as f:  # safetensors' OSErrors name no file
            return ({k: f.get_tensor(k) for k in f.keys()} if tensors else {}), f.metadata() or {}
    except SafetensorError as e:
        raise _not_safetensors(path, e) from e


def _not_safetensors(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid safetensors file ({e}): truncated, padded or not a zoo checkpoint. "
        "zoo never unpickles; re-export the weights with zoo.save_pretrained"
    )


def _verify_sha256(path: Path, pins: Mapping[str, str], remedy: str | None = None, digest: str | None = None) -> None:
    """Refuse a file whose sha256 (``digest`` when the caller has it) differs from any pinned digest (``pins``:
    who pins it -> digest)."""
    if not pins:
        return
    actual = digest or sha256_file(path)
    for pinned_by, expected in pins.items():
        if actual != expected.lower():
            raise CheckpointError(
                f"sha256 mismatch for {path}: {pinned_by} expects {expected}, the file has {actual}. "
                f"The file is corrupt or was replaced; {remedy or f'restore {path}'}"
            )


_STRING_FIELDS = frozenset({"arch", "zoo_version", "tag", "recipe", "git_commit"})
_LEGACY_DATA = ("input_size", "mean", "std", "label_names", "dataset", "dataset_sha256", "metrics", "pad", "init")
_LEGACY_STRINGS = frozenset({"dataset", "dataset_sha256", "init"})
"""Format 1 kept the data contract as these loose fields (those strings as they are); format 2 keeps it as one
``data`` record."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a zoo checkpoint records beside its tensors, stored as safetensors string metadata.

    ``model_kwargs`` rebuild the model: ``zoo.create_model(arch, **model_kwargs)``. ``data`` is the model's data
    contract and provenance (:class:`zoo.data.datasets.DataConfig`: input, statistics, placement, mirror symmetry,
    labels, dataset, base model, metrics: errors in percent, as in ``metrics.jsonl``).
    """

    arch: str
    model_kwargs: dict[str, Any]
    num_classes: int
    in_chans: int
    data: DataConfig
    zoo_version: str
    tag: str | None = None
    recipe: str | None = None
    git_commit: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or self.arch not in list_models():
            raise CheckpointError(f"arch {self.arch!r} is not a model this zoo version knows (zoo.list_models() lists "
                                  "them); upgrade zoo or save the weights under a registered arch")
        self._check_model()
        data = self.data
        if data.dataset_sha256 is not None and not SHA256_PATTERN.fullmatch(str(data.dataset_sha256)):
            raise CheckpointError(f"dataset_sha256 must be 64 lowercase hex digits, got {data.dataset_sha256!r}")
        if data.label_names is not None and len(data.label_names) != self.num_classes:
            raise CheckpointError(
                f"{len(data.label_names)} label names for num_classes={self.num_classes}; pass one name (a string) per class"
            )
        if data.metrics is not None and not isinstance(data.metrics, dict):
            raise CheckpointError(f"metrics must be a mapping of name to number, got {data.metrics!r}")
        for name, value in (data.metrics or {}).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CheckpointError(f"metric {name}={value!r} is not a finite number")
            if name.endswith("_err") and not 0 <= value <= 100:
                raise CheckpointError(f"metric {name}={value} must be a percentage in [0, 100]")

    def _check_model(self) -> None:
        """The model these weights fit and its input: kwargs a mapping that agrees with num_classes and in_chans,
        both in the registry's bounds, an input of at most 4096 pixels a side with in_chans channels: all before
        anything is built or allocated."""
        if not isinstance(self.model_kwargs, dict):
            raise CheckpointError(f"model_kwargs must be a mapping of argument to value, got {self.model_kwargs!r}")
        for key in ("num_classes", "in_chans"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not MODEL_RANGES[key].admits(value):
                raise CheckpointError(f"{key}={value!r} must be a whole number {MODEL_RANGES[key]}")
            if self.model_kwargs.get(key, value) != value:
                raise CheckpointError(f"{key}={value} but model_kwargs has {key}={self.model_kwargs[key]!r}; they must agree")
        if not isinstance(self.data, DataConfig):
            raise CheckpointError(f"data must be a data config, got {self.data!r}")
        check_input_size(self.data.input_size, "input_size", self.in_chans, CheckpointError)

    def to_metadata(self) -> dict[str, str]:
        """String metadata for safetensors: the string fields as they are, the others as JSON."""
        out = {"format": "pt", "zoo_format": str(FORMAT_VERSION)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, DataConfig):
                out[f.name] = json.dumps(value.to_json())
            elif value is not None:
                out[f.name] = value if f.name in _STRING_FIELDS else json.dumps(value)
        return out

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], where: str) -> CheckpointMeta | None:
        """Parse what :meth:`to_metadata` wrote (format 1's loose data fields too); None for a safetensors file zoo
        did not write."""
        if "zoo_format" not in metadata:
            return None
        version = metadata["zoo_format"]
        if not version.isdigit():
            raise _malformed(where, f"zoo_format {version!r}")
        if int(version) > FORMAT_VERSION:
            raise CheckpointError(f"{where} was written by a newer zoo (format {version}); upgrade zoo to load it")
        if metadata.get("arch") not in list_models():
            raise CheckpointError(f"{where} holds weights for {metadata.get('arch')!r}, which this zoo version does not "
                                  "know (zoo.list_models() lists those it does); upgrade zoo")
        try:
            values = {k: v if k in _STRING_FIELDS or k in _LEGACY_STRINGS else json.loads(v) for k, v in metadata.items()
                      if k in _FIELDS or k in _LEGACY_DATA}
            legacy = {k: values.pop(k) for k in _LEGACY_DATA if k in values}
            data = legacy_data_config(legacy) if "data" not in values else values.pop("data")
            fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            return cls(**fields, data=DataConfig.from_json(data, "the data config"))
        except (TypeError, ValueError, KeyError) as e:  # CheckpointError and DataError included
            raise _malformed(where, str(e)) from e

    @property
    def create_call(self) -> str:
        """The ``zoo.create_model(...)`` call that builds the model these weights belong to."""
        kwargs = "".join(f", {k}={v!r}" for k, v in self.model_kwargs.items())
        return f"zoo.create_model({self.arch!r}{kwargs})"


_FIELDS = frozenset(f.name for f in dataclasses.fields(CheckpointMeta))


def legacy_data_config(fields: dict[str, Any]) -> dict[str, Any]:
    """Format 1's loose data fields as a :class:`DataConfig`'s JSON. Its padding rule (``pad``, else the dataset's)
    becomes timm's crop_pct, its ``init`` the base model; mirror symmetry, which it did not record, is the
    registered dataset's (off for any other)."""
    size = fields["input_size"]
    spec = find_spec(fields.get("dataset"))
    pad = fields.get("pad")
    if pad is None:
        pad = spec.pad if spec else 0
    out = {"input_size": size, "mean": fields.get("mean"), "std": fields.get("std"),
           "crop_pct": size[1] / (size[1] - 2 * pad), "mirror": bool(spec and spec.mirror),
           "label_names": fields.get("label_names"), "dataset": fields.get("dataset"),
           "dataset_sha256": fields.get("dataset_sha256"), "metrics": fields.get("metrics"), "base_model": fields.get("init")}
    return {k: v for k, v in out.items() if v is not None}


def _malformed(where: str, detail: str) -> CheckpointError:
    return CheckpointError(f"{where} has malformed zoo metadata ({detail}); re-save it with zoo.save_pretrained")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def unwrap_zoo_model(model: nn.Module, what: str) -> ZooModel:
    """The zoo model inside ``model``'s wrappers (:func:`unwrap_model`), for ``what``, which reads what only zoo models
    carry (their arch, classes, data contract); any other module is refused."""
    base = unwrap_model(model)
    if not isinstance(base, ZooModel):
        raise ArgumentError(f"{what} takes a zoo model (zoo.create_model, zoo.load_model, timm's zoo_* models), not a "
                            f"{type(base).__name__}")
    return base


def strip_prefixes(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the ``module.`` / ``_orig_mod.`` prefixes wrappers add, in any order and number."""
    out = {}
    for key, value in tensors.items():
        name = key
        while name.startswith(WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in out:
            raise CheckpointError(f"key {key!r} collides with another once wrapper prefixes are stripped")
        out[name] = value
    return out


def state_dict_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors to save: the unwrapped model's state_dict, detached, on the CPU."""
    return {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}


def _some(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _finite(t: torch.Tensor) -> bool:
    # min and max propagate NaN and show an infinity; one aminmax pass is ~15x faster than isfinite().all()
    return t.numel() == 0 or bool(torch.isfinite(torch.stack(torch.aminmax(t))).all())


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse values no trained model holds, on every load, pinned by a digest or not: NaN or infinity in any
    floating-point tensor, a negative BatchNorm ``running_var`` (the model would output NaN). One aminmax pass per
    tensor, plus a min of each running_var: 0.10 to 0.34 s (median of 5: 0.22 s vgg19, 0.34 s vgg19_bn) of a 2.4 s
    ``load_model`` of the largest model, 143.7M parameters (2-core AMD EPYC, AVX2, loaded by another job)."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not _finite(v)]
    if bad:
        raise CheckpointError(
            f"{where} has NaN or infinite values in {_some(bad)}: the training run diverged. "
            "Use an earlier checkpoint or retrain with a lower learning rate"
        )
    negative = [k for k, v in tensors.items() if k.endswith("running_var") and v.numel() and v.min() < 0]
    if negative:
        raise CheckpointError(f"{where} has a negative BatchNorm variance in {_some(negative)}: no training run "
                              "writes one, the file was altered or damaged; restore it or re-save the weights")


def read_checkpoint(
    path: str | os.PathLike, *, sha256: Mapping[str, str] | None = None, remedy: str | None = None,
    digest: str | None = None,
) -> tuple[dict[str, torch.Tensor], CheckpointMeta | None]:
    """Read and check a safetensors checkpoint: digests, format, finite values, metadata.

    ``sha256`` maps who pins a digest (``"tag resnet18.mnist_paper"``,
    ``"config.json"``) to the digest; the file must match every one. ``remedy``
    says how to mend a copy that does not (the caller knows where it came from). ``digest`` is the file's
    sha256 when the caller has hashed it already (it is not hashed again).
    """
    path = Path(path)
    check_readable(path, CheckpointError)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    _verify_sha256(path, sha256 or {}, remedy, digest)
    tensors, metadata = load_tensors(path)
    tensors = strip_prefixes(tensors)
    check_finite(tensors, str(path))
    return tensors, CheckpointMeta.from_metadata(metadata, str(path))


def _structure(model: nn.Module) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each module's type and the plain int/bool/str/tuple attributes that shape its computation.

    Two models with equal parameter shapes can still differ here, e.g. a
    GoogLeNet whose Inception modules add an identity shortcut (``residual``).
    Float attributes (dropout rates, BN momentum) and ``inplace`` are left out:
    they do not change what the weights mean.
    """
    out = {}
    for name, module in model.named_modules():
        attrs = {
            k: v
            for k, v in vars(module).items()
            if not k.startswith("_") and k not in ("training", "inplace", "default_input_size") and isinstance(v, (bool, int, str, tuple))
        }
        out[name] = (type(module).__name__, attrs)
    return out


def _names(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _shape_hints(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]
) -> list[str]:
    """``weights have num_classes=10; pass num_classes=10`` style fixes from the classifier and first-conv shapes."""
    hints = []
    for head in _names(getattr(model, "classifier_names", None)):
        key = f"{head}.weight"
        if key in expected and tensors[key].shape[0] != expected[key][0]:
            n = tensors[key].shape[0]
            hints.append(f"weights have num_classes={n}; pass num_classes={n}")
            break
    key = f"{getattr(model, 'first_conv', None)}.weight"
    if key in expected and tensors[key].ndim == 4 and tensors[key].shape[1] != expected[key][1]:
        c = tensors[key].shape[1]
        hints.append(f"weights have in_chans={c}; pass in_chans={c}")
    return hints


def check_recorded_sizes(model: nn.Module, tensors: Mapping[str, torch.Tensor], meta: CheckpointMeta, where: str) -> None:
    """Refuse a file whose classifier rows or first-convolution channels are not the num_classes and in_chans its own
    metadata records: loading with timm's semantics (:func:`fit_head_and_stem`) would take its classifier for one of
    another size and put a fresh one in its place, silently. ``model`` names the classifiers and the first conv."""
    base = unwrap_model(model)
    heads = _names(getattr(base, "classifier_names", None))  # the first is the classifier; others are aux heads
    weight = tensors.get(f"{heads[0]}.weight") if heads else None
    rows = None if weight is None else weight.shape[0]
    if heads and rows != (meta.num_classes or None):  # num_classes=0: no classifier
        held = "no classifier" if rows is None else f"a classifier of {rows} classes"
        raise CheckpointError(f"{where} holds {held} but its metadata records num_classes={meta.num_classes}; the "
                              "file was altered: re-save it with zoo.save_pretrained")
    conv = tensors.get(f"{getattr(base, 'first_conv', None)}.weight")
    if conv is not None and conv.ndim == 4 and conv.shape[1] != meta.in_chans:
        raise CheckpointError(f"{where} holds a first convolution for {conv.shape[1]} channels but its metadata records "
                              f"in_chans={meta.in_chans}; the file was altered: re-save it with zoo.save_pretrained")


def check_compatible(
    model: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    meta: CheckpointMeta | None,
    where: str,
    reference: nn.Module | None = None,
) -> None:
    """Refuse weights that do not belong to ``model``, saying how to build the model they do belong to.

    Keys and shapes must match exactly. ``reference`` is the model the file's
    metadata describes (the caller builds it, e.g. on the meta device); the
    model must then be that architecture: same class and same structure (see
    :func:`_structure`), so weights of ``googlenet_res5x5`` never load silently
    into a ``googlenet_5x5`` of identical shapes.
    """
    model = unwrap_model(model)
    fix = f"build it with {meta.create_call}" if meta else "build the model these weights were saved from"
    arch = repr(meta.arch) if meta else "another architecture's"
    if reference is not None and type(reference) is not type(model):
        raise CheckpointError(
            f"wrong architecture: {where} holds {arch} weights ({type(reference).__name__}), "
            f"the model is a {type(model).__name__}; {fix}"
        )

    state = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    if missing or unexpected:
        parts = [f"{label} {_some(keys)}" for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        aux = getattr(model, "aux_prefixes", ())  # a family's training-only heads (zoo.models.layers.ZooModel)
        if aux and unexpected and not missing and all(k.startswith(aux) for k in unexpected):
            fix = f"the weights include the auxiliary classifiers: pass aux_logits=True, or {fix}"
        elif aux and missing and not unexpected and all(k.startswith(aux) for k in missing):
            fix = f"the weights have no auxiliary classifiers: pass aux_logits=False, or {fix}"
        raise CheckpointError(f"{where} does not match the model's keys ({'; '.join(parts)}): {fix}")

    mismatched = [k for k in expected if tuple(tensors[k].shape) != expected[k]]
    if mismatched:
        shown = _some([f"{k} {tuple(tensors[k].shape)} vs model {expected[k]}" for k in mismatched], 3)
        hints = _shape_hints(model, tensors, expected)
        advice = "; ".join(hints) + (f" ({fix})" if meta else "") if hints else fix
        raise CheckpointError(f"shape mismatch between {where} and the model ({shown}): {advice}")

    _check_dtypes(state, tensors, where)
    detail = structure_difference(model, reference, meta.arch) if reference is not None and meta else None
    if detail:
        raise CheckpointError(
            f"wrong architecture: {where} holds {arch} weights but the model differs ({detail}); {fix}"
        )


def _check_dtypes(state: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Weights load into the model's dtype only between 16- and 32-bit floats (fp16 bundles into fp32 models,
    and back), and only when every value stays finite there; float64 or integer where the model differs is refused."""
    for key, want in ((k, v.dtype) for k, v in state.items()):
        got = tensors[key].dtype
        if got == want:
            continue
        if not (got.is_floating_point and want.is_floating_point and torch.float64 not in (got, want)):
            raise CheckpointError(
                f"{where} stores {key} as {got}, the model holds {want}: zoo does not cast weights silently; "
                f"convert the model (e.g. model.to({got})) or re-save the weights as {want}"
            )
        if not _finite(tensors[key].to(want)):
            raise CheckpointError(f"{where}: {key} does not fit in {want} (values overflow to infinity); load it into a {got} model")


def structure_difference(model: nn.Module, reference: nn.Module, label: str) -> str | None:
    """The first structural difference between ``model`` and ``reference`` (named ``label``), or None.

    Compares class, module tree and :func:`_structure` attributes, which imply
    every parameter's key and shape.
    """
    model = unwrap_model(model)
    if type(model) is not type(reference):
        return f"{label} is a {type(reference).__name__}, the model a {type(model).__name__}"
    ours, theirs = _structure(model), _structure(reference)
    for name in [*theirs, *(n for n in ours if n not in theirs)]:
        (kind, attrs), (got_kind, got_attrs) = theirs.get(name, ("nothing", {})), ours.get(name, ("nothing", {}))
        if got_kind != kind:
            return f"{name} is {_a(kind)} in {label}, {_a(got_kind)} in the model"
        diff = sorted(k for k in attrs.keys() | got_attrs.keys() if attrs.get(k) != got_attrs.get(k))
        if diff:
            return ", ".join(
                f"{f'{name}.' if name else ''}{k} is {attrs.get(k)!r} in {label}, {got_attrs.get(k)!r} in the model"
                for k in diff
            )
    return None


def _a(kind: str) -> str:
    return kind if kind == "nothing" else f"a {kind}"


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """A first convolution's weight for ``in_chans`` input channels, as timm's ``adapt_input_conv`` makes it: to one
    channel the channels' sum (a grey image gives what its RGB copy gave); otherwise the channels repeated
    cyclically and scaled by (old / new), so an image repeated across channels gives the same response. Generalised
    from timm's 3-channel source to any."""
    dtype, w = weight.dtype, weight.float()
    out_c, old = w.shape[:2]
    if in_chans < old and old % in_chans == 0:
        w = w.reshape(out_c, in_chans, old // in_chans, *w.shape[2:]).sum(2)
    else:
        w = w.repeat(1, math.ceil(in_chans / old), 1, 1)[:, :in_chans] * (old / in_chans)
    return w.to(dtype)


def fit_head_and_stem(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` made to fit ``model`` where timm's pretrained loading would: classifiers of another size (or
    none) keep the model's fresh ones, a first convolution for other input channels is adapted
    (:func:`adapt_input_conv`). Every other tensor is left as it is, for the strict check to judge."""
    base = unwrap_model(model)
    state = base.state_dict()
    out = dict(tensors)
    heads = [f"{name}.{p}" for name in _names(getattr(base, "classifier_names", None)) for p in ("weight", "bias")]
    for key in heads:
        if key in out and (key not in state or tuple(state[key].shape) != tuple(out[key].shape)):
            out.pop(key)
        if key in state and key not in out:
            out[key] = state[key]
    conv = f"{getattr(base, 'first_conv', None)}.weight"
    if conv in out and conv in state and out[conv].ndim == 4 and out[conv].shape[1] != state[conv].shape[1]:
        out[conv] = adapt_input_conv(state[conv].shape[1], out[conv])
    return out


def load_into(
    model: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    meta: CheckpointMeta | None,
    where: str,
    reference: nn.Module | None = None,
) -> nn.Module:
    """Check ``tensors`` against ``model`` (:func:`check_compatible`) and copy them in; returns ``model``."""
    check_compatible(model, tensors, meta, where, reference)
    unwrap_model(model).load_state_dict(tensors, strict=True)
    return model
