# The diagram as plain data, one type per thing in the interchange format (SPEC §1–4, §6.2),
# built from a schema-valid document by `diagram_from_json`.

"""
    Distance(name, params)

A distance by name with its parameters, e.g. `Distance("kl_div", Dict("temperature" => 4.0))`.
"""
struct Distance
    name::String
    params::Dict{String,Any}
end

"""
    DiagramObject

An object of a diagram: [`DataObject`](@ref), [`TensorObject`](@ref) or [`CategoricalObject`](@ref).
"""
abstract type DiagramObject end

"""
    DataObject(name)

A source of examples; its data arrows read columns of a batch.
"""
struct DataObject <: DiagramObject
    name::String
end

"""
    TensorObject(name, shape, dtype, distance)

Per-example arrays of `shape` (logical, row-major; SPEC §2) and `dtype` (`"float32"`,
`"float64"` or `"int64"`), with an optional default distance.
"""
struct TensorObject <: DiagramObject
    name::String
    shape::Vector{Int}
    dtype::String
    distance::Union{Nothing,Distance}
end

"""
    CategoricalObject(name, classes, shape, distance)

A distribution over `classes` classes at each position of `shape`, with an optional default distance.
"""
struct CategoricalObject <: DiagramObject
    name::String
    classes::Int
    shape::Vector{Int}
    distance::Union{Nothing,Distance}
end

object_kind(::DataObject) = "data"
object_kind(::TensorObject) = "tensor"
object_kind(::CategoricalObject) = "categorical"

is_float(o::TensorObject) = o.dtype != "int64"
object_distance_field(o::DataObject) = nothing
object_distance_field(o::Union{TensorObject,CategoricalObject}) = o.distance

"""
    Layer(type, params)

One layer of the vocabulary (SPEC §4): its `type` and its parameters as written (no defaults).
"""
struct Layer
    type::String
    params::Dict{String,Any}
end

"""
    Architecture(layers, inputs, combine)

A portable network: for a product model one layer list per input (`inputs`, or `nothing` for none)
and a `combine` step (`"concat"`, `"add"` or `"prepend"`), then the trunk `layers`.
"""
struct Architecture
    layers::Vector{Layer}
    inputs::Union{Nothing,Vector{Vector{Layer}}}
    combine::Union{Nothing,String}
end

Architecture(layers::Vector{Layer}) = Architecture(layers, nothing, nothing)

"""
    Arrow

An arrow of a diagram: [`DataArrow`](@ref), [`FunctionArrow`](@ref) or [`ModelArrow`](@ref).
Every arrow has `name`, `sources` (object names, in order) and `target`.
"""
abstract type Arrow end

"""
    DataArrow(name, sources, target, column, encoding)

Reads batch column `column` of its data object into `target`; `encoding` (`"index"` or
`"probabilities"`) only into categorical objects.
"""
struct DataArrow <: Arrow
    name::String
    sources::Vector{String}
    target::String
    column::String
    encoding::Union{Nothing,String}
end

"""
    FunctionArrow(name, sources, target, op, params)

A fixed built-in operation (SPEC §3.2) such as `"softmax"` or `"concat"`, with its parameters.
"""
struct FunctionArrow <: Arrow
    name::String
    sources::Vector{String}
    target::String
    op::String
    params::Dict{String,Any}
end

"""
    ModelArrow(name, sources, target, trainable, architecture, external)

A network from `sources` to `target`: a portable `architecture`, or `external` code bound when
the diagram is compiled. `trainable` says whether the loss trains it.
"""
struct ModelArrow <: Arrow
    name::String
    sources::Vector{String}
    target::String
    trainable::Bool
    architecture::Union{Nothing,Architecture}
    external::Bool
end

arrow_kind(::DataArrow) = "data"
arrow_kind(::FunctionArrow) = "function"
arrow_kind(::ModelArrow) = "model"

