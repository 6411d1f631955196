# Reading and checking a diagram: the document's form (format, version, JSON Schema) and its
# meaning (SPEC §1–7), with the same problems, codes and pointers as the Python library's
# io.py and validate.py.

# SPEC §1: a diagram document is read from a regular file of at most this many bytes, and its
# arrays and objects nest at most this deep (the top-level object is depth 1).
const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
const MAX_NESTING = JSON_MAX_DEPTH  # 512
# SPEC §1: integers lie within ±(2^53 − 1) (I-JSON, RFC 7493), so that every reader holds them exactly
# (and no size overflows Int64 when it is multiplied by a small factor).
const MAX_INTEGER = 2^53 - 1

"""
    read_document(path::AbstractString) -> Any

Parse a JSON file; a [`DiagramError`](@ref) `file-not-found` if there is no such file,
`malformed-json` if it cannot be read (pointer: the path) or is not JSON (pointer: `""`, the
message gives line and column). Only a regular file of at most `MAX_DOCUMENT_BYTES` is read
(SPEC §1): a FIFO, a device or a folder is refused before it is opened, so nothing blocks.
"""
function read_document(path::AbstractString)
    ispath(path) || throw(DiagramError("file-not-found", path, "no such file: $path"))
    isfile(path) ||  # `isfile` is true for regular files only
        throw(DiagramError("malformed-json", path,
                           "$path is not a regular file (a FIFO, a device, a socket or a folder); only regular files are read"))
    size = filesize(path)
    size > MAX_DOCUMENT_BYTES &&
        throw(DiagramError("malformed-json", path, "$path has $size bytes, more than the $MAX_DOCUMENT_BYTES bytes allowed"))
    bytes = try
        open(io -> read(io, MAX_DOCUMENT_BYTES + 1), path)  # never more than the cap, even if the file grows
    catch err
        err isa InterruptException && rethrow()
        throw(DiagramError("malformed-json", path, "cannot read $path: $(sprint(showerror, err))"))
    end
    length(bytes) > MAX_DOCUMENT_BYTES &&
        throw(DiagramError("malformed-json", path, "$path has more than the $MAX_DOCUMENT_BYTES bytes allowed"))
    isvalid(String, bytes) || throw(DiagramError("malformed-json", path, "cannot read $path: it is not UTF-8 text"))
    return parse_document(String(bytes); source = path)
end

function parse_document(text::AbstractString; source::AbstractString = "the document")
    doc = try
        parse_json(text)
    catch err
        err isa JSONSyntaxError || rethrow()
        throw(DiagramError("malformed-json", "", "$source: $(err.message)"))
    end
    nesting_depth(doc, MAX_NESTING) > MAX_NESTING &&
        throw(DiagramError("malformed-json", "", "$source: arrays and objects nest more than $MAX_NESTING deep (SPEC §1)"))
    return doc
end

"""
    nesting_depth(doc, limit) -> Int

How deep arrays and objects nest in `doc` (a scalar is 0), counting at most to `limit + 1`;
iterative, so no depth overflows the stack.
"""
function nesting_depth(doc, limit::Integer)
    deepest = 0
    stack = Tuple{Any,Int}[(doc, 1)]
    while !isempty(stack)
        value, depth = pop!(stack)
        if value isa AbstractDict || value isa AbstractVector
            deepest = max(deepest, depth)
            depth > limit && return depth
            for v in (value isa AbstractDict ? values(value) : value)
                push!(stack, (v, depth + 1))
            end
        end
    end
    return deepest
end

