# Architectures (SPEC §4) as Flux models, with parameters taken from canonical (PyTorch-layout)
# weights or initialised as PyTorch initialises them. One Flux layer per vocabulary layer, so
# `chain[i]` is the architecture's layer i - 1 and canonical names map to positions directly.

"""
    ParameterSource(weights, prefix, rng)

Where a model's parameters come from: `weights` (canonical name → array in storage layout, see
[`storage_layout`](@ref)), looked up as `prefix * path`; or, when `weights === nothing`, fresh
random values drawn from `rng` the way PyTorch initialises the layer.
"""
struct ParameterSource{W,R<:AbstractRNG}
    weights::W
    prefix::String
    rng::R
end

"""
    parameter(src, T, path, logical_shape, init) -> Array{T}

One parameter in storage layout and element type `T`: from `src.weights`, or drawn by `init`,
one of `(:uniform, bound)` (uniform on [-bound, bound]), `:normal`, `:ones`, `:zeros`.
"""
function parameter(src::ParameterSource, ::Type{T}, path::AbstractString, logical_shape::Vector{Int}, init) where {T}
    dims = Tuple(reverse(logical_shape))
    if src.weights !== nothing
        value = src.weights[src.prefix*path]
        size(value) == dims || throw(DimensionMismatch("$(src.prefix)$path has size $(size(value)), expected $dims"))
        return Array{T}(value)
    end
    init === :normal && return randn(src.rng, T, dims...)
    init === :ones && return ones(T, dims...)
    init === :zeros && return zeros(T, dims...)
    kind, bound = init
    kind === :uniform || throw(ArgumentError("unknown initialisation $(repr(init))"))
    return T.((2 .* rand(src.rng, dims...) .- 1) .* bound)
end

const PLAIN_ACTIVATIONS = Dict{String,Any}(
    "relu" => spec_relu,
    "tanh" => tanh,
    "sigmoid" => spec_sigmoid,
    "gelu" => spec_gelu,
    "softplus" => spec_softplus,
    "identity" => identity,
)

"""
    build_layer(layer::Layer, path, src::ParameterSource, T) -> layer

One vocabulary layer as a Flux layer with element type `T`; `path` is its canonical path within
the model (e.g. `"layers.0"`), used to look up its parameters.
"""
function build_layer(layer::Layer, path::AbstractString, src::ParameterSource, ::Type{T}) where {T}
    p = full_params(layer)
    t = layer.type
    if t == "linear"
        n_in, n_out = param_int(p, "in_features"), param_int(p, "out_features")
        bound = 1 / sqrt(n_in)
        weight = parameter(src, T, "$path.weight", [n_out, n_in], (:uniform, bound))  # (in, out)
        bias = p["bias"] === true ? parameter(src, T, "$path.bias", [n_out], (:uniform, bound)) : false
        # Dense without an activation: with `tanh`/`σ` inside, Flux would swap in `tanh_fast` /
        # `sigmoid_fast` (NNlib's `fast_act`); the vocabulary's activations are separate layers.
        return Flux.Dense(permutedims(weight), bias)
    elseif t == "conv2d"
        c_in, c_out, groups = param_int(p, "in_channels"), param_int(p, "out_channels"), param_int(p, "groups")
        kh, kw = param_ints(p, "kernel_size")
        sh, sw = param_ints(p, "stride")
        top, bottom, left, right = param_ints(p, "padding")
        dh, dw = param_ints(p, "dilation")
        bound = 1 / sqrt((c_in ÷ groups) * kh * kw)
        weight = parameter(src, T, "$path.weight", [c_out, c_in ÷ groups, kh, kw], (:uniform, bound))  # (kw, kh, cin/g, cout)
        bias = p["bias"] === true ? parameter(src, T, "$path.bias", [c_out], (:uniform, bound)) : false
        # Flux's Conv is a true convolution (NNlib flips the kernel); SPEC §4 cross-correlates,
        # so the kernel is stored flipped in both spatial axes.
        return Flux.Conv(weight[end:-1:1, end:-1:1, :, :], bias; stride = (sw, sh), pad = (left, right, top, bottom),
                         dilation = (dw, dh), groups = groups)
    elseif t in ("max_pool2d", "avg_pool2d")
        kh, kw = param_ints(p, "kernel_size")
        sh, sw = param_ints(p, "stride")
        top, bottom, left, right = param_ints(p, "padding")
        pool = t == "max_pool2d" ? Flux.MaxPool : Flux.MeanPool  # MeanPool counts padding in the mean
        return pool((kw, kh); pad = (left, right, top, bottom), stride = (sw, sh))
    elseif t == "flatten"
        return FlattenLayer()
    elseif t == "embedding"
        weight = parameter(src, T, "$path.weight", [param_int(p, "num_embeddings"), param_int(p, "embedding_dim")], :normal)
        return ZeroBasedEmbedding(Flux.Embedding(weight))  # weight (dim, num), as Flux's
    elseif t == "layer_norm"
        ns = param_ints(p, "normalized_shape")
        shape = Tuple(reverse(ns))
        if p["elementwise_affine"] === true
            weight = parameter(src, T, "$path.weight", ns, :ones)
            bias = parameter(src, T, "$path.bias", ns, :zeros)
            return TorchLayerNorm(weight, bias, T(param_float(p, "eps")), shape)
        end
        return TorchLayerNorm(nothing, nothing, T(param_float(p, "eps")), shape)
    elseif t == "lstm"
        n_in, hidden = param_int(p, "input_size"), param_int(p, "hidden_size")
        init = (:uniform, 1 / sqrt(hidden))
        weight_ih = parameter(src, T, "$path.weight_ih_l0", [4hidden, n_in], init)
        weight_hh = parameter(src, T, "$path.weight_hh_l0", [4hidden, hidden], init)
        bias_ih = parameter(src, T, "$path.bias_ih_l0", [4hidden], init)
        bias_hh = parameter(src, T, "$path.bias_hh_l0", [4hidden], init)
        return TorchLSTM(permutedims(weight_ih), permutedims(weight_hh), bias_ih, bias_hh)
    elseif t == "last_step"
        return LastStep()
    elseif t == "dropout"
        return Flux.Dropout(param_float(p, "p"))
    elseif haskey(PLAIN_ACTIVATIONS, t)
        return Activation(Symbol(t), PLAIN_ACTIVATIONS[t])
    elseif t == "leaky_relu"
        return Activation(:leaky_relu, exact_leaky_relu, T(param_float(p, "negative_slope")))
    elseif t == "elu"
        return Activation(:elu, exact_elu, T(param_float(p, "alpha")))
    elseif t in ("softmax", "log_softmax")
        return SoftmaxLayer(t == "log_softmax")
    end
    throw(DiagramError("bad-value", path, "unknown layer type $(repr(t))"))
