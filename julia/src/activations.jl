# The exact scalar functions of SPEC §4 and §3.2, written from the spec's formulas. NNlib's
# versions differ on purpose (`gelu` is the tanh approximation; Dense and LSTMCell swap in
# `sigmoid_fast` / `tanh_fast`; `elu` uses `exp(x) - 1` under fastmath), which breaks 1e-12
# agreement with the other backends. These are plain functions: broadcasting them under Zygote
# differentiates them with dual numbers (ForwardDiff knows erf, expm1, log1p).

"""
    exact_relu(x)

`max(x, 0)`.
"""
exact_relu(x::Real) = max(x, zero(x))

"""
    exact_sigmoid(x)

`1 / (1 + exp(-x))`, computed with `e = exp(-|x|)` as `1 / (1 + e)` for `x ≥ 0` and `e / (1 + e)`
otherwise (as the NumPy reference does): `exp` never overflows, so the dual-number derivative
stays finite for very negative `x` (`1 / (1 + Inf)` would give a NaN partial).
"""
function exact_sigmoid(x::Real)
    e = exp(-abs(x))
    return ifelse(x >= zero(x), one(x) / (one(x) + e), e / (one(x) + e))
end

"""
    exact_gelu(x)

The exact GELU, `x · (1 + erf(x/√2)) / 2` (not the tanh approximation).
"""
exact_gelu(x::Real) = x * (one(x) + erf(x / sqrt(oftype(x, 2)))) / 2

"""
    exact_softplus(x)

`log(1 + exp(x))` with no threshold, computed as `max(x, 0) + log1p(exp(-|x|))`.
"""
exact_softplus(x::Real) = max(x, zero(x)) + log1p(exp(-abs(x)))

"""
    exact_leaky_relu(x, slope)

`x` if `x ≥ 0`, else `slope · x`.
"""
exact_leaky_relu(x::Real, slope::Real) = ifelse(x >= zero(x), x, slope * x)

"""
    exact_elu(x, alpha)

`x` if `x > 0`, else `alpha · expm1(x)`; `expm1` only sees `x ≤ 0`, so the unused branch
cannot overflow.
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
