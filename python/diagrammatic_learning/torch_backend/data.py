"""Training data as columns: the bundled digits set, user column files, and a loader of column dicts.

Data is held as *tables*: dicts column name → NumPy array whose rows are
aligned (row i of every column is one example). A diagram's data arrows read
columns (SPEC §8); all columns read through one data object must come from
one table, and different tables are batched independently (the smaller ones
cycle), which is how a few-shot table of 50 labelled digits trains beside
the full table of images.

The bundled data is scikit-learn's 8x8 digits (1797 images, shipped inside
scikit-learn, no download), pixel values scaled to [0, 1], split once with a
fixed seed into 1438 training and 359 test examples. ``--data digits`` on the
command line serves every derived column; ``digits:VIEW`` only those of one
view (see ``DIGITS_VIEWS``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from ..columnfiles import map_columns
from ..diagram import DataArrow, Diagram
from ..errors import DiagramError, Problem
from ..tensorfiles import check_batch, read_npz, read_safetensors

Table = dict[str, np.ndarray]

TEST_FRACTION = 0.2
SPLIT_SEED = 0
FEW_SHOT_PER_CLASS = 5

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Captions are "<digit word> <even|odd> <small|big>"; index 0 ends a caption.
VOCABULARY = ("<end>",) + DIGIT_WORDS + ("even", "odd", "small", "big")
CAPTION_WORDS = 3

DIGITS_VIEWS: dict[str, tuple[str, ...]] = {
    "image": ("image", "image2d", "label"),
    "tasks": ("image", "label", "parity", "big"),
    "fewshot": ("image", "parity", "big", "few_image", "few_label"),
    "halves": ("top", "bottom", "label"),
    "captions": ("image", "caption_in", "caption_out", "label"),
}
"""Named column sets of the digits data. Columns:

- ``image`` float32 [64] (row-major 8x8, in [0, 1]); ``image2d`` float32 [1, 8, 8];
- ``label`` int64 (0–9); ``parity`` int64 (0 even, 1 odd); ``big`` int64 (1 for digits ≥ 5);
- ``top``, ``bottom`` float32 [32]: image rows 0–3 and 4–7;
- ``caption_in`` int64 [3]: the caption's words; ``caption_out`` int64 [4]: the same words then ``<end>``
  (tokens index ``VOCABULARY``), so a model reading (image, caption_in) predicts caption_out step by step;
- ``few_image``, ``few_label``: a separate table; in the training split ``FEW_SHOT_PER_CLASS`` labelled
  examples per class, in the test split the whole test set.
"""


def caption_tokens(label: int) -> list[int]:
    """The caption of a digit as token indices into ``VOCABULARY`` (without the end token)."""
    words = (DIGIT_WORDS[label], "odd" if label % 2 else "even", "big" if label >= 5 else "small")
    return [VOCABULARY.index(w) for w in words]


def caption_text(tokens: Iterator[int] | np.ndarray) -> str:
    """Token indices as words, stopping at the end token."""
    words = []
    for t in tokens:
        if int(t) == 0:
            break
        words.append(VOCABULARY[int(t)])
    return " ".join(words)


def _derived_columns(images: np.ndarray, labels: np.ndarray) -> Table:
    """Every per-example column of the main digits table, from [N, 64] images and [N] labels."""
    n = len(labels)
    captions = np.array([caption_tokens(int(y)) for y in labels], dtype=np.int64).reshape(n, CAPTION_WORDS)
    return {
        "image": images,
        "image2d": images.reshape(n, 1, 8, 8),
        "label": labels,
        "parity": labels % 2,
        "big": (labels >= 5).astype(np.int64),
        "top": np.ascontiguousarray(images[:, :32]),
        "bottom": np.ascontiguousarray(images[:, 32:]),
        "caption_in": captions,
        "caption_out": np.concatenate([captions, np.zeros((n, 1), dtype=np.int64)], axis=1),
    }


def _few_shot_rows(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` rows of each class, in row order (rows are already shuffled)."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images as float32 [N, 64] in [0, 1] and their int64 labels (read once per process)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    return (raw.data / 16.0).astype(np.float32), raw.target.astype(np.int64)


def digits(split: str = "train", few_shot: int = FEW_SHOT_PER_CLASS) -> list[Table]:
    """The digits tables of one split (``"train"``, ``"test"`` or ``"all"``): the main table, then the few-shot one."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', not {split!r}")
    images, labels = _raw_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = round(TEST_FRACTION * len(labels))
    rows = {"test": order[:n_test], "train": order[n_test:], "all": order}[split]
    main = _derived_columns(images[rows], labels[rows])
    few = _few_shot_rows(main["label"], few_shot) if split == "train" else np.arange(len(rows))
    return [main, {"few_image": main["image"][few], "few_label": main["label"][few]}]