"""
    ExplicitEquation(lhs, rhs, distance, weight, name)

An equation written in the file (SPEC §6.2), its terms still as text; unset fields are `nothing`.
"""
struct ExplicitEquation
    lhs::String
    rhs::String
    distance::Union{Nothing,Distance}
    weight::Union{Nothing,Float64}
    name::Union{Nothing,String}
end

"""
    Diagram

A learning diagram: objects and arrows in declaration order (the first of two equal names wins),
equation settings and the term bound. Read one with [`load_diagram`](@ref).
"""
struct Diagram
    name::Union{Nothing,String}
    description::Union{Nothing,String}
    objects::Vector{DiagramObject}
    arrows::Vector{Arrow}
    object_index::Dict{String,Int}
    arrow_index::Dict{String,Int}
    automatic::Bool
    explicit::Vector{ExplicitEquation}
    max_terms::Union{Nothing,Int}
    format_version::String
    max_term_size::Union{Nothing,Int}
    max_equations::Union{Nothing,Int}
    max_total_terms::Union{Nothing,Int}
end

# the forms without the bounds added later (SPEC §5.3, §6.4): those at their defaults
Diagram(name, description, objects, arrows, object_index, arrow_index, automatic, explicit, max_terms,
        format_version) =
    Diagram(name, description, objects, arrows, object_index, arrow_index, automatic, explicit, max_terms,
            format_version, nothing, nothing, nothing)
Diagram(name, description, objects, arrows, object_index, arrow_index, automatic, explicit, max_terms,
        format_version, max_term_size, max_equations) =
    Diagram(name, description, objects, arrows, object_index, arrow_index, automatic, explicit, max_terms,
            format_version, max_term_size, max_equations, nothing)

const DEFAULT_MAX_TERMS = 256
const DEFAULT_MAX_TERM_SIZE = 1000
const DEFAULT_MAX_EQUATIONS = 10000
const DEFAULT_MAX_TOTAL_TERMS = 100000  # terms found over all objects while enumerating (SPEC §5.3)

term_bound(d::Diagram) = d.max_terms === nothing ? DEFAULT_MAX_TERMS : d.max_terms
term_size_bound(d::Diagram) = d.max_term_size === nothing ? DEFAULT_MAX_TERM_SIZE : d.max_term_size
equation_bound(d::Diagram) = d.max_equations === nothing ? DEFAULT_MAX_EQUATIONS : d.max_equations
total_term_bound(d::Diagram) = d.max_total_terms === nothing ? DEFAULT_MAX_TOTAL_TERMS : d.max_total_terms
has_object(d::Diagram, name::AbstractString) = haskey(d.object_index, name)
has_arrow(d::Diagram, name::AbstractString) = haskey(d.arrow_index, name)
object_named(d::Diagram, name::AbstractString) = d.objects[d.object_index[name]]
arrow_named(d::Diagram, name::AbstractString) = d.arrows[d.arrow_index[name]]

"""
    arrow_position(d::Diagram, name) -> Int

The 0-based declaration position of an arrow: the alphabet of the canonical term order (SPEC §5.4).
"""
arrow_position(d::Diagram, name::AbstractString) = d.arrow_index[name] - 1

data_objects(d::Diagram) = [o.name for o in d.objects if o isa DataObject]
model_arrows(d::Diagram) = [a for a in d.arrows if a isa ModelArrow]

# ----------------------------------------------------------------------------- from JSON

without_x_keys(o::AbstractDict, drop) = Dict{String,Any}(k => v for (k, v) in o if !(k in drop) && !startswith(k, "x-"))

# Sizes past Int64 are absurd and saturate rather than throw; they fail the shape checks anyway.
json_int(x::Integer) = Int(clamp(x, typemin(Int), typemax(Int)))
json_ints(xs) = Int[json_int(x) for x in xs]
name_list(s) = s isa AbstractString ? [String(s)] : String[String(x) for x in s]

distance_from_json(::Nothing) = nothing
distance_from_json(o::AbstractDict) = Distance(o["name"], without_x_keys(o, ("name",)))

layers_from_json(items) = Layer[Layer(x["type"], without_x_keys(x, ("type",))) for x in items]

