# Weights and batches (SPEC §8): reading safetensors files, checking them against a diagram with
# the codes of the Python library's tensorfiles.py, and the layout rule of this backend.
#
# Layout. A safetensors tensor of logical shape [n₁, …, n_k] is row-major; this package keeps it
# as the column-major array of shape (n_k, …, n₁) holding the same memory ("storage layout",
# SPEC §8): a batch column [B, s₁, …, sₙ] becomes (sₙ, …, s₁, B), batch last, which is Flux's
# convention (features × batch, WHCN images, (features, steps, batch) sequences).

"""
    storage_layout(x::AbstractArray) -> Array

The column-major array with `x`'s axes reversed: from the logical (row-major, PyTorch) layout to
this package's storage layout, and back (the map is its own inverse).
"""
storage_layout(x::AbstractArray) = ndims(x) <= 1 ? collect(x) : permutedims(x, ndims(x):-1:1)

"""
    logical_size(x::AbstractArray) -> Vector{Int}

The logical (row-major) shape of an array held in storage layout.
"""
logical_size(x::AbstractArray) = reverse(collect(Int, size(x)))

"""
    dtype_name(T::Type) -> String

The format's name of an element type: `"float32"`, `"float64"`, `"int64"`, else its lowercase name.
"""
dtype_name(::Type{Float32}) = "float32"
dtype_name(::Type{Float64}) = "float64"
dtype_name(::Type{Int64}) = "int64"
dtype_name(T::Type) = lowercase(string(T))

is_float_dtype(x::AbstractArray) = eltype(x) in (Float32, Float64)

"""
    read_safetensors(path, what="weights") -> Dict{String,Array}

Every tensor of a safetensors file, in storage layout with its stored element type. A
[`DiagramError`](@ref) `<what>-file` naming the file if it is missing, not a regular file (a FIFO
or a device is refused before it is opened), truncated, or its header is inconsistent
(SafeTensors.jl checks the header length, at most 100,000,000 bytes, and that the declared
offsets and sizes tile the data before any tensor is read). A tensor of a dtype the format knows
but this package does not read is `<what>-dtype` (SPEC §8): BF16 and F8 tensors load as
`BFloat16`/`Float8` arrays and fail the dtype checks; F8_E8M0, F6_*, F4 and C64, which
SafeTensors.jl does not know, are found in the header ([`unread_dtype_problem`](@ref)).
"""
function read_safetensors(path::AbstractString, what::AbstractString = "weights")
    if !isfile(path)  # `isfile` is true for regular files only
        throw(DiagramError("$what-file", path, ispath(path) ?
            "cannot read $what file: $path is not a regular file (a FIFO, a device, a socket or a folder)" :
            "cannot read $what file $path: no such file"))
    end
    tensors = try
        SafeTensors.load_safetensors(path; mmap = false)
    catch err
        err isa InterruptException && rethrow()
        problem = unread_dtype_problem(path, what)
        problem === nothing || throw(DiagramError(problem))
        throw(DiagramError("$what-file", path, "$path is not a readable safetensors file: $(sprint(showerror, err))"))
    end
    return Dict{String,Array}(String(name) => storage_layout(t) for (name, t) in tensors)
end

# safetensors dtypes that SafeTensors.jl does not read, with their bits per entry
const UNREAD_DTYPE_BITS = Dict("F8_E8M0" => 8, "F6_E2M3" => 6, "F6_E3M2" => 6, "F4" => 4, "C64" => 64)
const MAX_SAFETENSORS_HEADER = 100_000_000

