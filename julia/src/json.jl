# Reading and writing JSON exactly as Python's `json` module does (RFC 8259 plus the literals
# NaN, Infinity and -Infinity), so that both libraries accept and reject the same diagram files.
# General JSON packages differ in ways that matter here: JSON3 reads `3.0` as the integer 3
# (SPEC §1 makes it `wrong-type`) and ignores data after the value.

"""
    JSONObject

A JSON object as read from a document: its members in document order, looked up by key.
A key given twice keeps its first position and its last value, as in Python.
"""
struct JSONObject <: AbstractDict{String,Any}
    keys::Vector{String}
    values::Vector{Any}
    index::Dict{String,Int}
end

JSONObject() = JSONObject(String[], Any[], Dict{String,Int}())

Base.length(o::JSONObject) = length(o.keys)
Base.haskey(o::JSONObject, key::AbstractString) = haskey(o.index, key)
Base.getindex(o::JSONObject, key::AbstractString) = o.values[o.index[key]]
function Base.get(o::JSONObject, key::AbstractString, default)
    i = get(o.index, key, 0)
    return i == 0 ? default : o.values[i]
end
Base.keys(o::JSONObject) = o.keys
Base.iterate(o::JSONObject, i::Int = 1) = i > length(o.keys) ? nothing : (o.keys[i] => o.values[i], i + 1)

function Base.setindex!(o::JSONObject, value, key::AbstractString)
    i = get(o.index, key, 0)
    if i == 0
        push!(o.keys, String(key))
        push!(o.values, value)
        o.index[String(key)] = length(o.keys)
    else
        o.values[i] = value
    end
    return o
end

"""
    JSONSyntaxError(message, line, column)

Thrown by [`parse_json`](@ref) for text that is not one JSON value; `line` and `column` are 1-based.
"""
struct JSONSyntaxError <: Exception
    message::String
    line::Int
    column::Int
end

Base.showerror(io::IO, e::JSONSyntaxError) = print(io, "invalid JSON at line ", e.line, ", column ", e.column, ": ", e.message)

mutable struct JSONReader
    bytes::Vector{UInt8}
    pos::Int
    depth::Int
end

const JSON_MAX_DEPTH = 1000  # about where Python's json gives up (its recursion limit)

function json_fail(r::JSONReader, message::AbstractString)
    before = view(r.bytes, 1:min(r.pos - 1, length(r.bytes)))
    line = count(==(UInt8('\n')), before) + 1
    last_newline = findlast(==(UInt8('\n')), before)
    column = r.pos - (last_newline === nothing ? 0 : last_newline)
    throw(JSONSyntaxError(message, line, column))
end

json_peek(r::JSONReader) = r.pos <= length(r.bytes) ? r.bytes[r.pos] : 0x00
json_at_end(r::JSONReader) = r.pos > length(r.bytes)

function json_skip_space!(r::JSONReader)
    while !json_at_end(r) && r.bytes[r.pos] in (UInt8(' '), UInt8('\t'), UInt8('\n'), UInt8('\r'))
        r.pos += 1
    end
end

function json_expect_word!(r::JSONReader, word::String)
    n = ncodeunits(word)
    if r.pos + n - 1 <= length(r.bytes) && view(r.bytes, r.pos:r.pos+n-1) == codeunits(word)
        r.pos += n
        return
    end
    json_fail(r, "expected a value")
end

"""
    parse_json(text::AbstractString) -> Any

One JSON value from `text`, exactly as Python's `json.loads` reads it: objects become
[`JSONObject`](@ref)s, arrays `Vector{Any}`, numbers written without fraction or exponent
`Int64` (or `BigInt` when larger), other numbers `Float64`, and `null` `nothing`.
Throws [`JSONSyntaxError`](@ref) for anything else, including data after the value.
"""
function parse_json(text::AbstractString)
    r = JSONReader(Vector{UInt8}(codeunits(String(text))), 1, 0)
    json_skip_space!(r)
    value = json_value!(r)
    json_skip_space!(r)
    json_at_end(r) || json_fail(r, "extra data after the JSON value")
    return value
end

