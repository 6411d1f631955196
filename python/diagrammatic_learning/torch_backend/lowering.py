"""A compiled diagram's plan lowered to straight-line Python: one traceable function computing the loss.

The plan (``plan.py``) lists every distinct term once, children first. This
module turns it into the source of one function ``run(model, batch, mode)``
whose ending depends on ``mode`` (a Python int, fixed per call site):

- ``FORWARD``: the total loss;
- ``LOSSES``: the total and a detached vector ``[total, d₀, d₁, …]`` of the
  equations' distances (what ``fit`` records), read back at most once a step;
- ``EVALUATE``: the total, every distance and every term's value.

The code has no loop and no branch on tensor values: ``torch.compile(model,
fullgraph=True)`` traces it into one graph and ``torch.export`` exports it.
Every step is one line:

- a data column: ``v0 = batch['image']`` (moved to the compute dtype and
  device only when it is not there already);
- a function arrow: ``v3 = OP[1](v2)``;
- a model arrow built from its architecture (an ``ArchitectureModule``): its
  layers called one by one, without the wrapper: ``v4 = L1['0'](v3)``, then the
  next layer; ``embedding`` is ``F.embedding`` on the layer's weight (the batch
  check has already bounded its indices), ``lstm`` the layer itself, or under
  tracing the same recurrence written out (Dynamo does not trace ``nn.LSTM``);
- any other module (external arrows, replacements): ``model._apply_model``,
  which checks an external module's first output;
- a stop-gradient or frozen-call node is one line too: a new step kind adds
  one case to ``_Writer.step``.

While ``torch.compile`` or ``torch.export`` traces, ``run`` hands over to a
second function, ``run_traced``, that computes the same (``is_compiling() or
is_exporting()`` is decided at trace time and leaves nothing in the graph). A compiled call pays
Dynamo's guards, one per value the traced code read from a Python object, a
few microseconds a call in all, so ``run_traced`` reads as few as it can: the
batch check's rules are literals of the code (``batch_check.check_traced``),
each layer is called as a module (Dynamo follows its hooks as for any module;
the eager code's tests that spare ``nn.Module.__call__`` would each be guards),
``lstm`` is written out, the record that a batch ran is a constant, and no
object is reached by two ways (Dynamo guards each such pair with a Python-level
identity test): the global-hook test is a constant of the trace
(``no_global_hooks_traced``). Hooks registered after ``torch.compile`` are seen
as Dynamo sees them for any module: not by default
(``torch._dynamo.config.skip_nnmodule_hook_guards``), after a recompile when
that option is off (layer and arrow hooks; a global hook only on a new trace).

Modules are looked up through ``model._modules`` at every call, so a layer
swapped inside an arrow's module is used on the next batch; ``replace``,
``.to()`` and dtype changes write the code again.

Equations with the same distance, object shape (kind, shape, classes,
dtype), data object and right-hand encoding (``GROUP_MIN`` or more) are computed together by one batched
distance (``batched_distances.py``); the others one by one. The total sums
the weighted distances in equation order, as SPEC §6.3 says; a group adds its
weighted sum at the place of its first equation.

Plans too large to be worth writing out (``CODEGEN_LIMIT`` steps and
equations) run through ``interpreter.Interpreter``, a loop over the same steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F

from ..diagram import Architecture, Diagram, ModelArrow
from .architecture import ArchitectureModule
from .batch_check import check_traced
from .functions import function_op
from .interpreter import Interpreter
from .layer_modules import LSTM, Embedding
from .pieces import EVALUATE, FORWARD, GROUP_MIN, LOSSES, ROWS, Piece, Program, equation_pieces, no_global_hooks
from .plan import Plan, _int_column
from .weights import to_tensor

if TYPE_CHECKING:  # pragma: no cover
    from .compiler import CompiledDiagram

__all__ = ["CODEGEN_LIMIT", "EVALUATE", "FORWARD", "GROUP_MIN", "LOSSES", "ROWS", "Program", "embedding_columns",
           "equation_pieces", "lstm_unrolled", "write"]

CODEGEN_LIMIT = 4000   # steps + equations above which the plan is interpreted instead of written out


# ----------------------------------------------------------------------------- helpers the code calls


def no_global_hooks_traced() -> bool:
    """``no_global_hooks()`` for ``run_traced``: called once while tracing and kept as a constant, with no guard.

    Read by the traced code, ``pieces``' ways to the global hook dictionaries would be second ways to reach
    objects Dynamo reaches through ``nn.Module.__call__`` too, each pair guarded by a Python-level identity
    test on every call. As a constant, a global hook registered after the trace is not seen, which is how
    Dynamo treats every module's hooks by default (``torch._dynamo.config.skip_nnmodule_hook_guards``).
    """
    return no_global_hooks()


# ``torch.compiler.assume_constant_result(no_global_hooks_traced)``, without importing Dynamo (80 MB and a
# second of start-up for everyone who never compiles): that decorator sets only this attribute, which
# Dynamo reads when it meets the call (``tests/test_lowering.py`` checks they agree).
no_global_hooks_traced._dynamo_marked_constant = True  # type: ignore[attr-defined]


def direct(module: str) -> str:
    """The condition under which the generated code calls ``{module}.forward`` instead of ``{module}(...)``.

    Calling a module costs a few microseconds more than calling its ``forward``
    (most of the overhead of a small model's step); the two do the same thing
    exactly when ``nn.Module._call_impl`` would take its fast path: no hook,
    global (``FAST``, ``pieces.no_global_hooks``) or its own, and no
    ``module.compile()`` (``pieces.calls_only_forward``, written out inline).
    """
    return (f"FAST and {module}._compiled_call_impl is None and not ({module}._forward_hooks or "
            f"{module}._forward_pre_hooks or {module}._backward_hooks or {module}._backward_pre_hooks)")


def lstm_unrolled(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                  b_hh: torch.Tensor) -> torch.Tensor:
    """SPEC §4's one-layer ``lstm`` on ``[B, L, in]`` step by step, for tracers that refuse ``nn.LSTM``.

    It takes the parameters, not the module: Dynamo refuses to touch an ``nn.LSTM`` at all.
    """
    inputs = F.linear(x, w_ih, b_ih)  # every step's input part in one product
    h = x.new_zeros(x.shape[0], w_hh.shape[1])
    c = h
    outs = []
    for t in range(x.shape[1]):
        i, f, g, o = (inputs[:, t] + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1)


def embedding_columns(diagram: Diagram, plan: Plan) -> dict[str, tuple[int, str]]:
    """Column → (smallest ``num_embeddings``, model arrow) for each column an ``embedding`` layer reads.

    An embedding takes int64 and every other layer returns floats, so it is the
    first layer of an input branch (or of the trunk of a one-source model), and
    its argument is a column under unary reshapes (``plan._int_column``).
    """
    out: dict[str, tuple[int, str]] = {}
    for step in plan.steps:
        arrow = diagram.arrows[step.arrow]
        if not isinstance(arrow, ModelArrow) or arrow.architecture is None:
            continue
        arch: Architecture = arrow.architecture
        firsts = ([arch.layers[0] if arch.layers else None] if arch.combine is None
                  else [branch[0] if branch else None for branch in (arch.inputs or [[] for _ in step.args])])
        for arg, layer in zip(step.term.args, firsts):
            if layer is None or layer.type != "embedding":
                continue
            column = _int_column(diagram, arg)
            num = int(layer.params["num_embeddings"])
            if column is not None and (column not in out or num < out[column][0]):
                out[column] = (num, arrow.name)
    return out


# ----------------------------------------------------------------------------- the code


class _Writer:
    """Writes the body of ``run`` (or, ``traced``, of ``run_traced``): the batch check, every step, every equation."""

    def __init__(self, model: "CompiledDiagram", traced: bool = False):
        self.model = model
        self.traced = traced
        self.lines: list[str] = []
        self.globals: dict[str, Any] = {
            "torch": torch, "Tensor": torch.Tensor, "to_tensor": to_tensor, "F_embedding": F.embedding,
            "is_compiling": torch.compiler.is_compiling,
            "is_exporting": torch.compiler.is_exporting, "lstm_unrolled": lstm_unrolled, "DT": model.dtype,
            "DEV": model.device,
            "CHECK": model._check_batch.fast, "no_global_hooks": no_global_hooks,
            "CHECK_TRACED": check_traced, "no_global_hooks_traced": no_global_hooks_traced,
        }
        self.tables = 0
        self.stats = ""  # ``LOSSES``' vector, and ``ROWS``' tuple when there is one (``pieces_stats``)
        self.rows = ""
        self.indent = "    "

    def constant(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.globals)}"
        self.globals[name] = value
        return name

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    def step(self, i: int) -> None:
        """The line(s) computing plan step ``i`` into ``v{i}``."""
        m, step = self.model, self.model._plan.steps[i]
        args = [f"v{a}" for a in step.args]
        if step.kind == "data":
            self.emit(f"v{i} = batch[{step.column!r}]")
            if self.traced:  # a tensor (check_traced); ``to`` leaves nothing in the graph when it is already so
                dtype = ", dtype=DT" if step.float_column else ""
                self.emit(f"v{i} = v{i}.to(device={str(m.device)!r}{dtype})")
            elif step.float_column:
                self.emit(f"if not isinstance(v{i}, Tensor) or v{i}.dtype != DT or v{i}.device != DEV: "
                          f"v{i} = to_tensor(v{i}, DT, DEV)")
            else:
                self.emit(f"if not isinstance(v{i}, Tensor) or v{i}.device != DEV: v{i} = to_tensor(v{i}, None, DEV)")
        elif step.kind == "function":
            d = m.diagram
            op = self.constant("OP", function_op(d, d.arrows[step.arrow], m.dtype))
            self.emit(f"v{i} = {op}({', '.join(args)})")
        else:
            module = m._modules[step.arrow]
            if type(module) is ArchitectureModule and step.arrow not in m._unchecked:
                self.architecture(i, step.arrow, module, args)
            else:
                self.emit(f"v{i} = self._apply_model({step.arrow!r}, [{', '.join(args)}], {i})")

    def layers(self, path: str, sequential: torch.nn.Module, x: str) -> str:
        """Lines applying the layers of ``sequential`` (reached by ``path``) to ``x``; the name of the result."""
        if not sequential._modules:
            return x
        self.tables += 1
        table = f"L{self.tables}"
        self.emit(f"{table} = {path}._modules")
        for key, layer in sequential._modules.items():
            out = f"t{len(self.lines)}"
            if type(layer) is Embedding:  # indices bounded by the batch check (embedding_columns)
                self.emit(f"{out} = F_embedding({x}, {table}[{key!r}].weight)")
            elif type(layer) is LSTM and self.traced:
                # the parameters as they are now (``replace`` and ``.to()`` write the code again)
                weights = self.constant("P", (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0,
                                              layer.bias_hh_l0))
                self.emit(f"{out} = lstm_unrolled({x}, *{weights})")
            elif self.traced or type(layer) is LSTM:
                # traced, a module call: Dynamo's own handling of the layer's hooks, as for any module
                self.emit(f"{out} = {table}[{key!r}]({x})")
            else:  # the layer's forward itself unless calling it as a module would do more (see ``direct``)
                layer_name = f"l{len(self.lines)}"
                self.emit(f"{layer_name} = {table}[{key!r}]")
                self.emit(f"{out} = {layer_name}.forward({x}) if {direct(layer_name)} else {layer_name}({x})")
            x = out
        return x

    def architecture(self, i: int, name: str, module: ArchitectureModule, args: list[str]) -> None:
        """An ``ArchitectureModule`` inlined: branches, combine, trunk, as ``ArchitectureModule.forward`` does.

        If hooks are registered on the arrow's module (at the time of the call) it is called as a module.
        """
        self.tables += 1
        arrow = f"A{self.tables}"
        self.emit(f"M{self.tables} = self._modules[{name!r}]")
        self.emit(f"if not ({direct(f'M{self.tables}')}):")
        self.emit(f"    v{i} = M{self.tables}({', '.join(args)})")
        self.emit("else:")
        self.indent += "    "
        self.emit(f"{arrow} = M{self.tables}._modules")
        self.inline(i, arrow, module, args)
        self.indent = self.indent[:-4]

    def inline(self, i: int, arrow: str, module: ArchitectureModule, args: list[str]) -> None:
        xs = list(args)
        if module.combine is not None and module.inputs is not None:
            xs = [self.layers(f"{arrow}['inputs']._modules[{str(k)!r}]", branch, x)
                  for k, (branch, x) in enumerate(zip(module.inputs, xs))]
        if module.combine is None:
            x = xs[0]
        elif module.combine == "concat":
            x = f"torch.cat(({', '.join(xs)},), dim=-1)"
        elif module.combine == "add":
            x = " + ".join(xs)
        else:  # prepend: [B, F] and [B, L, F] → [B, L+1, F]
            x = f"torch.cat(({xs[0]}.unsqueeze(1), {xs[1]}), dim=1)"
        if x not in xs:
            self.emit(f"c{i} = {x}")
            x = f"c{i}"
        self.emit(f"v{i} = {self.layers(f'{arrow}[' + repr('layers') + ']', module.layers, x)}")

    def equations(self, pieces: Sequence[Piece]) -> list[str]:
        """Lines computing each piece into ``p{k}``; returns the distance expression of each equation."""
        plan = self.model._plan
        distances = [""] * len(plan.equations)
        addends = []
        for k, piece in enumerate(pieces):
            fn = self.constant("D", piece.fn)
            eqs = [plan.equations[e] for e in piece.equations]
            if piece.group:
                lhs = ", ".join(f"v{e.lhs}" for e in eqs)
                rhs = ", ".join(f"v{e.rhs}" for e in eqs)
                self.emit(f"p{k} = {fn}(torch.stack(({lhs},)), torch.stack(({rhs},)))")
                for j, e in enumerate(piece.equations):
                    distances[e] = f"p{k}[{j}]"
                if all(w == 1.0 for w in piece.weights):
                    addends.append(f"p{k}.sum()")
                else:
                    w = self.constant("W", torch.tensor(piece.weights, dtype=self.model.dtype,
                                                        device=self.model.device))
                    addends.append(f"(p{k} * {w}).sum()")
            else:
                self.emit(f"p{k} = {fn}(v{eqs[0].lhs}, v{eqs[0].rhs})")
                distances[piece.equations[0]] = f"p{k}"
                w = piece.weights[0]
                addends.append(f"p{k}" if w == 1.0 else f"{w!r} * p{k}")
        if addends:  # left to right as SPEC §6.3 sums; a line per 64 addends keeps the expression shallow
            self.emit(f"total = {' + '.join(addends[:64])}")
            for start in range(64, len(addends), 64):
                self.emit(f"total = total + {' + '.join(addends[start:start + 64])}")
        else:
            self.emit("total = torch.zeros((), dtype=DT, device=DEV)")
        self.pieces_stats(pieces, distances)
        return distances

    def pieces_stats(self, pieces: Sequence[Piece], distances: list[str]) -> None:
        """The expression of ``[total, d₀, d₁, …]``, kept for ``losses``."""
        if not any(p.group for p in pieces):
            self.stats = f"torch.stack((total, {''.join(d + ', ' for d in distances)}))"
            self.rows = f"(total.detach(), {''.join(d + '.detach(), ' for d in distances)})"
            return
        parts, order = ["total.reshape(1)"], []
        for k, piece in enumerate(pieces):
            parts.append(f"p{k}" if piece.group else f"p{k}.reshape(1)")
            order.extend(piece.equations)
        self.stats = f"torch.cat(({', '.join(parts)},))"
        if order != sorted(order):
            where = {e: 1 + j for j, e in enumerate(order)}
            perm = self.constant("PERM", torch.tensor([0] + [where[e] for e in range(len(order))],
                                                      device=self.model.device))
            self.stats += f"[{perm}]"


def _function(model: "CompiledDiagram", pieces: Sequence[Piece], traced: bool) -> tuple[str, dict[str, Any]]:
    """The source of ``run`` (or, ``traced``, ``run_traced``) and the globals it reads."""
    plan = model._plan
    w = _Writer(model, traced)
    if traced:  # the rules as literals: constants of the code, on which Dynamo installs no guard
        check = model._check_batch
        w.emit(f"CHECK_TRACED(batch, self._check_values, {check.rules!r}, {check.ranges!r})")
    else:
        w.emit("if is_compiling() or is_exporting():")  # ``tracing()`` inline: fewer objects for Dynamo to guard
        w.emit("    return run_traced(self, batch, mode)")
        w.emit("CHECK(batch, self._check_values)")
    w.emit(f"FAST = no_global_hooks{'_traced' if traced else ''}()")
    for i in range(len(plan.steps)):
        w.step(i)
    distances = w.equations(pieces)
    w.emit('self._last["ran"] = True')  # a constant: traced, Dynamo guards nothing for it
    body = "\n".join(w.lines)
    values = "".join(f"v{i}, " for i in range(len(plan.steps)))
    rows = f"    if mode == {ROWS}:\n        return total, {w.rows}\n" if w.rows else ""
    source = (f"def run{'_traced' if traced else ''}(self, batch, mode):\n{body}\n"
              f"    if mode == {FORWARD}:\n        return total\n{rows}"
              f"    if mode == {LOSSES} or mode == {ROWS}:\n        with torch.no_grad():\n            stats = {w.stats}\n"
              f"        return total, stats\n"
              f"    return total, [{''.join(d + ', ' for d in distances)}], [{values}]\n")
    return source, w.globals


def write(model: "CompiledDiagram") -> Program:
    """The model's plan as generated code (or, above ``CODEGEN_LIMIT``, the interpreter): ``run``, and
    ``run_traced`` for tracers (see the module's docstring), each in its own namespace."""
    plan = model._plan
    pieces = equation_pieces(model)
    if len(plan.steps) + len(plan.equations) > CODEGEN_LIMIT:
        return Interpreter(model, pieces).program()
    name = f"<diagram {model.diagram.name}>"
    traced_source, traced_globals = _function(model, pieces, traced=True)
    exec(compile(traced_source, name, "exec"), traced_globals)  # noqa: S102 - our own code
    source, namespace = _function(model, pieces, traced=False)
    namespace["run_traced"] = traced_globals["run_traced"]
    exec(compile(source, name, "exec"), namespace)  # noqa: S102 - our own code
    return Program(namespace["run"], source, traced_source)