function architecture_from_json(a::AbstractDict)
    inputs = haskey(a, "inputs") ? [layers_from_json(b) for b in a["inputs"]] : nothing
    return Architecture(layers_from_json(a["layers"]), inputs, get(a, "combine", nothing))
end

function object_from_json(o::AbstractDict)
    kind = o["kind"]
    kind == "data" && return DataObject(o["name"])
    distance = distance_from_json(get(o, "distance", nothing))
    kind == "tensor" && return TensorObject(o["name"], json_ints(o["shape"]), o["dtype"], distance)
    return CategoricalObject(o["name"], json_int(o["classes"]), json_ints(get(o, "shape", Any[])), distance)
end

function arrow_from_json(a::AbstractDict)
    kind = a["kind"]
    sources = name_list(a["source"])
    if kind == "data"
        return DataArrow(a["name"], sources, a["target"], a["column"], get(a, "encoding", nothing))
    elseif kind == "function"
        params = without_x_keys(a, ("name", "kind", "source", "target", "op"))
        return FunctionArrow(a["name"], sources, a["target"], a["op"], params)
    end
    arch = get(a, "architecture", nothing)
    return ModelArrow(a["name"], sources, a["target"], a["trainable"],
                      arch === nothing ? nothing : architecture_from_json(arch), get(a, "external", false) === true)
end

function explicit_from_json(e::AbstractDict)
    weight = get(e, "weight", nothing)
    return ExplicitEquation(e["lhs"], e["rhs"], distance_from_json(get(e, "distance", nothing)),
                            weight === nothing ? nothing : Float64(weight), get(e, "name", nothing))
end

"""
    diagram_from_json(doc) -> Diagram

A [`Diagram`](@ref) from a schema-valid document, without the checks of meaning; the first of
two equal names wins (the checks report the second).
"""
function diagram_from_json(doc::AbstractDict)
    objects = DiagramObject[]
    object_index = Dict{String,Int}()
    for o in doc["objects"]
        haskey(object_index, o["name"]) && continue
        push!(objects, object_from_json(o))
        object_index[o["name"]] = length(objects)
    end
    arrows = Arrow[]
    arrow_index = Dict{String,Int}()
    for a in doc["arrows"]
        (haskey(arrow_index, a["name"]) || haskey(object_index, a["name"])) && continue
        push!(arrows, arrow_from_json(a))
        arrow_index[a["name"]] = length(arrows)
    end
    eqs = get(doc, "equations", JSON.Object{String,Any}())
    explicit = ExplicitEquation[explicit_from_json(e) for e in get(eqs, "explicit", Any[])]
    max_terms = get(doc, "max_terms", nothing)
    max_term_size = get(doc, "max_term_size", nothing)
    max_equations = get(doc, "max_equations", nothing)
    max_total_terms = get(doc, "max_total_terms", nothing)
    return Diagram(get(doc, "name", nothing), get(doc, "description", nothing), objects, arrows, object_index,
                   arrow_index, get(eqs, "automatic", true), explicit,
                   max_terms === nothing ? nothing : json_int(max_terms), doc["format_version"],
                   max_term_size === nothing ? nothing : json_int(max_term_size),
                   max_equations === nothing ? nothing : json_int(max_equations),
                   max_total_terms === nothing ? nothing : json_int(max_total_terms))
end

# ----------------------------------------------------------------------------- to JSON

distance_json(d::Distance) = merge(Dict{String,Any}("name" => d.name), d.params)
layer_json(l::Layer) = merge(Dict{String,Any}("type" => l.type), l.params)

"""
    architecture_json(arch::Architecture) -> Dict{String,Any}

The architecture as a JSON-ready dictionary, as it is written in a diagram file.
"""
function architecture_json(arch::Architecture)
    out = Dict{String,Any}("layers" => [layer_json(l) for l in arch.layers])
    arch.inputs === nothing || (out["inputs"] = [[layer_json(l) for l in b] for b in arch.inputs])
    arch.combine === nothing || (out["combine"] = arch.combine)
    return out
end