"""
    check_document(doc)

Check a parsed document's form: that it is a learning diagram, of a version this reader reads
(1.x), and valid against the format's JSON Schema. Throws [`DiagramError`](@ref).
"""
function check_document(doc)
    json_is_object(doc) || throw(DiagramError("not-a-diagram", "", "a diagram document is a JSON object"))
    format = get(doc, "format", nothing)
    format isa AbstractString && format == "learning-diagram" ||
        throw(DiagramError("not-a-diagram", "/format", "\"format\" must be \"learning-diagram\", got $(repr(format))"))
    nesting_depth(doc, MAX_NESTING) > MAX_NESTING &&
        throw(DiagramError("malformed-json", "", "arrays and objects nest more than $MAX_NESTING deep (SPEC §1)"))
    version = get(doc, "format_version", nothing)
    # a missing or non-string version is reported by the schema (missing-key, wrong-type) with the rest
    if version isa AbstractString
        occursin(r"\A[0-9]+\.[0-9]+\z", version) ||
            throw(DiagramError("unsupported-version", "/format_version",
                               "\"format_version\" must be \"MAJOR.MINOR\", got $(repr(version))"))
        first(split(version, '.')) == "1" ||
            throw(DiagramError("unsupported-version", "/format_version",
                               "format version $version is not supported; this reader reads 1.x"))
    end
    problems = Problem[]
    seen = Set{Tuple{String,String}}()
    for p in [schema_problems(doc); non_finite_problems(doc)]  # one problem per code and place (Inf > maximum)
        (p.code, p.pointer) in seen || (push!(seen, (p.code, p.pointer)); push!(problems, p))
    end
    # a value of the wrong type is not also a bad value, nor is anything in it ("\$schema": [2^53] is wrong-type)
    wrong_type = [p.pointer for p in problems if p.code == "wrong-type"]
    inside_wrong_type(q) = any(w -> q == w || startswith(q, w * "/"), wrong_type)
    problems = Problem[p for p in problems if !(p.code == "bad-value" && inside_wrong_type(p.pointer))]
    isempty(problems) || throw(DiagramError(problems))
    return nothing
end

"""
    non_finite_problems(doc) -> Vector{Problem}

`bad-value` for every number that is not finite and every string that is not Unicode text,
outside `x-` keys, in document order (SPEC §1: every number is finite; the reader accepts `NaN`
and `Infinity` as Python's does, reads `1e400` as infinite, and an integer literal beyond
Float64 as a `BigInt`, which counts as not finite; a lone surrogate escape such as `"\\ud800"`
gives a `String` that is not valid UTF-8). Keys count as strings, under `x-` too.
"""
non_finite_problems(doc) = collect_non_finite!(Problem[], doc, Any[])

# Whether a string is Unicode text: valid UTF-8, so no lone surrogate (a `String` holds any bytes).
is_text(s::AbstractString) = isvalid(String(s))

function collect_non_finite!(problems::Vector{Problem}, value, path::Vector{Any})
    if value isa AbstractFloat && !isfinite(value)
        push!(problems, Problem("bad-value", json_pointer(path...), "$value is not a finite number (or is beyond float64)"))
    elseif value isa Integer && !(value isa Bool) && abs(value) > MAX_INTEGER
        push!(problems, Problem("bad-value", json_pointer(path...),
                                "$value is beyond ±(2^53 − 1), the integers every reader holds exactly (SPEC §1)"))
    elseif value isa AbstractString && !is_text(value)
        push!(problems, Problem("bad-value", json_pointer(path...),
                                "the text holds a lone surrogate (\\ud800–\\udfff), which is not Unicode text"))
    elseif value isa AbstractDict
        for k in keys(value)
            is_text(k) || push!(problems, Problem("bad-value", json_pointer(path..., k),
                                                  "the key holds a lone surrogate, which is not Unicode text"))
        end
        for (k, v) in value
            is_text(k) && !startswith(k, "x-") && collect_non_finite!(problems, v, [path; k])
        end
    elseif value isa AbstractVector
        for (i, v) in enumerate(value)
            collect_non_finite!(problems, v, [path; i - 1])
        end
    end
    return problems
end

"""
    DiagramChecker

Collects the problems of meaning in a schema-valid diagram (SPEC §1–7).
"""
struct DiagramChecker
    d::Diagram
    doc::AbstractDict
    problems::Vector{Problem}
    object_index::Dict{String,Int}  # 0-based document positions, the first of equal names
    arrow_index::Dict{String,Int}
end

function first_positions(items)
    index = Dict{String,Int}()
    for (i, x) in enumerate(items)
        haskey(index, x["name"]) || (index[x["name"]] = i - 1)
    end
    return index
end

DiagramChecker(d::Diagram, doc::AbstractDict) =
    DiagramChecker(d, doc, Problem[], first_positions(doc["objects"]), first_positions(doc["arrows"]))

add!(c::DiagramChecker, code, place, message) = push!(c.problems, Problem(code, place, message))
arrow_ptr(c::DiagramChecker, name, rest...) = json_pointer("arrows", c.arrow_index[name], rest...)
source_ptr(c::DiagramChecker, a::Arrow, k::Int) =
    length(a.sources) > 1 ? arrow_ptr(c, a.name, "source", k) : arrow_ptr(c, a.name, "source")

