# The scalar functions of SPEC §4 and §3.2. Where NNlib (re-exported by Flux) computes exactly
# the spec's formula, its function is used, with its hand-written gradient rule:
# `Flux.relu` (`ifelse(x < 0, 0, x)`), `Flux.σ` (`t = exp(-|x|)`, then `1/(1+t)` or `t/(1+t)`,
# the NumPy reference's form), `Flux.softplus` (`log1p(exp(x))` for x < 0, else
# `x + log1p(exp(-x))`: no threshold), and `Flux.gelu_erf` (`x/2 · (1 + erf(x/√2))`, defined by
# NNlib's SpecialFunctions extension, loaded because this package loads SpecialFunctions).
# Read in NNlib's `src/activations.jl` and `ext/NNlibSpecialFunctionsExt.jl`. NNlib's `gelu` is
# the tanh approximation, and Dense and LSTMCell swap in `sigmoid_fast`/`tanh_fast`, so those
# are not used. The functions below are this package's own, each for the reason it gives; they
# are plain functions, which Zygote differentiates by dual numbers when broadcast.

const spec_relu = Flux.relu
const spec_sigmoid = Flux.σ
const spec_softplus = Flux.softplus
const spec_gelu = Flux.gelu_erf

"""
    exact_leaky_relu(x, slope)

`x` if `x ≥ 0`, else `slope · x`. Own function: NNlib's `leakyrelu` rule returns a NaN gradient
for the slope (its `NO_ACT_GRAD`), which would land in the gradient of the layer's field.
"""
exact_leaky_relu(x::Real, slope::Real) = ifelse(x >= zero(x), x, slope * x)

"""
    exact_elu(x, alpha)

`x` if `x > 0`, else `alpha · expm1(x)`; `expm1` only sees `x ≤ 0`, so the unused branch
cannot overflow. Own function: NNlib's `elu` computes `exp(x) - 1` under `@fastmath`, which
loses the digits of small `|x|` that the spec's (and PyTorch's) `expm1` keeps.
"""
exact_elu(x::Real, alpha::Real) = ifelse(x > zero(x), x, alpha * expm1(min(x, zero(x))))

"""
    softmax_first(x)

The softmax over the first array axis (the logical last axis in storage layout):
`exp(x - m) / Σ exp(x - m)` with `m` the maximum, as SPEC §3.2 writes it.
"""
function softmax_first(x::AbstractArray)
    e = exp.(x .- ignore_derivatives(() -> maximum(x; dims = 1)))
    return e ./ sum(e; dims = 1)
end

"""
    log_softmax_first(x)

`x - m - log Σ exp(x - m)` over the first array axis, `m` the maximum (SPEC §3.2).
"""
function log_softmax_first(x::AbstractArray)
    shifted = x .- ignore_derivatives(() -> maximum(x; dims = 1))
    return shifted .- log.(sum(exp.(shifted); dims = 1))
end
