# The function arrows (SPEC §3.2) and the distances (SPEC §7) on values in storage layout (the
# logical last axis first, the batch last), written from the spec's formulas. Integer values
# (int64 tensors, `index` terms) are 0-based.

"""
    one_hot_first(index::AbstractArray{<:Integer}, classes, T) -> Array{T}

One-hot rows of 0-based class indices, the classes on a new first axis: `(s..., B)` → `(C, s..., B)`.
"""
function one_hot_first(index::AbstractArray{<:Integer}, classes::Integer, ::Type{T}) where {T}
    ks = reshape(0:classes-1, classes, ntuple(_ -> 1, ndims(index))...)
    return T.(ks .== reshape(index, 1, size(index)...))
end

batch_size(x::AbstractArray) = size(x, ndims(x))

# Values already in the compute dtype pass through untouched (no copy, no broadcast to differentiate).
in_dtype(x::AbstractArray, ::Type{T}) where {T} = eltype(x) === T ? x : T.(x)

"""
    FunctionStep(op, args, factor, eps, shape, classes)

A function arrow in an evaluation plan: its `op` (a Symbol), the plan positions of its arguments,
and the parameters the op needs (`scale` factor, `normalize` eps, `reshape` logical shape,
`one_hot` classes).
"""
struct FunctionStep{N}
    op::Symbol
    args::NTuple{N,Int}
    factor::Float64
    eps::Float64
    shape::Vector{Int}
    classes::Int
end

"""
    apply_function(step::FunctionStep, xs::Tuple, T)

The value of a function arrow on its argument values `xs`, in compute dtype `T` (SPEC §3.2).
"""
function apply_function(step::FunctionStep, xs::Tuple, ::Type{T}) where {T}
    op = step.op
    x = xs[1]
    op === :identity && return x
    op === :stop_gradient && return ignore_derivatives(x)  # the same value; no gradient to the source
    op === :softmax && return softmax_first(x)
    op === :log_softmax && return log_softmax_first(x)
    op === :one_hot && return ignore_derivatives(() -> one_hot_first(x, step.classes, T))
    op === :flatten && return reshape(x, :, batch_size(x))
    op === :reshape && return reshape(x, reverse(step.shape)..., batch_size(x))
    op === :scale && return T(step.factor) .* x
    op === :normalize && return x ./ max.(sqrt.(sum(abs2.(x); dims = 1)), T(step.eps))
    op === :add && return +(xs...)
    op === :concat && return cat(xs...; dims = 1)
    throw(ArgumentError("unknown function op $(repr(op))"))
end

"""
    DistanceSpec(name, param, categorical, classes, target_encoding)

An equation's distance as the evaluation needs it: `name` (a Symbol), its one parameter
(`delta`, `eps`, `label_smoothing` or `temperature`; 0 if none), whether the object is
categorical, its classes, and the encoding of the right-hand side (`:index`, `:probabilities`,
`:logits`; `:none` for tensors).
"""
struct DistanceSpec
    name::Symbol
    param::Float64
    categorical::Bool
    classes::Int
    target_encoding::Symbol
end

const DISTANCE_PARAMETER = Dict("huber" => "delta", "cosine" => "eps", "cross_entropy" => "label_smoothing",
                                "kl_div" => "temperature")

function DistanceSpec(d::Diagram, eq::Equation)
    o = object_named(d, eq.object)
    key = get(DISTANCE_PARAMETER, eq.distance.name, nothing)
    param = key === nothing ? 0.0 : Float64(eq.distance.params[key])
    if o isa CategoricalObject
        return DistanceSpec(Symbol(eq.distance.name), param, true, o.classes, Symbol(term_info(d, eq.rhs).encoding))
    end
    return DistanceSpec(Symbol(eq.distance.name), param, false, 0, :none)
end

huber_term(r::Real, delta::Real) = ifelse(abs(r) < delta, r^2 / 2, delta * (abs(r) - delta / 2))
bce_logits_term(p::Real, t::Real) = max(p, zero(p)) - p * t + log1p(exp(-abs(p)))
# q · (log q − l), with 0 · log 0 = 0
kl_term(q::Real, l::Real) = q * (log(ifelse(q > zero(q), q, one(q))) - l)

"""
    distance_value(spec::DistanceSpec, p, t, T) -> T

The distance of a batch (SPEC §7): the mean over examples of the per-example distance `dₑ`
between the left-hand value `p` and the right-hand value `t`, in compute dtype `T`.
"""
function distance_value(spec::DistanceSpec, p::AbstractArray, t::AbstractArray, ::Type{T}) where {T}
    spec.categorical && return categorical_distance(spec, p, t, T)
    p, t = in_dtype(p, T), in_dtype(t, T)
    B = batch_size(p)
    n = length(p) ÷ B
    name = spec.name
    name === :mse && return sum(abs2, p .- t) / (n * B)
    name === :l1 && return sum(abs, p .- t) / (n * B)
    name === :huber && return sum(huber_term.(p .- t, T(spec.param))) / (n * B)
    name === :bce_logits && return sum(bce_logits_term.(p, t)) / (n * B)
    if name === :cosine
        P, Q = reshape(p, n, B), reshape(t, n, B)
        norms = sqrt.(sum(abs2.(P); dims = 1)) .* sqrt.(sum(abs2.(Q); dims = 1))
        return sum(1 .- sum(P .* Q; dims = 1) ./ max.(norms, T(spec.param))) / B
    end
    throw(ArgumentError("unknown tensor distance $(repr(name))"))
end

function categorical_distance(spec::DistanceSpec, p::AbstractArray, t::AbstractArray, ::Type{T}) where {T}
    C = spec.classes
    positions = length(p) ÷ C  # positions per example × examples
    if spec.name === :cross_entropy
        q = target_distribution(spec, t, one(T), T)
        ε = T(spec.param)
        smoothed = (1 - ε) .* q .+ ε / C
        return -sum(smoothed .* log_softmax_first(p)) / positions
    elseif spec.name === :kl_div
        τ = T(spec.param)
        log_p = log_softmax_first(p ./ τ)
        if spec.target_encoding === :logits
            scaled = in_dtype(t, T) ./ τ
            return τ^2 * sum(softmax_first(scaled) .* (log_softmax_first(scaled) .- log_p)) / positions
        end
        q = target_distribution(spec, t, τ, T)
        return τ^2 * sum(kl_term.(q, log_p)) / positions
    end
    throw(ArgumentError("unknown categorical distance $(repr(spec.name))"))
end

"""
    target_distribution(spec, t, τ, T)

The target distribution `q` of a categorical right-hand side by its encoding (SPEC §7): one-hot
rows of `index` values, `probabilities` as they are, `softmax(t/τ)` of `logits`.
"""
function target_distribution(spec::DistanceSpec, t::AbstractArray, τ, ::Type{T}) where {T}
    spec.target_encoding === :index && return ignore_derivatives(() -> one_hot_first(t, spec.classes, T))
    spec.target_encoding === :probabilities && return in_dtype(t, T)
    return softmax_first(in_dtype(t, T) ./ τ)
end
