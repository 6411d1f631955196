# Flux layers for the parts of the vocabulary where Flux's own layers compute something else than
# SPEC §4 (exact activations, PyTorch's LSTM with two biases, layer norm over the logical last
# axes, 0-based embedding indices, last_step, combine steps). Those with parameters or children
# are declared with `Flux.@layer`, so `Flux.setup`, `Flux.state` and `Flux.loadmodel!` work on
# them. Arrays are in storage layout: the logical last axis first, the batch last.

"""
    Activation(name, f, param=nothing)

An elementwise layer applying `f` to every entry (`f(x)`, or `f(x, param)` when `param` is a
number such as a leaky ReLU's slope). `name` is the vocabulary's layer type, e.g. `:gelu`.
"""
struct Activation{F,P}
    name::Symbol
    f::F
    param::P
end

Activation(name::Symbol, f) = Activation(name, f, nothing)

Flux.@layer Activation

(a::Activation{F,Nothing})(x::AbstractArray) where {F} = a.f.(x)
(a::Activation)(x::AbstractArray) = a.f.(x, a.param)

Base.show(io::IO, a::Activation) = print(io, "Activation(:", a.name, a.param === nothing ? "" : ", $(a.param)", ")")

"""
    SoftmaxLayer(log::Bool)

`softmax` (or `log_softmax` when `log`) over the logical last axis, which is the first axis here.
"""
struct SoftmaxLayer
    log::Bool
end

Flux.@layer SoftmaxLayer

(s::SoftmaxLayer)(x::AbstractArray) = s.log ? log_softmax_first(x) : softmax_first(x)

"""
    FlattenLayer()

Each example to one axis, in row-major order of its logical shape: `(s..., B)` → `(prod(s), B)`.
"""
struct FlattenLayer end

(::FlattenLayer)(x::AbstractArray) = reshape(x, :, size(x, ndims(x)))

"""
    LastStep()

The last step of a sequence: logical `[L, F]` → `[F]`, that is `(F, L, B)` → `(F, B)`.
"""
struct LastStep end

(::LastStep)(x::AbstractArray{<:Any,3}) = x[:, end, :]

"""
    NoLayers()

An empty layer list: returns its input. (`Flux.Chain()` with no layers would return `nothing`.)
"""
struct NoLayers end

(::NoLayers)(x) = x

"""
    ZeroBasedEmbedding(embedding::Flux.Embedding)

A `Flux.Embedding` read with the format's 0-based indices: index `i` selects column `i + 1`
of the weight `(dim, num)`. Integer input `(s..., B)` gives `(dim, s..., B)`.
"""
struct ZeroBasedEmbedding{E}
    embedding::E
end

Flux.@layer ZeroBasedEmbedding

(e::ZeroBasedEmbedding)(x::AbstractArray{<:Integer}) = e.embedding(ignore_derivatives(() -> x .+ 1))

"""
    TorchLayerNorm(weight, bias, eps, shape)

Layer normalisation as SPEC §4 and PyTorch define it, over the first `length(shape)` array axes
(which hold the logical last axes; `shape` is their size in storage order):
`(x - μ) / sqrt(σ² + eps) · weight + bias` with the biased variance. `weight` and `bias` have
size `shape`, or are `nothing` without elementwise affine parameters.
"""
struct TorchLayerNorm{W,B,T,N}
    weight::W
    bias::B
    eps::T
    shape::NTuple{N,Int}
end

Flux.@layer TorchLayerNorm

# The normalisation is NNlib's `normalise` (`(x .- μ) ./ sqrt.(σ² .+ eps)`, σ² the biased
# variance: SPEC §4's formula), which `Flux.LayerNorm` calls too (Flux 0.16.11,
# src/layers/normalise.jl). The layer itself stays this package's: it keeps the canonical
# weight and bias as fields with PyTorch's names, and its `eps` in the model's float type.
function (l::TorchLayerNorm)(x::AbstractArray)
    y = Flux.NNlib.normalise(x; dims = 1:length(l.shape), eps = l.eps)
    return l.weight === nothing ? y : y .* l.weight .+ l.bias
end

"""
    TorchLSTM(weight_ih, weight_hh, bias_ih, bias_hh)

A one-layer LSTM as PyTorch computes it (gates i, f, g, o; two biases; exact sigmoid and tanh).
Own layer: `Flux.LSTMCell` has one bias and uses `sigmoid_fast`/`tanh_fast`, a few ulp off.
It runs from `h₀ = c₀ = 0`, returning every step: input `(in, L, B)`, output `(hidden, L, B)`.
`weight_ih` is `(4H, in)`, `weight_hh` `(4H, H)`, as in `Flux.LSTMCell`.
"""
struct TorchLSTM{M,V}
    weight_ih::M
    weight_hh::M
    bias_ih::V
    bias_hh::V
end

Flux.@layer TorchLSTM

function (l::TorchLSTM)(x::AbstractArray{T,3}) where {T}
    H = size(l.weight_hh, 2)
    h = ignore_derivatives(() -> zeros(T, H, size(x, 3)))
    c = h
    steps = []
    for t in axes(x, 2)
        z = l.weight_ih * x[:, t, :] .+ l.bias_ih .+ l.weight_hh * h .+ l.bias_hh
        i = spec_sigmoid.(z[1:H, :])
        f = spec_sigmoid.(z[H+1:2H, :])
        g = tanh.(z[2H+1:3H, :])
        o = spec_sigmoid.(z[3H+1:4H, :])
        c = f .* c .+ i .* g
        h = o .* tanh.(c)
        steps = vcat(steps, [h])
    end
    return stack(steps; dims = 2)
end

"""
    ProductModel(branches::Tuple, combine::Symbol, trunk)

A model of several sources (SPEC §4): branch `k` applied to input `k`, the results joined by
`combine` (`:concat` along the logical last axis, `:add`, or `:prepend`), then the `trunk`.
Call it with one argument per source, or with a tuple of them.
"""
struct ProductModel{B<:Tuple,C}
    branches::B
    combine::Symbol
    trunk::C
end

Flux.@layer ProductModel

(m::ProductModel)(xs::Tuple) = m(xs...)

function (m::ProductModel)(xs...)
    ys = map((branch, x) -> branch(x), m.branches, xs)
    return m.trunk(combine_values(m.combine, ys))
end

"""
    combine_values(kind::Symbol, ys::Tuple)

A combine step on values in storage layout: `:concat` along the first axis (the logical last),
`:add` elementwise, `:prepend` an `(F, B)` value as step 0 before `(F, L, B)` steps.
"""
function combine_values(kind::Symbol, ys::Tuple)
    kind === :concat && return cat(ys...; dims = 1)
    kind === :add && return +(ys...)
    if kind === :prepend
        first_step, steps = ys
        return cat(reshape(first_step, size(first_step, 1), 1, size(first_step, 2)), steps; dims = 2)
    end
    throw(ArgumentError("unknown combine step $(repr(kind))"))
end
