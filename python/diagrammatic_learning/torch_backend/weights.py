"""Weights between safetensors files, mappings and modules: checked first, then copied, all or nothing.

Nothing here unpickles: files are safetensors, mappings hold arrays or tensors.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Union

import numpy as np
import torch
from torch import nn

from ..diagram import Architecture, Diagram, ModelArrow
from ..errors import DiagramError, pointer
from ..io import Source, load
from ..layers import architecture_parameter_shapes
from ..limits import check_architecture_parameters
from ..tensorfiles import as_arrays, check_tensors, check_weights, read_safetensors, write_safetensors
from .architecture import build_module

WeightsSource = Union[str, os.PathLike, Mapping[str, Any]]


def read_weights(source: WeightsSource) -> tuple[dict[str, Any], str]:
    """The tensors of a weights file or mapping, and the name errors should use for it."""
    if isinstance(source, Mapping):
        return as_arrays(source, "weights", "weights"), "weights"
    return read_safetensors(source, "weights"), str(source)


def to_tensor(value: Any, dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """A NumPy array or tensor as a tensor on ``device`` (``dtype`` None keeps its dtype)."""
    if not isinstance(value, torch.Tensor):
        array = np.asarray(value)
        if not array.flags.writeable or any(s < 0 for s in array.strides):
            array = array.copy()  # torch warns on read-only memory and refuses negative strides
        value = torch.from_numpy(array)
    return value.to(device=device, dtype=dtype)


def _local_form(key: str) -> bool:
    """Whether a key names a parameter within one arrow (``layers.0.weight``, ``inputs.1.0.bias``)."""
    head, _, rest = key.partition(".")
    return head in ("layers", "inputs") and rest[:1].isdigit()


def arrow_tensors(want: Mapping[str, tuple[int, ...]], tensors: Mapping[str, Any], source: str, arrow: str,
                  source_arrow: str | None = None) -> tuple[dict[str, Any], str]:
    """One arrow's tensors out of a weights file, checked as SPEC §8 checks a whole file, for that arrow only.

    ``want``: the arrow's parameter shapes (``layers.0.weight`` → shape). The file is
    either a diagram's weights file, whose ``source_arrow.*`` keys are taken (other
    arrows' keys are ignored; ``source_arrow`` defaults to ``arrow``), or, when no key
    has that prefix and ``source_arrow`` is not given, an arrow file
    (``save_arrow``: keys ``layers.0.weight``). Returns the tensors and their key prefix.
    """
    prefix = f"{source_arrow or arrow}."
    own = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    if not own and source_arrow is None and tensors and all(_local_form(k) for k in tensors):
        own, prefix = dict(tensors), ""
    if not own:
        arrows = sorted({k.partition(".")[0] for k in tensors if not _local_form(k)})
        hint = (f"; its arrows: {', '.join(arrows)} (name one: {arrow}={source}:ARROW)" if arrows
                else "; it holds no weights")
        raise DiagramError.one("weights-missing-key", f"{source}#{prefix}",
                               f"{source} has no tensors of arrow {prefix[:-1]!r}{hint}")
    problems = check_tensors(want, own, source, prefix)
    if problems:
        raise DiagramError(problems)
    return own, prefix


def copy_into(module: nn.Module, tensors: Mapping[str, Any], prefix: str = "") -> None:
    """Copy checked tensors into a module's parameters (keys ``prefix + state_dict key``), without autograd."""
    with torch.no_grad():
        for key, target in module.state_dict(keep_vars=True).items():
            target.copy_(to_tensor(tensors[prefix + key]))


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write tensors to a safetensors file atomically, keys as given."""
    write_safetensors({k: v.detach().cpu().numpy() for k, v in tensors.items()}, path)


def model_arrow(diagram: Diagram, name: str, where: str = "arrow") -> ModelArrow:
    """The model arrow called ``name``; ``unknown-arrow`` or ``kind-mismatch`` otherwise."""
    arrow = diagram.arrows.get(name)
    if arrow is None:
        raise DiagramError.one("unknown-arrow", f"{where}#{name}", f"the diagram has no arrow named {name!r}")
    if not isinstance(arrow, ModelArrow):
        raise DiagramError.one("kind-mismatch", pointer("arrows", diagram.position(name)),
                               f"arrow {name!r} is a {arrow.kind} arrow, not a model")
    return arrow


def architecture_of(diagram: Diagram, name: str) -> Architecture:
    """The architecture of model arrow ``name``; ``external-unbound`` for an external arrow, which has none."""
    arrow = model_arrow(diagram, name)
    if arrow.architecture is None:
        raise DiagramError.one("external-unbound", pointer("arrows", diagram.position(name)),
                               f"model {name!r} is external: its module is code you provide, not a file")
    return arrow.architecture


def load_arrow_module(diagram: Source, arrow_name: str, weights_path: str | os.PathLike,
                      dtype: torch.dtype = torch.float32) -> nn.Module:
    """One arrow's trained network as a plain module, from a diagram's weights file or an arrow file.

    ``weights_path`` is either a weights file of the whole diagram (keys
    ``arrow.layers.0.weight``; checked against the whole diagram) or a file
    written by ``CompiledDiagram.save_arrow`` (keys ``layers.0.weight``).
    """
    d = load(diagram)
    arch = architecture_of(d, arrow_name)
    check_architecture_parameters(arch, pointer("arrows", d.position(arrow_name)))
    tensors = read_safetensors(weights_path, "weights")
    source = str(weights_path)
    prefix = f"{arrow_name}."
    if any(k.startswith(prefix) for k in tensors):
        check_weights(d, tensors, source)
    else:
        prefix = ""
        problems = check_tensors(architecture_parameter_shapes(arch), tensors, source)
        if problems:
            raise DiagramError(problems)
    module = build_module(arch, dtype)
    copy_into(module, tensors, prefix)
    return module