end

function build_chain(layers::Vector{Layer}, path::AbstractString, src::ParameterSource, ::Type{T}) where {T}
    isempty(layers) && return Flux.Chain(NoLayers())
    return Flux.Chain((build_layer(layer, "$path.$(i - 1)", src, T) for (i, layer) in enumerate(layers))...)
end

# SPEC §8, parameter limit: parameters are counted, in exact arithmetic, before any is allocated.
const MAX_PARAMETERS = 2^28  # 268,435,456: 1 GiB in Float32, 2 GiB in Float64
const MAX_PARAMETERS_VARIABLE = "DLEARN_MAX_PARAMETERS"

"""
    default_max_parameters() -> Int

The parameter limit when none is given: `ENV["DLEARN_MAX_PARAMETERS"]` if set (an integer ≥ 0;
`bad-value` otherwise), else `MAX_PARAMETERS` (2^28), as in the Python library.
"""
function default_max_parameters()
    text = get(ENV, MAX_PARAMETERS_VARIABLE, nothing)
    text === nothing && return MAX_PARAMETERS
    limit = tryparse(Int, text)
    (limit === nothing || limit < 0) &&
        throw(DiagramError("bad-value", MAX_PARAMETERS_VARIABLE,
                           "$MAX_PARAMETERS_VARIABLE must be an integer ≥ 0, got $(repr(text))"))
    return limit
end

"""
    architecture_parameter_count(arch::Architecture) -> BigInt

How many numbers an architecture's parameters hold (the §4 shapes multiplied out and summed), in
`BigInt` arithmetic so that no declared size overflows. A size beyond `Int` (which `param_int`
cannot convert) counts as more than any limit.
"""
function architecture_parameter_count(arch::Architecture)
    try
        return sum((prod(big, shape; init = big(1)) for (_, shape) in architecture_parameter_shapes(arch)); init = big(0))
    catch err
        err isa Union{InexactError,OverflowError} || rethrow()
        return big(typemax(Int))^2
    end
end

too_many_parameters(place, what, count, limit) =
    DiagramError("too-many-parameters", place,
                 "$what $count parameters, more than the limit of $limit; raise it with max_parameters= or " *
                 "$MAX_PARAMETERS_VARIABLE if you mean it")

"""
    check_parameter_count(d::Diagram; max_parameters=default_max_parameters()) -> BigInt

The diagram's parameter count; a [`DiagramError`](@ref) `too-many-parameters` at the model arrow
where the running count (declaration order) first exceeds `max_parameters` (SPEC §8).
"""
function check_parameter_count(d::Diagram; max_parameters::Integer = default_max_parameters())
    total = big(0)
    for a in model_arrows(d)
        a.architecture === nothing && continue
        total += architecture_parameter_count(a.architecture)
        total > max_parameters &&
            throw(too_many_parameters(json_pointer("arrows", arrow_position(d, a.name)),
                                      "with model $(repr(a.name)) the diagram has", total, max_parameters))
    end
    return total
end

"""
    build_model(arch::Architecture, T=Float32; inputs=1, weights=nothing, prefix="", rng=Random.default_rng(),
                max_parameters=default_max_parameters())

The architecture as a Flux model with element type `T`: a `Flux.Chain` with one layer per
vocabulary layer for a single source, a [`ProductModel`](@ref) for `inputs ≥ 2` sources.
Parameters come from `weights` (canonical path → array in storage layout, looked up as
`prefix * "layers.0.weight"`), or are drawn from `rng` as PyTorch initialises them.
The model takes and returns arrays in storage layout, batch last. An architecture of more than
`max_parameters` parameters is `too-many-parameters` (pointer `"architecture"`), decided before
anything is allocated.
"""
function build_model(arch::Architecture, ::Type{T} = Float32; inputs::Integer = 1, weights = nothing,
                     prefix::AbstractString = "", rng::AbstractRNG = default_rng(),
                     max_parameters::Integer = default_max_parameters()) where {T<:AbstractFloat}
    count = architecture_parameter_count(arch)
    count > max_parameters && throw(too_many_parameters("architecture", "the architecture has", count, max_parameters))
    src = ParameterSource(weights, String(prefix), rng)
    trunk = build_chain(arch.layers, "layers", src, T)
    inputs == 1 && return trunk
    branch_layers = arch.inputs === nothing ? [Layer[] for _ in 1:inputs] : arch.inputs
    branches = Tuple(build_chain(b, "inputs.$(k - 1)", src, T) for (k, b) in enumerate(branch_layers))
    return ProductModel(branches, Symbol(something(arch.combine, "concat")), trunk)
end
