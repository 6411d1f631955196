# Checking a document's form against schema/learning-diagram.schema.json: the JSON Schema
# keywords that file uses, reported the way Python's `jsonschema` reports them, so that both
# libraries give the same codes and pointers (SPEC §10: `required` → missing-key,
# `additionalProperties` → unknown-key, `type` → wrong-type, anything else → bad-value).

"""
    schema_file() -> String

Where the interchange format's JSON Schema is: `schema/` inside this package's folder, a
byte-identical copy of the repository's `schema/learning-diagram.schema.json` (`make
julia-schema` writes it; a test of the Python suite compares them), so that the package works
when installed on its own (`Pkg.add(url = ..., subdir = "julia")`) and in the Python wheel.
"""
schema_file() = normpath(joinpath(@__DIR__, "..", "schema", "learning-diagram.schema.json"))

const SCHEMA_CACHE = Ref{Any}(nothing)

function loaded_schema()
    if SCHEMA_CACHE[] === nothing
        path = schema_file()
        isfile(path) || error("the format's JSON Schema is missing: expected it at $path")
        SCHEMA_CACHE[] = parse_json(read(path, String))
    end
    return SCHEMA_CACHE[]
end

"""
    SchemaViolation

One failed JSON Schema keyword: its name, the instance path (keys and 0-based indices), the
instance, the schema object holding the keyword, and for `required` the missing key.
"""
struct SchemaViolation
    keyword::String
    path::Vector{Any}
    instance::Any
    schema::Any
    detail::String
end

json_is_object(x) = x isa AbstractDict
json_is_array(x) = x isa AbstractVector
json_is_number(x) = x isa Real && !(x isa Bool)

# SPEC §1: an integer is written without fraction or exponent, so it is read as an integer.
function json_is_type(x, name::AbstractString)
    name == "object" && return json_is_object(x)
    name == "array" && return json_is_array(x)
    name == "string" && return x isa AbstractString
    name == "boolean" && return x isa Bool
    name == "null" && return x === nothing
    name == "number" && return json_is_number(x)
    name == "integer" && return x isa Integer && !(x isa Bool)
    return false
end

"""
    ecma_regex(pattern) -> Regex

A schema `pattern` with ECMA-262's meaning (JSON Schema's regex dialect) of a final `\$`: the end of
the text. PCRE's `\$` also matches before a final newline, which would let `"X\\n"` pass as a name.
"""
function ecma_regex(pattern::AbstractString)
    if endswith(pattern, "\$") && !endswith(pattern, "\\\$")
        pattern = chop(pattern) * "\\z"
    end
    return Regex(pattern)
end

# Equality as jsonschema's `enum` and `const` see it: 1 == 1.0, but true is not 1.
function json_equal(a, b)
    (a isa Bool || b isa Bool) && return a isa Bool && b isa Bool && a == b
    json_is_number(a) && json_is_number(b) && return a == b
    a isa AbstractString && b isa AbstractString && return a == b
    a === nothing && b === nothing && return true
    if json_is_array(a) && json_is_array(b)
        return length(a) == length(b) && all(json_equal(x, y) for (x, y) in zip(a, b))
    end
    if json_is_object(a) && json_is_object(b)
        return length(a) == length(b) && all(haskey(b, k) && json_equal(v, b[k]) for (k, v) in a)
    end
    return false
end

function resolve_ref(root, ref::AbstractString)
    startswith(ref, "#/") || error("unsupported \$ref $(repr(ref)) in the schema")
    node = root
    for part in split(ref[3:end], '/')
        node = node[replace(part, "~1" => "/", "~0" => "~")]
    end
    return node
end

"""
    schema_violations(instance, schema, root=schema) -> Vector{SchemaViolation}

Every violation of `schema` by `instance`, in the order jsonschema's `iter_errors` yields them.
"""
function schema_violations(instance, schema, root = schema)
    out = SchemaViolation[]
    collect_violations!(out, instance, schema, Any[], root)
    return out
end

is_schema_valid(instance, schema, root) = isempty(schema_violations(instance, schema, root))

function collect_violations!(out, x, schema, path, root)
    if schema isa Bool
        schema || push!(out, SchemaViolation("false", copy(path), x, schema, ""))
        return out
    end
    for (keyword, value) in schema
        check_keyword!(out, keyword, value, x, schema, path, root)
    end
    return out
end

function violation!(out, keyword, path, x, schema, detail = "")
    push!(out, SchemaViolation(keyword, copy(path), x, schema, detail))
end