function json_value!(r::JSONReader)
    json_at_end(r) && json_fail(r, "expected a value, found the end of the text")
    b = json_peek(r)
    if b == UInt8('{')
        return json_object!(r)
    elseif b == UInt8('[')
        return json_array!(r)
    elseif b == UInt8('"')
        return json_string!(r)
    elseif b == UInt8('t')
        json_expect_word!(r, "true")
        return true
    elseif b == UInt8('f')
        json_expect_word!(r, "false")
        return false
    elseif b == UInt8('n')
        json_expect_word!(r, "null")
        return nothing
    elseif b == UInt8('N')
        json_expect_word!(r, "NaN")
        return NaN
    elseif b == UInt8('I')
        json_expect_word!(r, "Infinity")
        return Inf
    elseif b == UInt8('-') && r.pos < length(r.bytes) && r.bytes[r.pos+1] == UInt8('I')
        r.pos += 1
        json_expect_word!(r, "Infinity")
        return -Inf
    elseif b == UInt8('-') || UInt8('0') <= b <= UInt8('9')
        return json_number!(r)
    end
    json_fail(r, "expected a value")
end

function json_enter!(r::JSONReader)
    r.depth += 1
    r.depth > JSON_MAX_DEPTH && json_fail(r, "nested more than $JSON_MAX_DEPTH levels deep")
    r.pos += 1
end

function json_object!(r::JSONReader)
    json_enter!(r)
    object = JSONObject()
    json_skip_space!(r)
    if json_peek(r) == UInt8('}')
        r.pos += 1
        r.depth -= 1
        return object
    end
    while true
        json_skip_space!(r)
        json_peek(r) == UInt8('"') || json_fail(r, "expected a property name in double quotes")
        key = json_string!(r)
        json_skip_space!(r)
        json_peek(r) == UInt8(':') || json_fail(r, "expected ':' after a property name")
        r.pos += 1
        json_skip_space!(r)
        object[key] = json_value!(r)
        json_skip_space!(r)
        b = json_peek(r)
        r.pos += 1
        b == UInt8('}') && break
        b == UInt8(',') || (r.pos -= 1; json_fail(r, "expected ',' or '}'"))
    end
    r.depth -= 1
    return object
end

function json_array!(r::JSONReader)
    json_enter!(r)
    items = Any[]
    json_skip_space!(r)
    if json_peek(r) == UInt8(']')
        r.pos += 1
        r.depth -= 1
        return items
    end
    while true
        json_skip_space!(r)
        push!(items, json_value!(r))
        json_skip_space!(r)
        b = json_peek(r)
        r.pos += 1
        b == UInt8(']') && break
        b == UInt8(',') || (r.pos -= 1; json_fail(r, "expected ',' or ']'"))
    end
    r.depth -= 1
    return items
end

function json_digits!(r::JSONReader)
    start = r.pos
    while !json_at_end(r) && UInt8('0') <= r.bytes[r.pos] <= UInt8('9')
        r.pos += 1
    end
    return r.pos > start
end

function json_number!(r::JSONReader)
    start = r.pos
    json_peek(r) == UInt8('-') && (r.pos += 1)
    if json_peek(r) == UInt8('0')
        r.pos += 1
    elseif !json_digits!(r)
        json_fail(r, "expected a digit")
    end
    integral = true
    if json_peek(r) == UInt8('.') && r.pos < length(r.bytes) && UInt8('0') <= r.bytes[r.pos+1] <= UInt8('9')
        r.pos += 1
        json_digits!(r)
        integral = false
    end
    if json_peek(r) in (UInt8('e'), UInt8('E'))
        mark = r.pos
        r.pos += 1
        json_peek(r) in (UInt8('+'), UInt8('-')) && (r.pos += 1)
        if json_digits!(r)
            integral = false
        else
            r.pos = mark  # not an exponent: the number ends before the 'e', which is then extra data
        end
    end
    text = String(r.bytes[start:r.pos-1])
    if integral
        value = tryparse(Int64, text)
        return value === nothing ? parse(BigInt, text) : value
    end
    return parse(Float64, text)
end

const JSON_ESCAPES = Dict(UInt8('"') => '"', UInt8('\\') => '\\', UInt8('/') => '/', UInt8('b') => '\b',
                          UInt8('f') => '\f', UInt8('n') => '\n', UInt8('r') => '\r', UInt8('t') => '\t')

