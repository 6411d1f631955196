# The Flux.jl backend's tests: the shared conformance suite (every valid case in float64 and
# float32, every invalid case), then unit tests of the reader, the layers against loops written
# here from SPEC §4, gradients, training, conversions and the Python bridge entry points.
# Run with `julia --project=julia -e 'using Pkg; Pkg.test()'` from the repository root.

using DiagrammaticLearning
using Flux
using Random
using Test

const DL = DiagrammaticLearning
# The conformance suite lives beside this package in the repository (`../../conformance`), not
# inside it: a package installed on its own (Pkg.add with `subdir = "julia"`) runs without it,
# skipping the tests that need its files, and says so. DIAGRAMMATIC_LEARNING_CONFORMANCE may
# point at a copy.
const CONFORMANCE = get(ENV, "DIAGRAMMATIC_LEARNING_CONFORMANCE", normpath(joinpath(@__DIR__, "..", "..", "conformance")))
const HAS_CONFORMANCE = isdir(joinpath(CONFORMANCE, "cases")) && isdir(joinpath(CONFORMANCE, "invalid"))

@testset "DiagrammaticLearning" begin
    if HAS_CONFORMANCE
        include("conformance.jl")
    else
        @warn "SKIPPED: the conformance suite is not at $CONFORMANCE, so its cases and the tests that " *
              "read them (evaluation.jl) do not run; set DIAGRAMMATIC_LEARNING_CONFORMANCE to its folder"
        @test_skip HAS_CONFORMANCE
    end
    include("reading.jl")
    include("hostile.jl")
    include("layers.jl")
    HAS_CONFORMANCE && include("evaluation.jl")
    include("models.jl")
    include("gradients.jl")
end