function check_keyword!(out, keyword::AbstractString, value, x, schema, path, root)
    if keyword == "\$ref"
        collect_violations!(out, x, resolve_ref(root, value), path, root)
    elseif keyword == "type"
        names = value isa AbstractString ? [value] : value
        any(json_is_type(x, n) for n in names) || violation!(out, keyword, path, x, schema)
    elseif keyword == "properties"
        json_is_object(x) || return
        for (name, sub) in value
            haskey(x, name) && collect_violations!(out, x[name], sub, [path; name], root)
        end
    elseif keyword == "patternProperties"
        json_is_object(x) || return
        for (pattern, sub) in value
            regex = ecma_regex(pattern)
            for (k, v) in x
                occursin(regex, k) && collect_violations!(out, v, sub, [path; k], root)
            end
        end
    elseif keyword == "additionalProperties"
        json_is_object(x) || return
        extras = additional_properties(x, schema)
        if value === false
            isempty(extras) || violation!(out, keyword, path, x, schema)
        else
            for k in extras
                collect_violations!(out, x[k], value, [path; k], root)
            end
        end
    elseif keyword == "required"
        json_is_object(x) || return
        for name in value
            haskey(x, name) || violation!(out, keyword, path, x, schema, name)
        end
    elseif keyword == "enum"
        any(json_equal(x, e) for e in value) || violation!(out, keyword, path, x, schema)
    elseif keyword == "const"
        json_equal(x, value) || violation!(out, keyword, path, x, schema)
    elseif keyword == "pattern"
        x isa AbstractString && !occursin(ecma_regex(value), x) && violation!(out, keyword, path, x, schema)
    elseif keyword == "maxLength"
        x isa AbstractString && length(x) > value && violation!(out, keyword, path, x, schema)
    elseif keyword == "minLength"
        x isa AbstractString && length(x) < value && violation!(out, keyword, path, x, schema)
    elseif keyword == "minItems"
        json_is_array(x) && length(x) < value && violation!(out, keyword, path, x, schema)
    elseif keyword == "maxItems"
        json_is_array(x) && length(x) > value && violation!(out, keyword, path, x, schema)
    elseif keyword == "minimum"
        json_is_number(x) && x < value && violation!(out, keyword, path, x, schema)
    elseif keyword == "maximum"
        json_is_number(x) && x > value && violation!(out, keyword, path, x, schema)
    elseif keyword == "exclusiveMinimum"
        json_is_number(x) && x <= value && violation!(out, keyword, path, x, schema)
    elseif keyword == "exclusiveMaximum"
        json_is_number(x) && x >= value && violation!(out, keyword, path, x, schema)
    elseif keyword == "items"
        json_is_array(x) || return
        for (i, item) in enumerate(x)
            collect_violations!(out, item, value, [path; i - 1], root)
        end
    elseif keyword == "allOf"
        for sub in value
            collect_violations!(out, x, sub, path, root)
        end
    elseif keyword == "anyOf"
        any(is_schema_valid(x, sub, root) for sub in value) || violation!(out, keyword, path, x, schema)
    elseif keyword == "oneOf"
        count(sub -> is_schema_valid(x, sub, root), value) == 1 || violation!(out, keyword, path, x, schema)
    elseif keyword == "not"
        is_schema_valid(x, value, root) && violation!(out, keyword, path, x, schema)
    elseif keyword == "if"
        branch = is_schema_valid(x, value, root) ? "then" : "else"
        haskey(schema, branch) && collect_violations!(out, x, schema[branch], path, root)
    end
    # `then` and `else` are applied by `if`; `$defs`, `$schema`, `$id`, `title`, `description` say nothing
    return
end

function additional_properties(x, schema)
    declared = get(schema, "properties", nothing)
    patterns = [ecma_regex(p) for p in keys(get(schema, "patternProperties", JSON.Object{String,Any}()))]
    return [k for k in keys(x) if !(declared !== nothing && haskey(declared, k)) && !any(occursin(r, k) for r in patterns)]
end

const KEYWORD_CODES = Dict("required" => "missing-key", "additionalProperties" => "unknown-key", "type" => "wrong-type")

"""
    schema_problems(doc) -> Vector{Problem}

The document's violations of the format's JSON Schema as problems, sorted by instance path and
without repeats, exactly as the Python library lists them.
"""
function schema_problems(doc)
    violations = schema_violations(doc, loaded_schema())
    sort!(violations; by = v -> [string(p) for p in v.path], alg = MergeSort)
    problems = Problem[]
    for v in violations
        code = get(KEYWORD_CODES, v.keyword, "bad-value")
        if v.keyword == "required"
            push!(problems, Problem(code, json_pointer(v.path..., v.detail), "missing required key $(repr(v.detail))"))
        elseif v.keyword == "additionalProperties"
            allowed = get(v.schema, "properties", JSON.Object{String,Any}())
            for k in keys(v.instance)
                haskey(allowed, k) || startswith(k, "x-") ||
                    push!(problems, Problem(code, json_pointer(v.path..., k), "unknown key $(repr(k))"))
            end
        else
            push!(problems, Problem(code, json_pointer(v.path...), violation_message(v)))
        end
    end
    seen = Set{Tuple{String,String}}()
    return [p for p in problems if !((p.code, p.pointer) in seen) && (push!(seen, (p.code, p.pointer)); true)]
end

function violation_message(v::SchemaViolation)
    shown = v.instance isa Union{AbstractString,Number,Bool,Nothing} ? repr(v.instance) : "this value"
    k = v.keyword
    k == "type" && return "$shown is not of type $(json_text(v.schema["type"]))"
    k == "enum" && return "$shown is not one of $(json_text(v.schema["enum"]))"
    k == "const" && return "$shown is not $(json_text(v.schema["const"]))"
    k in ("oneOf", "anyOf", "not") && return "does not match: " * get(v.schema, "description", "none of the allowed forms fits")
    return "$shown does not satisfy $k $(json_text(v.schema[k]))"
end