function check_names!(c::DiagramChecker)
    seen = Dict{String,String}()
    for section in ("objects", "arrows"), (i, item) in enumerate(c.doc[section])
        place = json_pointer(section, i - 1, "name")
        name = item["name"]
        if haskey(seen, name)
            add!(c, "duplicate-name", place, "the name $(repr(name)) is already used at $(seen[name])")
        else
            seen[name] = place
        end
    end
end

function check_references!(c::DiagramChecker)
    ok = true
    for a in c.d.arrows
        for (k, s) in enumerate(a.sources)
            if !has_object(c.d, s)
                add!(c, "unknown-object", source_ptr(c, a, k - 1), "arrow $(repr(a.name)): no object named $(repr(s))")
                ok = false
            end
        end
        if !has_object(c.d, a.target)
            add!(c, "unknown-object", arrow_ptr(c, a.name, "target"), "arrow $(repr(a.name)): no object named $(repr(a.target))")
            ok = false
        end
    end
    return ok
end

function check_structure!(c::DiagramChecker)
    for a in c.d.arrows
        target = object_named(c.d, a.target)
        if target isa DataObject
            add!(c, "arrow-into-data", arrow_ptr(c, a.name, "target"),
                 "arrow $(repr(a.name)) targets data object $(repr(a.target)); data objects only have outgoing arrows")
            continue
        end
        if a isa DataArrow
            if length(a.sources) != 1 || !(object_named(c.d, a.sources[1]) isa DataObject)
                kinds = join((object_kind(object_named(c.d, s)) for s in a.sources), ", ")
                add!(c, "data-arrow-source", arrow_ptr(c, a.name, "source"),
                     "data arrow $(repr(a.name)) must start at one data object, not at $kinds")
            end
            if a.encoding !== nothing && !(target isa CategoricalObject)
                add!(c, "bad-value", arrow_ptr(c, a.name, "encoding"), "encoding is only for data arrows into categorical objects")
            end
            continue
        end
        bad = [k for (k, s) in enumerate(a.sources) if object_named(c.d, s) isa DataObject]
        for k in bad
            add!(c, "arrow-from-data", source_ptr(c, a, k - 1),
                 "$(arrow_kind(a)) arrow $(repr(a.name)) leaves data object $(repr(a.sources[k])); only data arrows may")
        end
        isempty(bad) || continue
        a isa FunctionArrow && check_function!(c, a)
        a isa ModelArrow && check_model!(c, a)
    end
end

function value_type(d::Diagram, name::AbstractString)::ValueType
    o = object_named(d, name)
    o isa TensorObject && return (copy(o.shape), is_float(o) ? "float" : "int64")
    return ([o.shape; o.classes], "float")  # categorical, as logits or probabilities
end