"""
    unread_dtype_problem(path, what) -> Union{Problem,Nothing}

`<what>-dtype` for the first tensor (by key) of a file SafeTensors.jl could not read whose dtype
is one the format knows but this package does not read; `nothing` if there is none or the header
itself is unreadable (then the file is `<what>-file`). Reads at most the header.
"""
function unread_dtype_problem(path::AbstractString, what::AbstractString)
    header = try
        open(path) do io
            head = read(io, 8)
            length(head) == 8 || return nothing
            n = ltoh(reinterpret(UInt64, head)[1])
            (n <= MAX_SAFETENSORS_HEADER && 8 + n <= filesize(path)) || return nothing
            parse_json(String(read(io, Int(n))))
        end
    catch err
        err isa InterruptException && rethrow()
        return nothing
    end
    header isa AbstractDict || return nothing
    for key in sort!([String(k) for k in keys(header)])
        info = header[key]
        info isa AbstractDict || continue
        dtype = get(info, "dtype", nothing)
        if dtype isa AbstractString && haskey(UNREAD_DTYPE_BITS, dtype)
            return Problem("$what-dtype", "$path#$key", "$(repr(key)) has dtype $dtype, which this package does not read")
        end
    end
    return nothing
end

"""
    write_safetensors(path, tensors::AbstractDict{String,<:AbstractArray})

Write arrays held in storage layout to a safetensors file (logical layout on disk, as PyTorch
and NumPy read it), through a temporary file and a rename: never a half-written file.
"""
function write_safetensors(path::AbstractString, tensors::AbstractDict{String,<:AbstractArray})
    logical = Dict{String,Array}(k => storage_layout(v) for (k, v) in tensors)
    atomic_write(path) do io
        SafeTensors.serialize(io, logical)
    end
    return path
end

"""
    atomic_write(f, path)

Call `f(io)` on a temporary file beside `path`, then rename it to `path`; on failure nothing is left.
The file is created by `open(tmp, "w")`, so it gets the mode a plain write gives (0666 less the
umask, as Python's writer restores), not `mktemp`'s private 0600.
"""
function atomic_write(f, path::AbstractString)
    folder = dirname(abspath(path))
    tmp = tempname(folder; cleanup = false)
    io = open(tmp, "w")
    try
        f(io)
        close(io)
        mv(tmp, path; force = true)
    catch
        close(io)
        rm(tmp; force = true)
        rethrow()
    end
    return path
end

"""
    parameter_shapes(d::Diagram) -> Vector{Pair{String,Vector{Int}}}

Canonical parameter names (`"arrow.layers.0.weight"`) and logical shapes for every model arrow
with an architecture, in canonical order (SPEC §8).
"""
function parameter_shapes(d::Diagram)
    out = Pair{String,Vector{Int}}[]
    for a in model_arrows(d)
        a.architecture === nothing && continue
        for (path, shape) in architecture_parameter_shapes(a.architecture)
            push!(out, "$(a.name).$path" => shape)
        end
    end
    return out
end

"""
    check_weights(d::Diagram, tensors::AbstractDict, source="weights")

Check weights (canonical name → array in storage layout) against the diagram's parameters: every
key present, no other key, each shape, a float dtype and finite values (SPEC §8: NaN or Inf is
`weights-value`). Throws a [`DiagramError`](@ref) with every problem, pointers `source#key`.
"""
check_weights(d::Diagram, tensors::AbstractDict, source::AbstractString = "weights") =
    check_tensors(parameter_shapes(d), tensors, source)

"""
    check_tensors(want::Vector{Pair{String,Vector{Int}}}, tensors::AbstractDict, source)

Check arrays (storage layout) against wanted names and logical shapes: the checks of
[`check_weights`](@ref) for any list of parameters, such as one architecture's.
"""
function check_tensors(want::Vector{Pair{String,Vector{Int}}}, tensors::AbstractDict, source::AbstractString)
    problems = Problem[]
    for (key, shape) in want
        if !haskey(tensors, key)
            push!(problems, Problem("weights-missing-key", "$source#$key", "$source has no tensor $(repr(key)) (shape $shape)"))
            continue
        end
        t = tensors[key]
        is_float_dtype(t) ||
            push!(problems, Problem("weights-dtype", "$source#$key",
                                    "$(repr(key)) has dtype $(dtype_name(eltype(t))); weights are float32 or float64"))
        if logical_size(t) != shape
            push!(problems, Problem("weights-shape", "$source#$key",
                                    "$(repr(key)) has shape $(logical_size(t)), the diagram needs $shape"))
        elseif is_float_dtype(t) && !all(isfinite, t)
            push!(problems, Problem("weights-value", "$source#$key",
                                    "$(repr(key)) holds NaN or infinite values; every weight must be a finite number"))
        end
    end
    wanted = Set(first.(want))
    for key in sort!(collect(String, keys(tensors)))
        key in wanted || push!(problems, Problem("weights-unexpected-key", "$source#$key",
                                                 "$source has a tensor $(repr(key)) that is no parameter of this diagram"))
    end
    isempty(problems) || throw(DiagramError(problems))
    return nothing
