"""Registering parameters and child modules without ``nn.Module.__setattr__``'s checks, when nothing watches.

Building a module the ordinary way (``self.weight = Parameter(...)``,
``nn.Sequential(*layers)``) goes through ``register_parameter`` and
``add_module``, whose name checks call ``hasattr`` on the module: a failing
``__getattr__`` that formats an error message each time. That is most of the
time of building a small layer, and a diagram with 5,000 linear models builds
15,000 modules. The compiler only ever registers fresh, valid names on modules
it has just made, so those checks cannot fail there; what registration does
besides (storing the value in ``_parameters`` or ``_modules``) is done here
directly.

``nn.Module.__init__`` itself sets seventeen attributes one
``object.__setattr__`` call at a time; ``init_module(m)`` gives a module the
same state (fresh empty containers, the same flags: copied from what
``nn.Module()`` holds) in one dictionary update.

The one thing those methods do that matters to anyone else is calling the
global registration hooks (``nn.modules.module.register_module_*_registration_hook``).
While any is registered, or if a PyTorch version no longer has them where this
module looks, ``quiet()`` is False and every helper here takes the ordinary
path (``tests/test_registration.py`` checks both paths build equal modules).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Iterable, TypeVar

from torch import nn
from torch.nn.modules import module as _module

M = TypeVar("M", bound=nn.Module)


def quiet() -> bool:
    """True when no global registration hook is set, so direct registration does what ``setattr`` would."""
    try:
        return not (_module._global_parameter_registration_hooks or _module._global_module_registration_hooks
                    or _module._global_buffer_registration_hooks)
    except AttributeError:  # a PyTorch that keeps them elsewhere: always the ordinary path
        return False


@lru_cache(maxsize=1)
def _module_state() -> tuple[tuple[str, Callable[[], Any] | None, Any], ...] | None:
    """What ``nn.Module.__init__`` sets, as (name, container type or None, value); None if not only that."""
    out = []
    for name, value in nn.Module().__dict__.items():
        if isinstance(value, (dict, set)):
            if value:  # a container that starts filled: not something to copy blindly
                return None
            out.append((name, type(value), None))
        elif value is None or isinstance(value, bool):
            out.append((name, None, value))
        else:
            return None
    return tuple(out)


def init_module(m: nn.Module) -> None:
    """``nn.Module.__init__(m)``: the same attributes, each container new, set in one update."""
    state = _module_state()
    if state is None:
        nn.Module.__init__(m)
    else:
        m.__dict__.update({name: make() if make is not None else value for name, make, value in state})


def new_module(cls: type[M]) -> M:
    """An instance of ``cls`` with ``nn.Module``'s state and none of its own ``__init__`` run."""
    m = cls.__new__(cls)
    init_module(m)
    return m


def set_parameter(owner: nn.Module, name: str, param: nn.Parameter | None, fast: bool) -> None:
    """``owner.<name> = param`` (``register_parameter`` when ``param`` is None) on a module just built."""
    if fast:
        owner._parameters[name] = param
    else:
        owner.register_parameter(name, param)


def set_child(owner: nn.Module, name: str, child: nn.Module | None, fast: bool) -> None:
    """``owner.<name> = child`` on a module just built (a child module, or None for an absent one)."""
    if fast:
        if child is None:
            owner.__dict__[name] = None
        else:
            owner._modules[name] = child
    else:
        setattr(owner, name, child)


def sequential(children: Iterable[nn.Module]) -> nn.Sequential:
    """``nn.Sequential(*children)``: children named ``"0"``, ``"1"``, …"""
    return _numbered(nn.Sequential, children) if quiet() else nn.Sequential(*children)


def module_list(children: Iterable[nn.Module]) -> nn.ModuleList:
    """``nn.ModuleList(children)``: children named ``"0"``, ``"1"``, …"""
    return _numbered(nn.ModuleList, children) if quiet() else nn.ModuleList(children)


def _numbered(cls: type[M], children: Iterable[nn.Module]) -> M:
    """A container of ``cls`` (its ``__init__`` without children sets nothing more) holding ``children``."""
    out = new_module(cls)
    for i, child in enumerate(children):
        out._modules[str(i)] = child
    return out
