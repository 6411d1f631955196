# Reading and writing JSON with JSON.jl (1.7 or later), behind a thin wrapper for what SPEC §1
# says and JSON.jl leaves to its caller: no byte order mark, arrays and objects nested at most
# JSON_MAX_DEPTH deep (checked before parsing, so hostile nesting cannot exhaust the stack), a
# key at most once per object (JSON.jl's `duplicate_keys = :error`), no `NaN`/`Infinity`
# literals (JSON.jl's default `allownan = false`), and numbers out of Float64's range read as
# Python's `json` reads them (JSON.jl returns a `BigFloat` there; `1e400` becomes `Inf`, then
# `bad-value`; `1e-400` becomes `0.0`). Integers stay `Int64` (`BigInt` when larger), objects
# keep their document order (`JSON.Object`), and data after the value is an error.

"""
    JSONSyntaxError(message)

Thrown by [`parse_json`](@ref) for text that is not one JSON value as SPEC §1 reads it.
"""
struct JSONSyntaxError <: Exception
    message::String
end

Base.showerror(io::IO, e::JSONSyntaxError) = print(io, "invalid JSON: ", e.message)

"""The deepest nesting of arrays and objects SPEC §1 allows."""
const JSON_MAX_DEPTH = 512

"""
    json_too_deep(bytes) -> Bool

Whether the arrays and objects of JSON text nest more than [`JSON_MAX_DEPTH`](@ref) deep
(brackets inside strings do not count). One pass over the bytes, no recursion.
"""
function json_too_deep(bytes::AbstractVector{UInt8})
    depth = 0
    in_string = escaped = false
    for b in bytes
        if in_string
            if escaped
                escaped = false
            elseif b == UInt8('\\')
                escaped = true
            elseif b == UInt8('"')
                in_string = false
            end
        elseif b == UInt8('"')
            in_string = true
        elseif b == UInt8('[') || b == UInt8('{')
            depth += 1
            depth > JSON_MAX_DEPTH && return true
        elseif b == UInt8(']') || b == UInt8('}')
            depth -= 1
        end
    end
    return false
end

"""
    parse_json(text::AbstractString) -> Any

One JSON value from `text` as SPEC §1 reads it: objects become `JSON.Object{String,Any}`
(document order), arrays `Vector{Any}`, numbers written without fraction or exponent `Int64`
(or `BigInt` when larger), other numbers `Float64` (out of range: `±Inf` or `0.0`), `null`
`nothing`. Throws [`JSONSyntaxError`](@ref) for anything else: invalid JSON, data after the
value, a byte order mark, `NaN`/`Infinity`, a repeated key, nesting deeper than
[`JSON_MAX_DEPTH`](@ref).
"""
function parse_json(text::AbstractString)
    s = String(text)
    bytes = codeunits(s)
    length(bytes) >= 3 && bytes[1] == 0xef && bytes[2] == 0xbb && bytes[3] == 0xbf &&
        throw(JSONSyntaxError("the text starts with a byte order mark"))
    json_too_deep(bytes) && throw(JSONSyntaxError("arrays and objects nest more than $JSON_MAX_DEPTH levels deep"))
    value = try
        JSON.parse(s; duplicate_keys = :error)
    catch err
        err isa JSON.DuplicateKeyError &&
            throw(JSONSyntaxError("the key $(repr(err.key)) appears twice in one object (byte $(err.position))"))
        # JSON.jl reports every syntax error as an ArgumentError whose first line says where.
        err isa ArgumentError && throw(JSONSyntaxError(first(split(err.msg, '\n'))))
        rethrow()
    end
    return float64_numbers!(value)
end

# JSON.jl reads a number beyond Float64's range as a BigFloat; Python's `json` rounds it to Float64.
float64_numbers!(x::BigFloat) = Float64(x)
float64_numbers!(x) = x
function float64_numbers!(xs::Vector{Any})
    for i in eachindex(xs)
        xs[i] = float64_numbers!(xs[i])
    end
    return xs
end
function float64_numbers!(o::AbstractDict)
    for (k, v) in o
        v isa Union{BigFloat,Vector{Any},AbstractDict} && (o[k] = float64_numbers!(v))
    end
    return o
end

"""
    json_text(value) -> String

`value` (dictionaries, vectors, tuples, strings, numbers, booleans, `nothing`) as JSON text,
by JSON.jl: a `Dict`'s keys sorted, other dictionaries in their order; non-finite floats written
`NaN`, `Infinity`, `-Infinity`, which Python's `json.loads` reads (the bridge's replies).
"""
json_text(value) = JSON.json(value; allownan = true)

"""
    json_document(doc::AbstractDict) -> JSON.Object

A document given as Julia values, as [`parse_json`](@ref) would have read it: dictionaries become
`JSON.Object`s, a `Dict`'s keys sorted (a `Dict` has no order), other dictionaries' keys in their
own order; vectors and tuples `Vector{Any}`; integers `Int64` (`BigInt` when larger); floats
`Float64` by their shortest decimal (`0.1f0` is 0.1), `NaN` and infinities kept so that the checks
report them at their place. Nesting deeper than [`JSON_MAX_DEPTH`](@ref) is a [`JSONSyntaxError`](@ref).
"""
json_document(doc::JSON.Object) = doc
json_document(doc::AbstractDict) = json_value(doc, 0)

function json_value(x::AbstractDict, depth::Int)
    depth >= JSON_MAX_DEPTH && throw(JSONSyntaxError("arrays and objects nest more than $JSON_MAX_DEPTH levels deep"))
    members = x isa Dict ? sort!([string(k) => v for (k, v) in x]; by = first) : [string(k) => v for (k, v) in x]
    object = JSON.Object{String,Any}()
    for (k, v) in members
        haskey(object, k) && throw(JSONSyntaxError("the key $(repr(k)) appears twice in one object"))
        object[k] = json_value(v, depth + 1)
    end
    return object
end
function json_value(xs::Union{AbstractVector,Tuple}, depth::Int)
    depth >= JSON_MAX_DEPTH && throw(JSONSyntaxError("arrays and objects nest more than $JSON_MAX_DEPTH levels deep"))
    return Any[json_value(x, depth + 1) for x in xs]
end
json_value(x::Bool, ::Int) = x
json_value(x::Integer, ::Int) = typemin(Int64) <= x <= typemax(Int64) ? Int64(x) : BigInt(x)
json_value(x::AbstractFloat, ::Int) = spec_float(x)
json_value(x::Union{AbstractString,Symbol}, ::Int) = String(x)
json_value(x, ::Int) = x

"""
    spec_float(x::Real) -> Float64

`x` as the Float64 of its shortest decimal: what a user who wrote `1f-5` or `0.01f0` declared
(`Float64(1f-5)` is 9.99999974737875e-6). Float64 values and non-finite values are unchanged.
"""
spec_float(x::Union{Float16,Float32,Float64}) = isfinite(x) ? parse(Float64, string(x)) : Float64(x)
spec_float(x::Real) = Float64(x)