def digits_columns(split: str = "train") -> Table:
    """The main digits table of one split (every column but the few-shot ones)."""
    return digits(split)[0]


# ----------------------------------------------------------------------------- naming data on the command line


def _bad_data(spec: str, message: str) -> DiagramError:
    return DiagramError.one("batch-file", spec, message)


def _tables_by_rows(columns: Table) -> list[Table]:
    """Columns of a user file grouped into tables: columns with equal row counts are taken as aligned."""
    tables: dict[int, Table] = {}
    for name, col in columns.items():
        rows = col.shape[0] if col.ndim else -1
        tables.setdefault(rows, {})[name] = col
    return list(tables.values())


def read_data(spec: str, split: str = "train") -> list[Table]:
    """The tables named by a ``--data`` value: ``digits``, ``digits:VIEW``, or a ``.safetensors``/``.npz`` file.

    A file's columns are used as they are, whatever ``split`` says; the bundled
    digits are split into fixed training and test sets. Errors are
    ``batch-file`` naming ``spec``. Safetensors files and uncompressed ``.npz``
    files come back as memory maps (``columnfiles``): rows are read when a
    batch indexes them, so each process of a distributed run reads its shard.
    """
    name, _, view = spec.partition(":")
    if name == "digits":
        tables = digits(split)
        if not view:
            return tables
        if view not in DIGITS_VIEWS:
            raise _bad_data(spec, f"digits has no view {view!r}; views: {', '.join(DIGITS_VIEWS)}")
        keep = set(DIGITS_VIEWS[view])
        return [t for t in ({k: v for k, v in t.items() if k in keep} for t in tables) if t]
    path = Path(spec)
    if path.suffix not in (".safetensors", ".npz"):
        raise _bad_data(spec, f"--data must be 'digits', 'digits:VIEW' (views: {', '.join(DIGITS_VIEWS)}) "
                              f"or a .safetensors or .npz file of columns; got {spec!r}")
    if not path.is_file():
        raise _bad_data(spec, f"no such data file: {spec}")
    columns = map_columns(path)
    if columns is None:
        columns = read_safetensors(path, "batch") if path.suffix == ".safetensors" else read_npz(path, "batch")
    if not columns:
        raise _bad_data(spec, f"{spec} holds no columns")
    return _tables_by_rows(columns)