is_hex_digit(b::UInt8) = UInt8('0') <= b <= UInt8('9') || UInt8('a') <= b <= UInt8('f') || UInt8('A') <= b <= UInt8('F')

function json_hex4!(r::JSONReader)
    r.pos + 3 <= length(r.bytes) || json_fail(r, "incomplete \\u escape")
    hex = r.bytes[r.pos:r.pos+3]
    all(is_hex_digit, hex) || json_fail(r, "invalid \\u escape")  # tryparse would allow a sign or spaces
    r.pos += 4
    return parse(UInt16, String(hex); base = 16)
end

function json_string!(r::JSONReader)
    r.pos += 1  # the opening quote
    out = IOBuffer()
    while true
        json_at_end(r) && json_fail(r, "unterminated string")
        b = r.bytes[r.pos]
        if b == UInt8('"')
            r.pos += 1
            return String(take!(out))
        elseif b == UInt8('\\')
            r.pos += 1
            json_at_end(r) && json_fail(r, "unterminated string")
            e = r.bytes[r.pos]
            if e == UInt8('u')
                r.pos += 1
                unit = json_hex4!(r)
                if 0xd800 <= unit <= 0xdbff && r.pos + 1 <= length(r.bytes) &&
                   r.bytes[r.pos] == UInt8('\\') && r.bytes[r.pos+1] == UInt8('u')
                    mark = r.pos
                    r.pos += 2
                    low = json_hex4!(r)
                    if 0xdc00 <= low <= 0xdfff
                        write(out, Char(0x10000 + ((UInt32(unit) - 0xd800) << 10) + (UInt32(low) - 0xdc00)))
                        continue
                    end
                    r.pos = mark
                end
                write(out, Char(unit))  # a lone surrogate is kept, as Python keeps it
            elseif haskey(JSON_ESCAPES, e)
                write(out, JSON_ESCAPES[e])
                r.pos += 1
            else
                json_fail(r, "invalid escape")
            end
        elseif b < 0x20
            json_fail(r, "control character in a string")
        else
            write(out, b)
            r.pos += 1
        end
    end
end

"""
    write_json(io::IO, value)

Write `value` (dictionaries, vectors, tuples, strings, numbers, booleans, `nothing`) as JSON.
Non-finite floats are written `NaN`, `Infinity`, `-Infinity`, which Python's `json` reads.
"""
function write_json end

write_json(io::IO, ::Nothing) = print(io, "null")
write_json(io::IO, x::Bool) = print(io, x ? "true" : "false")
write_json(io::IO, x::Integer) = print(io, x)
function write_json(io::IO, x::AbstractFloat)
    y = Float64(x)
    isnan(y) ? print(io, "NaN") : isinf(y) ? print(io, y > 0 ? "Infinity" : "-Infinity") : print(io, repr(y))
end
write_json(io::IO, x::Symbol) = write_json(io, String(x))

function write_json(io::IO, s::AbstractString)
    print(io, '"')
    for c in s
        if c == '"'
            print(io, "\\\"")
        elseif c == '\\'
            print(io, "\\\\")
        elseif c < ' '
            print(io, "\\u", string(UInt32(c); base = 16, pad = 4))
        else
            print(io, c)
        end
    end
    print(io, '"')
end

write_json(io::IO, d::AbstractDict) = write_json_members(io, pairs(d))
write_json(io::IO, nt::NamedTuple) = write_json_members(io, pairs(nt))

function write_json_members(io::IO, members)
    print(io, '{')
    for (i, (k, v)) in enumerate(members)
        i > 1 && print(io, ", ")
        write_json(io, string(k))
        print(io, ": ")
        write_json(io, v)
    end
    print(io, '}')
end

function write_json(io::IO, xs::Union{AbstractVector,Tuple})
    print(io, '[')
    for (i, x) in enumerate(xs)
        i > 1 && print(io, ", ")
        write_json(io, x)
    end
    print(io, ']')
end

"""
    json_text(value) -> String

`value` as JSON text (see [`write_json`](@ref)).
"""
json_text(value) = sprint(write_json, value)
