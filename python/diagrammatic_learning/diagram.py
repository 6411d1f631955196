"""The diagram as plain data: objects, arrows, architectures and equations.

These dataclasses mirror the interchange format (schema/SPEC.md) one to one.
They hold no behaviour beyond small conveniences; checking lives in
``validate``, reading and writing in ``io``, term enumeration in ``terms``.
A ``Diagram`` also offers a builder API::

    d = Diagram("supervised")
    D = d.data("D")
    X = d.tensor("X", shape=[64])
    Y = d.categorical("Y", classes=10)
    x = d.data_arrow("x", D, X, column="image")
    y = d.data_arrow("y", D, Y, column="label")
    d.model("classifier", X, Y, mlp(64, 32, 10))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

from .versions import OP_SINCE, later

FORMAT = "learning-diagram"
FORMAT_VERSION = "1.0"
DEFAULT_MAX_TERMS = 256
DEFAULT_MAX_TERM_SIZE = 1000
DEFAULT_MAX_EQUATIONS = 10000
DEFAULT_MAX_TOTAL_TERMS = 100000  # terms found over all objects while enumerating (SPEC §5.3)


# ----------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class Distance:
    """A distance by name with its parameters, e.g. ``Distance("kl_div", {"temperature": 4.0})``."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, **dict(self.params)}


@dataclass(frozen=True)
class DataObject:
    """A source of examples; its arrows read columns of a batch."""

    name: str
    kind: str = field(default="data", init=False)