def row_block(rows: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous block of ``rows`` rows split into ``world_size`` nearly equal blocks."""
    return slice(rows * rank // world_size, rows * (rank + 1) // world_size)


def _block_of(column: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's block of a column's rows (a view); the whole column if the block would be empty."""
    if not column.ndim:
        return column
    block = row_block(len(column), rank, world_size)
    return column[block] if block.start < block.stop else column


def columns_for(diagram: Diagram, tables: list[Table], source: str = "data",
                shard: tuple[int, int] = (0, 1)) -> list[Table]:
    """The tables cut down to the columns the diagram reads, checked against its data arrows (SPEC §8).

    Every column read through one data object must come from one table, so that
    its rows are aligned; otherwise ``batch-size-mismatch`` at ``source#column``.
    Missing columns, shapes and dtypes are checked from the arrays' descriptions;
    class indices over all rows, or, with ``shard=(rank, world_size)``, over
    this rank's contiguous block of each table's rows (``row_block``), so that
    the ranks of a distributed run check every row once between them.
    """
    owner = {col: i for i, t in enumerate(tables) for col in t}
    read = [a for a in diagram.arrows.values() if isinstance(a, DataArrow)]
    merged = {a.column: tables[owner[a.column]][a.column] for a in read if a.column in owner}
    rank, world_size = shard
    if world_size > 1:
        merged = {col: _block_of(v, rank, world_size) for col, v in merged.items()}
    try:
        check_batch(diagram, merged, source)
    except DiagramError as e:
        available = ", ".join(sorted(owner)) or "none"
        raise DiagramError([Problem(p.code, p.pointer, f"{p.message}; its columns: {available}")
                            if p.code == "batch-missing-column" else p for p in e.problems]) from None
    first_table: dict[str, tuple[int, str]] = {}
    problems = []
    for a in read:
        table, col = owner[a.column], a.column
        seen = first_table.setdefault(a.source, (table, col))
        if seen[0] != table:
            problems.append(Problem("batch-size-mismatch", f"{source}#{col}",
                                    f"columns {seen[1]!r} and {col!r} of data object {a.source!r} come from "
                                    f"different tables, so their rows are not the same examples"))
    if problems:
        raise DiagramError(problems)
    used = set(merged)
    return [t for t in ({k: v for k, v in t.items() if k in used} for t in tables) if t]


def load_for(diagram: Diagram, spec: str, split: str = "train", shard: tuple[int, int] = (0, 1)) -> list[Table]:
    """``read_data`` then ``columns_for``: the checked tables a diagram trains on."""
    return columns_for(diagram, read_data(spec, split), spec, shard)


# ----------------------------------------------------------------------------- batching


def _rows(table: Table) -> int:
    return len(next(iter(table.values())))


def _column_tensor(values: np.ndarray, dtype: torch.dtype | None) -> torch.Tensor:
    """A column as a contiguous tensor; float columns in ``dtype`` when it is given."""
    t = torch.from_numpy(np.ascontiguousarray(values))
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t


class ColumnLoader:
    """An iterable of batches (dicts column → torch tensor) drawn from aligned tables.

    One epoch is one pass over the largest table in batches of ``batch_size``
    rows (shuffled with ``seed`` if ``shuffle``); each other table yields a
    batch of ``min(batch_size, rows)`` rows at every step, cycling through
    reshuffled passes of its own. Columns keep their NumPy dtypes unless
    ``dtype`` is given: float columns are then converted to it once, here.
    ``columns``: keep only these (a batch copies only what is read).
    ``pin_memory``: batches are gathered into page-locked memory, so that
    moving them to a CUDA device can overlap compute (ignored without CUDA).

    ``ColumnLoader.for_model(model, tables)`` sets all three for a compiled
    diagram and checks every row once, so its batches need no range check.

    Sharded (``rank``, ``world_size`` > 1, or ``sharded``), it is one rank's
    part of a distributed epoch, with ``DistributedSampler``'s semantics: every
    rank draws the same permutations from ``seed`` (a new one each epoch), the
    largest table's permutation is padded by repeating its start to a multiple
    of ``world_size``, and rank ``r`` takes every ``world_size``-th row from
    ``r``. So the ranks' shards are disjoint (but for the padding) and cover
    the table, every rank takes the same number of steps, and the rows of
    step ``k`` over all ranks are exactly batch ``k`` of an unsharded loader
    with ``batch_size × world_size`` (when the rows divide evenly). Each other
    table's global batch of ``min(batch_size × world_size, rows)`` rows is
    split the same way. Memory-mapped columns (``read_data`` on files) stay
    mapped: a rank reads only the rows of its own batches.
    """

    checked_for: object = None  # the BatchChecker that checked every row (``for_model``), or None

    def __init__(self, tables: list[Table] | Table, batch_size: int = 64, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, *,
                 columns: Iterable[str] | None = None, dtype: torch.dtype | None = None, pin_memory: bool = False):
        tables = [tables] if isinstance(tables, Mapping) else list(tables)
        if columns is not None:
            keep = set(columns)
            tables = [t for t in ({k: v for k, v in t.items() if k in keep} for t in tables) if t]
        if not tables or any(not t for t in tables):
            raise ValueError("ColumnLoader needs at least one non-empty table")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of world_size {world_size}")
        self.tables = [{k: _column_tensor(v, dtype) for k, v in t.items()} for t in tables]
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.sizes = [_rows(t) for t in self.tables]
        self.lead = int(np.argmax(self.sizes))

    def sharded(self, rank: int, world_size: int) -> "ColumnLoader":
        """This loader as rank ``rank``'s shard of ``world_size`` (same tables, same generator state)."""
        if self.world_size != 1:
            raise ValueError("this ColumnLoader is already sharded")
        other = ColumnLoader.__new__(ColumnLoader)
        other.__dict__.update(self.__dict__)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of world_size {world_size}")
        other.rank, other.world_size = rank, world_size
        other.generator = torch.Generator()
        other.generator.set_state(self.generator.get_state())
        return other

    def _shard_rows(self) -> int:
        """How many rows of the largest table this rank reads per epoch (padded like ``DistributedSampler``)."""
        return -(-self.sizes[self.lead] // self.world_size)

    @classmethod
    def for_model(cls, model: Any, tables: list[Table] | Table, batch_size: int = 64, shuffle: bool = True,
                  seed: int = 0, drop_last: bool = False, source: str = "data") -> "ColumnLoader":
        """A loader of the columns ``model`` (a ``CompiledDiagram``) reads, every row checked once.

        The tables are cut to the read columns and checked (``columns_for``:
        presence, dtypes, shapes, class indices, one table per data object),
        then every row against the model's own per-batch rules, embedding
        ranges included (``model.check_source``); float columns are converted
        to the model's dtype once, and batches are pinned for a CUDA model.
        ``fit`` sees ``checked_for`` and skips the per-batch range check.
        """
        checked = columns_for(model.diagram, [tables] if isinstance(tables, Mapping) else list(tables), source)
        model.check_source({k: v for t in checked for k, v in t.items()}, source)
        loader = cls(checked, batch_size, shuffle, seed, drop_last, dtype=model.dtype,
                     pin_memory=model.device.type == "cuda")
        loader.checked_for = model._check_batch
        return loader

    def _take(self, values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if not self.pin_memory:
            return values.index_select(0, rows)
        out = torch.empty((len(rows),) + tuple(values.shape[1:]), dtype=values.dtype, pin_memory=True)
        return torch.index_select(values, 0, rows, out=out)

    def __len__(self) -> int:
        n = self._shard_rows()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)

    def _mine(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global list of row indices: padded by repeating, then every world_size-th."""
        if self.world_size == 1:
            return rows
        total = -(-len(rows) // self.world_size) * self.world_size
        if total > len(rows):
            rows = rows.repeat(-(-total // len(rows)))[:total]
        return rows[self.rank::self.world_size]

    def _cycle(self, k: int) -> Iterator[torch.Tensor]:
        """Endless batches of row indices of table k, each within one pass (this rank's share of each)."""
        size = min(self.batch_size * self.world_size, self.sizes[k])
        while True:
            order = self._order(self.sizes[k])
            for start in range(0, self.sizes[k] - size + 1, size):
                yield self._mine(order[start:start + size])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        others = {k: self._cycle(k) for k in range(len(self.tables)) if k != self.lead}
        order = self._mine(self._order(self.sizes[self.lead]))
        for step in range(len(self)):
            rows = {self.lead: order[step * self.batch_size:(step + 1) * self.batch_size]}
            rows.update({k: next(it) for k, it in others.items()})
            yield {col: self._take(values, rows[k]) for k, table in enumerate(self.tables)
                   for col, values in table.items()}
