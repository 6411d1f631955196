# The Flux.jl backend's tests: the shared conformance suite (every valid case in float64 and
# float32, every invalid case), then unit tests of the reader, the layers against loops written
# here from SPEC §4, gradients, training, conversions and the Python bridge entry points.
# Run with `julia --project=julia -e 'using Pkg; Pkg.test()'` from the repository root.

using DiagrammaticLearning
using Flux
using Random
using Test

const DL = DiagrammaticLearning
const CONFORMANCE = normpath(joinpath(@__DIR__, "..", "..", "conformance"))

@testset "DiagrammaticLearning" begin
    include("conformance.jl")
    include("reading.jl")
    include("layers.jl")
    include("evaluation.jl")
    include("models.jl")
end