end

"""
    check_batch(d::Diagram, columns::AbstractDict, source="batch") -> Dict{String,Int}

Check a batch (column name → array in storage layout, batch last) against the diagram's data
arrows (SPEC §8); returns the batch size of each data object read. Every data arrow checks the
column it reads (a column read by several arrows must satisfy each); a column gets at most one
problem, from the first arrow it fails. Throws a [`DiagramError`](@ref) with every problem,
pointers `source#column`.
"""
function check_batch(d::Diagram, columns::AbstractDict, source::AbstractString = "batch")
    problems = Problem[]
    sizes = Dict{String,Tuple{Int,String}}()
    failed = Set{String}()
    for arrow in d.arrows
        (arrow isa DataArrow && !(arrow.column in failed)) || continue
        problem = column_problem(d, arrow, columns, source, sizes)
        if problem !== nothing
            push!(problems, problem)
            push!(failed, arrow.column)
        end
    end
    isempty(problems) || throw(DiagramError(problems))
    return Dict(k => v[1] for (k, v) in sizes)
end

# What is wrong with the column `arrow` reads, or nothing; records its data object's batch size.
function column_problem(d::Diagram, arrow::DataArrow, columns::AbstractDict, source::AbstractString,
                        sizes::Dict{String,Tuple{Int,String}})
    column = arrow.column
    place = "$source#$column"
    haskey(columns, column) ||
        return Problem("batch-missing-column", place, "$source has no column $(repr(column)) (read by data arrow $(repr(arrow.name)))")
    col = columns[column]
    shape, dtype = logical_size(col), dtype_name(eltype(col))
    target = object_named(d, arrow.target)
    if target isa TensorObject
        per, want_int = target.shape, !is_float(target)
    elseif target isa CategoricalObject
        want_int = something(arrow.encoding, "index") == "index"
        per = want_int ? target.shape : [target.shape; target.classes]
    else
        return nothing
    end
    isempty(shape) && return Problem("batch-shape", place, "column $(repr(column)) is a scalar; columns are batch first")
    shape[1] == 0 && return Problem("batch-shape", place, "column $(repr(column)) has no examples; a batch has B ≥ 1")
    want_int && dtype != "int64" && return Problem("batch-dtype", place, "column $(repr(column)) must be int64, got $dtype")
    !want_int && !is_float_dtype(col) &&
        return Problem("batch-dtype", place, "column $(repr(column)) must be float32 or float64, got $dtype")
    shape[2:end] == per ||
        return Problem("batch-shape", place, "column $(repr(column)) has shape $shape; data arrow $(repr(arrow.name)) " *
                                             "needs [B] + $per")
    data_object = arrow.sources[1]
    previous = get(sizes, data_object, nothing)
    if previous !== nothing && previous[1] != shape[1]
        return Problem("batch-size-mismatch", place, "column $(repr(column)) has $(shape[1]) examples, column " *
                                                     "$(repr(previous[2])) of the same data object $(repr(data_object)) has $(previous[1])")
    end
    haskey(sizes, data_object) || (sizes[data_object] = (shape[1], column))
    if target isa CategoricalObject && want_int && !isempty(col)
        low, high = extrema(col)
        (low < 0 || high >= target.classes) &&
            return Problem("batch-index-range", place, "column $(repr(column)) has class indices outside [0, $(target.classes))")
    end
    return nothing
end
