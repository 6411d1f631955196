"""A NumPy reference evaluator: the loss of a diagram in float64, written from SPEC.md alone.

Forward only and deliberately plain (explicit loops for convolution, pooling
and the LSTM); it shares no numeric code with the PyTorch backend, so that
agreement between the two is evidence for both. The conformance suite's
expected values come from here. Where it and the spec disagree, the spec
decides.

    from diagrammatic_learning.reference import evaluate
    result = evaluate("diagram.json", "weights.safetensors", "batch.safetensors")
    result.total, result.equations, result.terms
"""

from .evaluator import Result, evaluate, evaluate_files

__all__ = ["Result", "evaluate", "evaluate_files"]
