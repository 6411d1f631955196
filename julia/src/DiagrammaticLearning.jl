"""
    DiagrammaticLearning

Learning diagrams in Julia: read and check a diagram file of the interchange format
(`schema/SPEC.md`), enumerate its terms and equations in canonical order, and compile it to one
Flux.jl loss over Flux models built from the layer vocabulary, with weights in the canonical
(PyTorch) layout. The same files give the same loss as the Python library's PyTorch backend.

```julia
using DiagrammaticLearning, Flux
d = load_diagram("diagram.json")
c = compile_diagram(d; weights = "weights.safetensors", dtype = Float64)
batch = load_batch(c, "batch.safetensors")
evaluate_diagram(c, batch).total
grads = Flux.gradient(m -> diagram_loss(m, c, batch), c.models)
```

Arrays are held in storage layout (see [`storage_layout`](@ref)): a value of logical shape
`[B, s₁, …, sₙ]` is the Julia array of size `(sₙ, …, s₁, B)`, batch last, as Flux expects.
"""
module DiagrammaticLearning

import Flux
import JLD2
import JSON
import SafeTensors
using ChainRulesCore: ignore_derivatives
using Random: AbstractRNG, default_rng, rand, randn
# fatou-ignore unused-import: loading SpecialFunctions defines NNlib.gelu_erf (NNlib's NNlibSpecialFunctionsExt)
import SpecialFunctions

export Problem, DiagramError, error_code, error_pointer
export Diagram, DataObject, TensorObject, CategoricalObject, DataArrow, FunctionArrow, ModelArrow
export Architecture, Layer, Distance, ExplicitEquation
export load_diagram, parse_diagram, check_document
export Term, parse_term, subterms, TermInfo, term_info, enumerate_terms
export Equation, diagram_equations
export storage_layout, read_safetensors, write_safetensors, check_weights, check_batch
export build_model, export_model, ProductModel, Activation, SoftmaxLayer, FlattenLayer, LastStep
export ZeroBasedEmbedding, TorchLayerNorm, TorchLSTM
export CompiledDiagram, compile_diagram, Batch, load_batch, load_weights
export diagram_loss, evaluate_diagram, Evaluation, evaluate_files, term_values
export top1_hits, evaluate_with_hits
export training_state, train_step!, canonical_weights, save_weights
export loss_gradients, gradient_files
export save_flux_model, load_flux_model

include("errors.jl")
include("json.jl")
include("schema.jl")
include("vocabulary.jl")
include("diagram.jl")
include("versions.jl")
include("layers.jl")
include("distances.jl")
include("terms.jl")
include("term_graph.jl")
include("equations.jl")
include("validate.jl")
include("tensorfiles.jl")
include("activations.jl")
include("flux_layers.jl")
include("build.jl")
include("export.jl")
include("numerics.jl")
include("evaluate.jl")
include("accuracy.jl")
include("gradients.jl")
include("flux_files.jl")
include("bridge.jl")

end
