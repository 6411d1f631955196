# The distance vocabulary's metadata (SPEC §7): defaults (from the schema, vocabulary.jl) and where each
# distance is allowed.

const DEFAULT_DISTANCE = Dict("tensor" => "mse", "categorical" => "cross_entropy")

const DISTANCES_ALLOWED_ON = Dict(
    "tensor" => ("mse", "l1", "huber", "cosine", "bce_logits"),
    "categorical" => ("cross_entropy", "kl_div"),
)

"""
    full_distance(distance::Distance) -> Distance

The distance with every default parameter filled in, each parameter a `Float64`.
"""
function full_distance(distance::Distance)
    params = Dict{String,Any}(k => Float64(v) for (k, v) in distance_defaults(distance.name))  # from the schema
    for (k, v) in distance.params
        startswith(k, "x-") || (params[k] = Float64(v))
    end
    return Distance(distance.name, params)
end

"""
    distance_problems(obj::DiagramObject, distance::Distance) -> Vector{Tuple{String,String}}

Problems `(code, message)` with using `distance` on `obj` (SPEC §7).
"""
function distance_problems(obj::DiagramObject, distance::Distance)
    kind = object_kind(obj)
    allowed = get(DISTANCES_ALLOWED_ON, kind, ())
    if !(distance.name in allowed)
        return [("distance-not-allowed", "$(distance.name) is not allowed on $kind object $(repr(obj.name)); " *
                                         "allowed: $(join(sort(collect(allowed)), ", "))")]
    end
    if distance.name == "bce_logits" && obj isa TensorObject && !is_float(obj)
        return [("distance-not-allowed", "bce_logits needs a float tensor, $(repr(obj.name)) is int64")]
    end
    return Tuple{String,String}[]
end

"""
    object_distance(d::Diagram, name) -> Distance

The default distance of an object (its own, or `mse` / `cross_entropy`), every default filled in.
"""
function object_distance(d::Diagram, name::AbstractString)
    o = object_named(d, name)
    own = object_distance_field(o)
    return full_distance(own === nothing ? Distance(DEFAULT_DISTANCE[object_kind(o)], Dict{String,Any}()) : own)
end