function check_function!(c::DiagramChecker, a::FunctionArrow)
    op, n = a.op, length(a.sources)
    if !op_allowed(op, c.d.format_version)
        add!(c, "bad-value", arrow_ptr(c, a.name, "op"),
             "the op $op needs format_version $(OP_SINCE[op]) or later; this document is $(c.d.format_version)")
        return
    end
    srcs = [object_named(c.d, s) for s in a.sources]
    tgt = object_named(c.d, a.target)
    multi = op in ("add", "concat")
    if multi ? n < 2 : n != 1
        add!(c, "function-arity", arrow_ptr(c, a.name, "source"),
             "$op takes $(multi ? "two or more sources" : "one source"), got $n")
        return
    end
    function want_tensor(shape, float_::Union{Nothing,Bool})
        if !(tgt isa TensorObject)
            add!(c, "kind-mismatch", arrow_ptr(c, a.name, "target"), "$op produces a tensor, but $(repr(tgt.name)) is $(object_kind(tgt))")
            return
        end
        tgt.shape == shape || add!(c, "shape-mismatch", arrow_ptr(c, a.name, "target"),
                                   "$op produces shape $shape, but $(repr(tgt.name)) has shape $(tgt.shape)")
        if float_ !== nothing && is_float(tgt) != float_
            add!(c, "dtype-mismatch", arrow_ptr(c, a.name, "target"),
                 "$op produces $(float_ ? "float" : "int64") values, but $(repr(tgt.name)) is $(tgt.dtype)")
        end
    end
    function src_tensor(k; float_::Bool = true, nonempty::Bool = false)
        s = srcs[k]
        if !(s isa TensorObject)
            add!(c, "kind-mismatch", source_ptr(c, a, k - 1), "$op needs a tensor source, $(repr(s.name)) is $(object_kind(s))")
            return nothing
        elseif float_ && !is_float(s)
            add!(c, "dtype-mismatch", source_ptr(c, a, k - 1), "$op needs a float source, $(repr(s.name)) is int64")
            return nothing
        elseif nonempty && isempty(s.shape)
            add!(c, "shape-mismatch", source_ptr(c, a, k - 1), "$op needs at least one axis, $(repr(s.name)) is a scalar")
            return nothing
        end
        return s
    end
    s = srcs[1]
    if op in ("identity", "stop_gradient")
        same = (s isa TensorObject && tgt isa TensorObject && s.shape == tgt.shape && is_float(s) == is_float(tgt)) ||
               (s isa CategoricalObject && tgt isa CategoricalObject && s.classes == tgt.classes && s.shape == tgt.shape)
        same || add!(c, "shape-mismatch", arrow_ptr(c, a.name, "target"),
                     "$op needs source and target of the same kind and shape: $(repr(s.name)) → $(repr(tgt.name))")
    elseif op in ("softmax", "log_softmax")
        if s isa CategoricalObject
            want_tensor([s.shape; s.classes], true)
        elseif src_tensor(1; nonempty = true) !== nothing
            want_tensor(s.shape, true)
        end
    elseif op == "one_hot"
        if s isa CategoricalObject
            want_tensor([s.shape; s.classes], true)
        else
            add!(c, "kind-mismatch", source_ptr(c, a, 0), "one_hot needs a categorical source, $(repr(s.name)) is $(object_kind(s))")
        end
    elseif op == "flatten"
        # exact, as in layers.jl: a product past 2^63 would wrap around in Int and could match
        src_tensor(1; float_ = false) === nothing || want_tensor([json_int(prod(big, s.shape; init = big(1)))], is_float(s))
    elseif op == "reshape"
        if src_tensor(1; float_ = false) !== nothing
            shape = Int[json_int(x) for x in a.params["shape"]]
            if prod(big, shape; init = big(1)) != prod(big, s.shape; init = big(1))
                add!(c, "shape-mismatch", arrow_ptr(c, a.name, "shape"), "reshape of $(s.shape) to $shape: sizes differ")
            else
                want_tensor(shape, is_float(s))
            end
        end
    elseif op in ("scale", "normalize")
        src_tensor(1; nonempty = op == "normalize") === nothing || want_tensor(s.shape, true)
    elseif op in ("add", "concat")
        sources = [src_tensor(k; nonempty = op == "concat") for k in 1:n]
        if all(x -> x !== nothing, sources)
            vt = try
                combine_output(op, ValueType[(x.shape, "float") for x in sources])
            catch err
                err isa LayerError || rethrow()
                add!(c, err.code, arrow_ptr(c, a.name, "source"), err.message)
                return
            end
            want_tensor(vt[1], true)
        end
    end
end

function check_model!(c::DiagramChecker, a::ModelArrow)
    ok = true
    for (k, s) in enumerate(a.sources)
        o = object_named(c.d, s)
        if !(o isa TensorObject)
            add!(c, "kind-mismatch", source_ptr(c, a, k - 1),
                 "model $(repr(a.name)): sources must be tensor objects, $(repr(s)) is $(object_kind(o))")
            ok = false
        end
    end
    tgt = object_named(c.d, a.target)
    if tgt isa TensorObject && !is_float(tgt)
        add!(c, "dtype-mismatch", arrow_ptr(c, a.name, "target"),
             "model $(repr(a.name)): a model produces float values, $(repr(tgt.name)) is int64")
        ok = false
    end
    (ok && a.architecture !== nothing) && check_architecture!(c, a, a.architecture)
end

