"""The shape of a diagram's terms, found in linear time before any term is built (SPEC §5.3).

``TermGraph`` answers, for a structurally valid ``Diagram``:

- which objects are *inhabited* (have terms at all) and which non-data arrows are
  *live* (all their sources inhabited): only live arrows occur in terms;
- the strongly connected components of the live arrows, which say which forbidden
  arrows can matter to an object's terms (those whose target is in its component);
- each object's *depth bound*: no enumerated term of the object has more non-data
  arrows on a root-to-leaf path; SPEC §5.3 rejects objects whose bound passes 100.

Everything here is linear in the size of the diagram: no per-object sets.
"""

from __future__ import annotations

from .diagram import Diagram

MAX_TERM_DEPTH = 100  # non-data arrows on a root-to-leaf path of an enumerated term (SPEC §5.3)


class TermGraph:
    """Inhabited objects, live arrows, their components and depth bounds (see the module text)."""

    def __init__(self, diagram: Diagram):
        self.d = diagram
        self.inhabited: set[str] = set()
        self.live: set[str] = set()  # live non-data arrows
        self._find_live()
        self.component: dict[str, int] = {}  # inhabited object -> component id (ids in topological order)
        self.members: list[list[str]] = []
        self._components()
        self.cyclic: list[bool] = [False] * len(self.members)  # a forbidden arrow can matter inside it
        self.depth: list[int] = [0] * len(self.members)
        self._depths()

    def _find_live(self) -> None:
        users: dict[str, list[str]] = {}
        need: dict[str, int] = {}
        todo: list[str] = []
        for a in self.d.arrows.values():
            if a.kind == "data":
                if a.target not in self.inhabited:
                    self.inhabited.add(a.target)
                    todo.append(a.target)
                continue
            distinct = list(dict.fromkeys(a.sources))
            need[a.name] = len(distinct)
            for s in distinct:
                users.setdefault(s, []).append(a.name)
        while todo:
            for name in users.get(todo.pop(), ()):
                need[name] -= 1
                if need[name] == 0:
                    self.live.add(name)
                    target = self.d.arrows[name].target
                    if target not in self.inhabited:
                        self.inhabited.add(target)
                        todo.append(target)

    def _components(self) -> None:
        """Tarjan's algorithm, iterative, over inhabited objects and live arrows (source → target)."""
        succ: dict[str, list[str]] = {}
        for a in self.d.arrows.values():  # declaration order: the same components in every run
            if a.name not in self.live:
                continue
            for s in a.sources:
                succ.setdefault(s, []).append(a.target)
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        found: list[list[str]] = []  # reverse topological order
        for root in self.d.objects:
            if root not in self.inhabited or root in index:
                continue
            work = [(root, iter(succ.get(root, ())))]
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            while work:
                node, it = work[-1]
                advanced = False
                for nxt in it:
                    if nxt not in index:
                        index[nxt] = low[nxt] = len(index)
                        stack.append(nxt)
                        on_stack.add(nxt)
                        work.append((nxt, iter(succ.get(nxt, ()))))
                        advanced = True
                        break
                    if nxt in on_stack and index[nxt] < low[node]:
                        low[node] = index[nxt]
                if advanced:
                    continue
                work.pop()
                if work and low[node] < low[work[-1][0]]:
                    low[work[-1][0]] = low[node]
                if low[node] == index[node]:
                    group: list[str] = []
                    while True:
                        x = stack.pop()
                        on_stack.discard(x)
                        group.append(x)
                        if x == node:
                            break
                    found.append(group)
        self.members = found[::-1]
        for c, group in enumerate(self.members):
            for x in group:
                self.component[x] = c

    def _depths(self) -> None:
        """Depth bound per component, in topological order (SPEC §5.3)."""
        comp = self.component
        weight = [0] * len(self.members)
        entry: list[list[tuple[int, int]]] = [[] for _ in self.members]  # (source component, 0 or 1)
        for a in self.d.arrows.values():
            if a.name not in self.live:
                continue
            c = comp[a.target]
            cs = [comp[s] for s in a.sources]
            internal = c in cs
            if internal:
                weight[c] += 1
                self.cyclic[c] = True
            for sc in cs:
                if sc != c:
                    entry[c].append((sc, 0 if internal else 1))
        for c in range(len(self.members)):
            before = max((self.depth[p] + step for p, step in entry[c]), default=0)
            self.depth[c] = weight[c] + before
        self._entry = entry

    def object_depth(self, obj: str) -> int:
        """The depth bound of an inhabited object (0 for one fed by data arrows only)."""
        return self.depth[self.component[obj]]

    def too_deep(self, limit: int = MAX_TERM_DEPTH) -> list[str]:
        """The objects SPEC §5.3 reports for depth, in declaration order.

        Those whose component's depth bound passes ``limit`` while no component it is
        entered from does: the first too-deep objects along every path.
        """
        deep = [d > limit for d in self.depth]
        first = {c for c in range(len(self.members))
                 if deep[c] and not any(deep[p] for p, _ in self._entry[c])}
        return [o for o in self.d.objects if o in self.component and self.component[o] in first]