@dataclass(frozen=True)
class TensorObject:
    """Per-example arrays of a fixed ``shape`` and ``dtype`` (float32, float64 or int64)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    distance: Distance | None = None
    kind: str = field(default="tensor", init=False)

    @property
    def is_float(self) -> bool:
        return self.dtype != "int64"


@dataclass(frozen=True)
class CategoricalObject:
    """A distribution over ``classes`` classes at each position of ``shape``."""

    name: str
    classes: int
    shape: tuple[int, ...] = ()
    distance: Distance | None = None
    kind: str = field(default="categorical", init=False)


Object = Union[DataObject, TensorObject, CategoricalObject]


# ----------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class Layer:
    """One layer of the vocabulary (SPEC §4): its ``type`` and its parameters as given."""

    type: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"type": self.type, **dict(self.params)}


@dataclass(frozen=True)
class Architecture:
    """A portable network: optional per-input branches, a combine step, then a trunk."""

    layers: tuple[Layer, ...]
    inputs: tuple[tuple[Layer, ...], ...] | None = None
    combine: str | None = None


# ----------------------------------------------------------------------------- arrows


@dataclass(frozen=True)
class DataArrow:
    """Reads batch column ``column`` of data object ``source`` into object ``target``."""

    name: str
    source: str  # a tuple only in a file that validation rejects (data-arrow-source)
    target: str
    column: str
    encoding: str | None = None  # categorical targets only: "index" (default) or "probabilities"
    kind: str = field(default="data", init=False)

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)


@dataclass(frozen=True)
class FunctionArrow:
    """A fixed built-in operation (SPEC §3.2) from ``sources`` to ``target``."""

    name: str
    sources: tuple[str, ...]
    target: str
    op: str
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: str = field(default="function", init=False)


@dataclass(frozen=True)
class ModelArrow:
    """A network from ``sources`` to ``target``: a portable architecture or an external module."""

    name: str
    sources: tuple[str, ...]
    target: str
    trainable: bool = True
    architecture: Architecture | None = None
    external: bool = False
    kind: str = field(default="model", init=False)


Arrow = Union[DataArrow, FunctionArrow, ModelArrow]


# ----------------------------------------------------------------------------- equations


@dataclass(frozen=True)
class ExplicitEquation:
    """An equation written in the file (SPEC §6.2), terms still as text."""

    lhs: str
    rhs: str
    distance: Distance | None = None
    weight: float | None = None
    name: str | None = None


# ----------------------------------------------------------------------------- the diagram


@dataclass
class Diagram:
    """A learning diagram: objects and arrows in declaration order, plus equation settings."""

    name: str | None = None
    description: str | None = None
    objects: dict[str, Object] = field(default_factory=dict)
    arrows: dict[str, Arrow] = field(default_factory=dict)
    automatic: bool = True
    explicit: list[ExplicitEquation] = field(default_factory=list)
    max_terms: int | None = None
    format_version: str = FORMAT_VERSION
    max_term_size: int | None = None
    max_equations: int | None = None
    max_total_terms: int | None = None

    # -- lookups

    @property
    def term_bound(self) -> int:
        return DEFAULT_MAX_TERMS if self.max_terms is None else self.max_terms

    @property
    def term_size_bound(self) -> int:
        """Most arrow occurrences in one enumerated term (SPEC §5.3)."""
        return DEFAULT_MAX_TERM_SIZE if self.max_term_size is None else self.max_term_size

    @property
    def equation_bound(self) -> int:
        """Most equations of the diagram (SPEC §6)."""
        return DEFAULT_MAX_EQUATIONS if self.max_equations is None else self.max_equations

    @property
    def total_term_bound(self) -> int:
        """Most terms enumeration may find over all objects together (SPEC §5.3)."""
        return DEFAULT_MAX_TOTAL_TERMS if self.max_total_terms is None else self.max_total_terms

    def position(self, arrow: str) -> int:
        """The 0-based declaration position of an arrow (the canonical order's alphabet)."""
        return list(self.arrows).index(arrow)

    def data_objects(self) -> list[str]:
        return [n for n, o in self.objects.items() if o.kind == "data"]

    def model_arrows(self) -> list[ModelArrow]:
        return [a for a in self.arrows.values() if a.kind == "model"]

    # -- builder API; each returns the name it added, so results chain naturally

    def _add_object(self, obj: Object) -> str:
        self._check_new_name(obj.name)
        self.objects[obj.name] = obj
        return obj.name

    def _add_arrow(self, arrow: Arrow) -> str:
        self._check_new_name(arrow.name)
        self.arrows[arrow.name] = arrow
        return arrow.name

    def _check_new_name(self, name: str) -> None:
        if name in self.objects or name in self.arrows:
            raise ValueError(f"the name {name!r} is already used in this diagram")

    def data(self, name: str) -> str:
        return self._add_object(DataObject(name))

    def tensor(self, name: str, shape: Sequence[int], dtype: str = "float32",
               distance: Distance | str | None = None) -> str:
        return self._add_object(TensorObject(name, tuple(shape), dtype, _distance(distance)))

    def categorical(self, name: str, classes: int, shape: Sequence[int] = (),
                    distance: Distance | str | None = None) -> str:
        return self._add_object(CategoricalObject(name, classes, tuple(shape), _distance(distance)))

    def data_arrow(self, name: str, source: str, target: str, column: str,
                   encoding: str | None = None) -> str:
        return self._add_arrow(DataArrow(name, source, target, column, encoding))

    def function(self, name: str, source: str | Sequence[str], target: str, op: str,
                 **params: Any) -> str:
        """Add a function arrow; an op newer than the diagram's ``format_version`` raises it (SPEC §1)."""
        if op in OP_SINCE:
            self.format_version = later(self.format_version, OP_SINCE[op])
        return self._add_arrow(FunctionArrow(name, _sources(source), target, op, params))

    def model(self, name: str, source: str | Sequence[str], target: str,
              architecture: Architecture | Sequence[Layer] | None = None, *,
              trainable: bool = True, external: bool = False) -> str:
        if architecture is not None and not isinstance(architecture, Architecture):
            architecture = Architecture(tuple(architecture))
        if (architecture is None) == (not external):
            raise ValueError("a model needs exactly one of an architecture or external=True")
        return self._add_arrow(ModelArrow(name, _sources(source), target, trainable, architecture, external))

    def equation(self, lhs: str, rhs: str, distance: Distance | str | None = None,
                 weight: float | None = None, name: str | None = None) -> None:
        self.explicit.append(ExplicitEquation(lhs, rhs, _distance(distance), weight, name))


def _sources(source: str | Sequence[str]) -> tuple[str, ...]:
    return (source,) if isinstance(source, str) else tuple(source)


def _distance(distance: Distance | str | None) -> Distance | None:
    return Distance(distance) if isinstance(distance, str) else distance


# ----------------------------------------------------------------------------- layer helpers


def layer(type: str, **params: Any) -> Layer:
    """One layer of the vocabulary, e.g. ``layer("linear", in_features=4, out_features=2)``."""
    return Layer(type, params)


def mlp(*sizes: int, activation: str = "relu") -> Architecture:
    """A multilayer perceptron ``sizes[0] → … → sizes[-1]``, activations between linear layers."""
    if len(sizes) < 2:
        raise ValueError("mlp needs at least an input and an output size")
    layers: list[Layer] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers.append(Layer(activation))
        layers.append(Layer("linear", {"in_features": a, "out_features": b}))
    return Architecture(tuple(layers))


def sequential(*layers: Layer | Iterable[Layer]) -> Architecture:
    """An architecture from a list of layers (nested lists are flattened)."""
    flat: list[Layer] = []
    for item in layers:
        flat.extend([item] if isinstance(item, Layer) else item)
    return Architecture(tuple(flat))
