# The vocabulary's defaults as the JSON Schema declares them: the `default` keyword beside each
# optional parameter of a layer (`$defs/layer`), a function op (`$defs/arrow`, kind `function`)
# and a distance (`$defs/distance`). The schema is the one place they are written; the Python
# library reads the same file (`diagrammatic_learning/vocabulary.py`). Read on first use from
# `loaded_schema()` (schema.jl), so nothing is baked in at precompilation.

"""
    schema_cases(definition, key) -> Vector{Pair{String,Any}}

The `then.properties` of each `if {key: const NAME}` case of a schema definition's `allOf`, as
`NAME => properties`, in the schema's order.
"""
function schema_cases(definition, key::AbstractString)
    return Pair{String,Any}[String(case["if"]["properties"][key]["const"]) => case["then"]["properties"]
                            for case in definition["allOf"]]
end

# A JSON array of integers is read as a `Vector{Any}`; `map(identity, …)` narrows it to a
# `Vector{Int}`, as a default written in Julia would be.
schema_default_value(v) = v isa AbstractVector ? map(identity, v) : v

function schema_defaults(cases::Vector{Pair{String,Any}})
    out = Dict{String,Dict{String,Any}}()
    for (name, properties) in cases
        defaults = Dict{String,Any}()
        for (param, spec) in properties
            spec isa AbstractDict && haskey(spec, "default") && (defaults[param] = schema_default_value(spec["default"]))
        end
        out[name] = defaults
    end
    return out
end

function function_arrow_schema()
    for case in loaded_schema()["\$defs"]["arrow"]["allOf"]
        case["if"]["properties"]["kind"]["const"] == "function" && return case["then"]
    end
    error("the format's JSON Schema has no function arrow")
end

const VOCABULARY_DEFAULTS = Dict{Symbol,Dict{String,Dict{String,Any}}}()

function vocabulary_defaults(which::Symbol)
    get!(VOCABULARY_DEFAULTS, which) do
        defs = loaded_schema()["\$defs"]
        which === :layer && return schema_defaults(schema_cases(defs["layer"], "type"))
        which === :function && return schema_defaults(schema_cases(function_arrow_schema(), "op"))
        which === :distance && return schema_defaults(schema_cases(defs["distance"], "name"))
        throw(ArgumentError("no vocabulary $(repr(which))"))
    end
end

"""
    layer_defaults(type) -> Dict{String,Any}

The defaults of a layer type's optional parameters, from the schema (empty for an unknown type).
"""
layer_defaults(type::AbstractString) = get(vocabulary_defaults(:layer), type, Dict{String,Any}())

"""
    function_defaults(op) -> Dict{String,Any}

The defaults of a function op's optional parameters, from the schema (empty for an unknown op).
"""
function_defaults(op::AbstractString) = get(vocabulary_defaults(:function), op, Dict{String,Any}())

"""
    distance_defaults(name) -> Dict{String,Any}

The defaults of a distance's parameters, from the schema (empty for an unknown distance).
"""
distance_defaults(name::AbstractString) = get(vocabulary_defaults(:distance), name, Dict{String,Any}())
