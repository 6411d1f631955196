"""Modules built with direct registration (``torch_backend/registration.py``) equal those built the ordinary way.

The ordinary path is forced by registering a global registration hook, the one
case where direct registration would skip something.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from diagrammatic_learning import layer
from diagrammatic_learning.diagram import Architecture
from diagrammatic_learning.torch_backend import build_module
from diagrammatic_learning.torch_backend.layer_modules import Linear
from diagrammatic_learning.torch_backend.registration import quiet

ARCHITECTURES = {
    "one linear": Architecture((layer("linear", in_features=4, out_features=3),)),
    "no bias": Architecture((layer("linear", in_features=5, out_features=2, bias=False), layer("relu"))),
    "branches": Architecture(
        (layer("linear", in_features=6, out_features=2),),
        inputs=((layer("linear", in_features=3, out_features=4), layer("tanh")),
                (layer("linear", in_features=2, out_features=2),)),
        combine="concat"),
    "trunk only, combined": Architecture((layer("linear", in_features=3, out_features=1),), combine="add"),
    "embedding and lstm": Architecture((layer("embedding", num_embeddings=7, embedding_dim=3),
                                        layer("lstm", input_size=3, hidden_size=2), layer("last_step"))),
}


@contextlib.contextmanager
def registration_hooks(seen: list) -> Iterator[None]:
    """Global parameter and module registration hooks recording (kind, name) while the block runs."""
    handles = [
        torch_module.register_module_parameter_registration_hook(lambda m, n, p: seen.append(("parameter", n))),
        torch_module.register_module_module_registration_hook(lambda m, n, c: seen.append(("module", n))),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def shape_of(m: nn.Module) -> list:
    """Everything about a module tree except parameter values: types, attribute names, children, parameters."""
    return [(name, type(sub).__name__, sorted(sub.__dict__), list(sub._modules), list(sub._parameters),
             {k: (tuple(v.shape), v.dtype, v.requires_grad, type(v).__name__) if v is not None else None
              for k, v in sub._parameters.items()},
             {k: v for k, v in sub.__dict__.items() if isinstance(v, (int, float, str, bool, type(None)))})
            for name, sub in m.named_modules()]


def test_quiet_only_without_global_registration_hooks():
    assert quiet()
    with registration_hooks([]):
        assert not quiet()
    assert quiet()
    handle = torch_module.register_module_buffer_registration_hook(lambda m, n, b: None)
    try:
        assert not quiet()
    finally:
        handle.remove()


def test_direct_and_ordinary_registration_build_equal_modules():
    for name, arch in ARCHITECTURES.items():
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(3)
            fast = build_module(arch, dtype)
            after_fast = torch.rand(2)
            seen: list = []
            with registration_hooks(seen):
                torch.manual_seed(3)
                ordinary = build_module(arch, dtype)
            after_ordinary = torch.rand(2)
            assert seen, name  # the ordinary path ran, and called the hooks
            assert ("module", "layers") in seen and ("parameter", "weight") in seen, name
            assert shape_of(fast) == shape_of(ordinary), name
            a, b = fast.state_dict(), ordinary.state_dict()
            assert list(a) == list(b), name
            assert all(torch.equal(a[k], b[k]) for k in a), name
            assert torch.equal(after_fast, after_ordinary), name  # the generator advanced alike
            assert [n for n, _ in fast.named_parameters()] == [n for n, _ in ordinary.named_parameters()]


def test_direct_linear_is_an_ordinary_nn_linear():
    """Attribute assignment, deletion, ``repr``, ``load_state_dict`` and hooks behave as on nn.Linear."""
    torch.manual_seed(0)
    ours = Linear(3, 2)
    torch.manual_seed(0)
    theirs = nn.Linear(3, 2)
    assert repr(ours) == repr(theirs)
    assert sorted(ours.__dict__) == sorted(theirs.__dict__)
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    ours.load_state_dict(theirs.state_dict())
    ours.bias = None  # through Module.__setattr__, as on any module
    assert ours.bias is None and "bias" in ours._parameters
    calls = []
    ours.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    ours(torch.ones(4, 3))
    assert calls == [torch.Size([4, 2])]


def test_a_pytorch_without_the_hook_tables_takes_the_ordinary_path(monkeypatch):
    import types

    from diagrammatic_learning.torch_backend import registration
    monkeypatch.setattr(registration, "_module", types.SimpleNamespace())  # where they were looked for
    assert not quiet()
    torch.manual_seed(1)
    built = build_module(ARCHITECTURES["branches"])
    monkeypatch.undo()
    torch.manual_seed(1)
    assert shape_of(built) == shape_of(build_module(ARCHITECTURES["branches"]))


def test_modules_built_directly_share_no_container():
    from diagrammatic_learning.torch_backend.registration import init_module, new_module
    a, b = build_module(ARCHITECTURES["branches"]), build_module(ARCHITECTURES["branches"])
    for (_, x), (_, y) in zip(a.named_modules(), b.named_modules()):
        for name, value in x.__dict__.items():
            if isinstance(value, (dict, set)):
                assert value is not y.__dict__[name], name
    plain, ours = nn.Module(), new_module(nn.Module)
    assert sorted(plain.__dict__) == sorted(ours.__dict__)
    assert all(type(plain.__dict__[k]) is type(ours.__dict__[k]) and plain.__dict__[k] == ours.__dict__[k]
               for k in plain.__dict__)
    again = nn.Module()
    init_module(again)  # no container of the first init survives a second
    assert again._forward_hooks is not plain._forward_hooks


def test_a_module_state_that_is_not_only_empty_containers_and_flags_takes_nn_module_init(monkeypatch):
    from diagrammatic_learning.torch_backend import registration
    registration._module_state.cache_clear()
    real_init = nn.Module.__init__

    def init_with_a_filled_table(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        object.__setattr__(self, "_something_new", {"filled": 1})

    monkeypatch.setattr(nn.Module, "__init__", init_with_a_filled_table)
    try:
        assert registration._module_state() is None
        built = registration.new_module(nn.Module)
        assert built._something_new == {"filled": 1}
    finally:
        monkeypatch.undo()
        registration._module_state.cache_clear()
    assert registration._module_state() is not None
