"""diagrammatic_learning: training setups drawn as graphs and kept as data.

A learning diagram (objects, arrows, equations) compiles to one loss. This
package reads and checks diagrams (``load``, ``validate``), enumerates their
equations (``equations``), compiles them to PyTorch (``compile``), evaluates
them with a NumPy reference (``diagrammatic_learning.reference``) and bridges
to Flux.jl (``diagrammatic_learning.julia``).
"""

from importlib import metadata as _metadata

from .diagram import (Architecture, CategoricalObject, DataArrow, DataObject, Diagram, Distance, FunctionArrow,
                      Layer, ModelArrow, TensorObject, layer, mlp, sequential)
from .equations import Equation, enumerate_terms, equations
from .errors import DiagramError, Problem
from .io import dumps, from_json, load, problems, save, to_json, validate
from .terms import Term, parse_term

try:
    __version__ = _metadata.version("diagrammatic-learning")  # defined once, in pyproject.toml
except _metadata.PackageNotFoundError:  # sources on sys.path without an installation
    __version__ = "0+unknown"

__all__ = [
    "Architecture", "CategoricalObject", "DataArrow", "DataObject", "Diagram", "DiagramError", "Distance",
    "Equation", "FunctionArrow", "Layer", "ModelArrow", "Problem", "TensorObject", "Term", "dumps",
    "enumerate_terms", "equations", "from_json", "layer", "load", "mlp", "parse_term", "problems", "save",
    "sequential", "to_json", "validate",
]