function check_architecture!(c::DiagramChecker, a::ModelArrow, arch::Architecture)
    n = length(a.sources)
    if n == 1 && (arch.combine !== nothing || arch.inputs !== nothing)
        key = arch.combine !== nothing ? "combine" : "inputs"
        add!(c, "function-arity", arrow_ptr(c, a.name, "architecture", key),
             "model $(repr(a.name)) has one source: $key is only for products")
        return
    end
    if n > 1 && arch.combine === nothing
        add!(c, "missing-key", arrow_ptr(c, a.name, "architecture", "combine"),
             "model $(repr(a.name)) has $n sources and needs a combine step")
        return
    end
    if arch.inputs !== nothing && length(arch.inputs) != n
        add!(c, "function-arity", arrow_ptr(c, a.name, "architecture", "inputs"),
             "model $(repr(a.name)) has $n sources but $(length(arch.inputs)) input branches")
        return
    end
    types = ValueType[value_type(c.d, s) for s in a.sources]
    if arch.inputs !== nothing
        for (k, branch) in enumerate(arch.inputs)
            vt = check_chain!(c, a, branch, types[k], ("architecture", "inputs", k - 1))
            vt === nothing && return
            types[k] = vt
        end
    end
    vt = types[1]
    if n > 1
        vt = try
            combine_output(arch.combine, types)
        catch err
            err isa LayerError || rethrow()
            add!(c, err.code, arrow_ptr(c, a.name, "architecture", "combine"), "model $(repr(a.name)): $(err.message)")
            return
        end
    end
    vt = check_chain!(c, a, arch.layers, vt, ("architecture", "layers"))
    vt === nothing && return
    want = value_type(c.d, a.target)
    vt == want || add!(c, "shape-mismatch", arrow_ptr(c, a.name, "architecture", "layers"),
                       "model $(repr(a.name)) produces $(vt[2]) values of shape $(vt[1]), but target " *
                       "$(repr(a.target)) needs $(want[2]) values of shape $(want[1])")
end

function check_chain!(c::DiagramChecker, a::ModelArrow, layers::Vector{Layer}, vt::ValueType, place::Tuple)
    for (i, layer) in enumerate(layers)
        try
            vt = layer_output(layer, vt)
        catch err
            err isa LayerError || rethrow()
            add!(c, err.code, arrow_ptr(c, a.name, place..., i - 1), "model $(repr(a.name)), layer $(i - 1) ($(layer.type)): $(err.message)")
            return nothing
        end
    end
    return vt
end

function check_distances!(c::DiagramChecker)
    for o in c.d.objects
        distance = object_distance_field(o)
        distance === nothing && continue
        for (code, message) in distance_problems(o, full_distance(distance))
            add!(c, code, json_pointer("objects", c.object_index[o.name], "distance"), message)
        end
    end
end

"""
    check_diagram(d::Diagram, doc)

Check the meaning of a schema-valid diagram (SPEC §1–7) read from `doc`; throws a
[`DiagramError`](@ref) with every problem found, then any problem of its equations.
"""
function check_diagram(d::Diagram, doc::AbstractDict)
    c = DiagramChecker(d, doc)
    check_names!(c)
    check_references!(c) && check_structure!(c)
    check_distances!(c)
    isempty(c.problems) || throw(DiagramError(c.problems))
    diagram_equations(d)
    return nothing
end

"""
    load_diagram(path::AbstractString) -> Diagram
    load_diagram(doc::AbstractDict) -> Diagram

Read a diagram file (or a parsed document) and check it completely: form, meaning and equations.
A document given as a `Dict` has no key order, so problems within one object (unknown keys,
non-finite numbers) come in sorted key order; pass a `JSON.Object` (as `parse_json` returns) or
another ordered dictionary to keep the order of the text, as the Python library does.
Throws a [`DiagramError`](@ref) listing every problem, with the codes and pointers of SPEC §10.
"""
load_diagram(path::AbstractString) = diagram_from_document(read_document(path))
function load_diagram(doc::AbstractDict)
    document = try
        json_document(doc)
    catch err
        err isa JSONSyntaxError || rethrow()
        throw(DiagramError("malformed-json", "", "the document: $(err.message)"))
    end
    return diagram_from_document(document)
end

"""
    parse_diagram(text::AbstractString) -> Diagram

A diagram from JSON text, checked like [`load_diagram`](@ref).
"""
parse_diagram(text::AbstractString) = diagram_from_document(parse_document(text))

function diagram_from_document(doc)
    check_document(doc)
    d = diagram_from_json(doc)
    check_diagram(d, doc)
    return d
end
