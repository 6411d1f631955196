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
or a device is refused before it is opened), truncated, or its header is inconsistent: the
header (at most 100,000,000 bytes) is read and every declared size and offset checked against
the file in exact arithmetic ([`safetensors_layout_problem`](@ref), Python's `tensorfiles._entries`)
before SafeTensors.jl reads anything, so that no declared size wraps around `UInt64` there. A
tensor of a dtype the format knows but this package does not read is `<what>-dtype` (SPEC §8):
BF16 and F8 tensors load as `BFloat16`/`Float8` arrays and fail the dtype checks; F8_E8M0, F6_*,
F4 and C64, which SafeTensors.jl does not know, are found in the header ([`unread_dtype_problem`](@ref)).
"""
function read_safetensors(path::AbstractString, what::AbstractString = "weights")
    if !isfile(path)  # `isfile` is true for regular files only
        throw(DiagramError("$what-file", path, ispath(path) ?
            "cannot read $what file: $path is not a regular file (a FIFO, a device, a socket or a folder)" :
            "cannot read $what file $path: no such file"))
    end
    bad(message) = DiagramError("$what-file", path, "$path is not a readable safetensors file: $message")
    header = safetensors_header(path)
    header isa AbstractString && throw(bad(header))
    problem = safetensors_layout_problem(header[2], header[1], filesize(path))
    problem === nothing || throw(bad(problem))
    tensors = try
        SafeTensors.load_safetensors(path; mmap = false)
    catch err
        err isa InterruptException && rethrow()
        problem = unread_dtype_problem(header[2], path, what)
        problem === nothing || throw(DiagramError(problem))
        throw(bad(sprint(showerror, err)))
    end
    return Dict{String,Array}(String(name) => storage_layout(t) for (name, t) in tensors)
end

# safetensors dtypes that SafeTensors.jl does not read, with their bits per entry
const UNREAD_DTYPE_BITS = Dict("F8_E8M0" => 8, "F6_E2M3" => 6, "F6_E3M2" => 6, "F4" => 4, "C64" => 64)
# and those it reads (Python's tensorfiles._NUMPY_DTYPES, plus BF16 and F8, which it also reads)
const READ_DTYPE_BITS = Dict("BOOL" => 8, "U8" => 8, "I8" => 8, "F8_E5M2" => 8, "F8_E4M3" => 8, "I16" => 16,
                            "U16" => 16, "F16" => 16, "BF16" => 16, "I32" => 32, "U32" => 32, "F32" => 32,
                            "F64" => 64, "I64" => 64, "U64" => 64)
const MAX_SAFETENSORS_HEADER = 100_000_000
# a declared axis is below 2^62 (Python's tensorfiles._MAX_DIM)
const MAX_SAFETENSORS_DIM = 2^62
const MAX_ARRAY_BYTES = big(2)^63

"""
    safetensors_header(path) -> Union{Tuple{Int,Any},String}

`(n, header)`: the header's length in bytes and its parsed JSON, reading at most `8 + n` bytes
(`n` ≤ 100,000,000 and `8 + n` within the file, checked before the header is read); or a message
saying why the header cannot be read.
"""
function safetensors_header(path::AbstractString)
    try
        return open(path) do io
            head = read(io, 8)
            length(head) == 8 || return "it has $(length(head)) bytes, fewer than the 8 of a header length"
            n = ltoh(reinterpret(UInt64, head)[1])
            n <= MAX_SAFETENSORS_HEADER ||
                return "its header claims $n bytes, more than the $MAX_SAFETENSORS_HEADER allowed"
            file_size = filesize(path)
            8 + Int(n) <= file_size || return "its header claims $n bytes, but the file has $file_size"
            text = String(read(io, Int(n)))
            isvalid(text) || return "the header is not UTF-8 text"
            return (Int(n), parse_json(text))
        end
    catch err
        err isa InterruptException && rethrow()
        return "its header cannot be read: $(sprint(showerror, err))"
    end
end

is_json_count(x) = x isa Integer && !(x isa Bool) && x >= 0

"""
    safetensors_layout_problem(header, n, file_bytes) -> Union{String,Nothing}

What is wrong with the sizes a parsed safetensors header declares, or `nothing`: `__metadata__`
(if any) mapping strings to strings, each tensor's entry exactly `{dtype, shape, data_offsets}`, its
dtype known, shape integers in [0, 2^62) and `data_offsets = [begin, end]` integers ≥ 0, `end - begin` the bytes of its
shape and dtype, the tensors tiling the data after the header without gap or overlap, and ending
where the file ends. The checks of Python's `tensorfiles._entries` and `_read_file`, in `BigInt`
arithmetic; a product is not multiplied further once it exceeds the file (bounded work).
"""
function safetensors_layout_problem(header, n::Integer, file_bytes::Integer)
    header isa AbstractDict || return "the header is not a JSON object"
    meta = get(header, "__metadata__", Dict{String,Any}())
    (meta isa AbstractDict && all(v -> v isa AbstractString, values(meta))) ||
        return "__metadata__ must map strings to strings"
    data_bytes = big(file_bytes) - 8 - n
    spans = Tuple{BigInt,BigInt,String}[]
    for (key, info) in header
        key == "__metadata__" && continue
        name = repr(String(key))
        (info isa AbstractDict && length(info) == 3 && all(k -> haskey(info, k), ("dtype", "shape", "data_offsets"))) ||
            return "tensor $name: an entry is {dtype, shape, data_offsets}"
        dtype, shape, offsets = get(info, "dtype", nothing), get(info, "shape", nothing), get(info, "data_offsets", nothing)
        bits = dtype isa AbstractString ? get(READ_DTYPE_BITS, dtype, get(UNREAD_DTYPE_BITS, dtype, 0)) : 0
        bits == 0 && return "tensor $name: unknown dtype $(repr(dtype))"
        (shape isa AbstractVector && all(d -> is_json_count(d) && d < MAX_SAFETENSORS_DIM, shape)) ||
            return "tensor $name: the shape must be a list of sizes ≥ 0"
        sized = big(bits)  # the non-zero sizes times the bits: NumPy (Python's reader) refuses 2^63 bytes or more
        for dim in shape
            iszero(dim) || (sized *= dim)
            sized >= 8 * MAX_ARRAY_BYTES && return "tensor $name: a $dtype tensor of shape $shape is too large for any array"
        end
        (offsets isa AbstractVector && length(offsets) == 2 && all(is_json_count, offsets) && offsets[1] <= offsets[2]) ||
            return "tensor $name: data_offsets must be [begin, end] with 0 ≤ begin ≤ end"
        first_byte, end_byte = big(offsets[1]), big(offsets[2])
        nbits = big(bits)
        if any(iszero, shape)
            nbits = big(0)
        else
            for dim in shape
                nbits *= dim
                nbits > 8 * data_bytes && break  # more than the file holds: no need for the exact product
            end
        end
        nbits == 8 * (end_byte - first_byte) ||
            return "tensor $name: $(end_byte - first_byte) bytes for a $dtype tensor of shape $shape"
        push!(spans, (first_byte, end_byte, String(key)))
    end
    expected = big(0)
    for (first_byte, end_byte, key) in sort!(spans)
        first_byte == expected ||
            return "tensor $(repr(key)) starts at byte $first_byte, not $expected: the data has a gap or overlap"
        expected = end_byte
    end
    expected == data_bytes || return "the tensors take $expected bytes, but $data_bytes follow the header"
    return nothing
end

"""
    unread_dtype_problem(header, path, what) -> Union{Problem,Nothing}

`<what>-dtype` for the first tensor (by key) of a parsed safetensors header whose dtype is one
the format knows but this package does not read; `nothing` if there is none.
"""
function unread_dtype_problem(header, path::AbstractString, what::AbstractString)
    header isa AbstractDict || return nothing
    # pairs, not `header[key]` per key: a JSON.Object looks a key up by a linear scan
    for (key, info) in sort!([String(k) => v for (k, v) in header]; by = first)
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
    atomic_write(f, path; what="weights") -> path

Call `f(io)` on a new temporary file beside the file `path` names, then rename it over that
file: never a half-written file. The semantics of the Python library's `files.atomic_write`:
an existing file keeps its permission bits (a 0600 file stays 0600; a new one gets 0666 less
the umask, as a plain `open` gives); a symlink is written through (the file it leads to is
replaced, the link stays a link); the file is fsynced before the rename and its folder after
(on POSIX systems; on Windows both are skipped and the mode is left to the folder, see
`target_mode`); the temporary file is
removed on any exception, one thrown by `f` included, which is then rethrown unchanged. Folders
are never created. A [`DiagramError`](@ref) `<what>-file` naming `path` if the target is a folder
or another non-regular file (a FIFO, a device, a socket: Python would replace those, this
package refuses them), its folder does not exist, or the file system refuses a step.
"""
function atomic_write(f, path::AbstractString; what::AbstractString = "weights")
    target = write_target(path, what)
    folder = dirname(target)
    mode = target_mode(target)
    tmp, io = file_step(() -> mktemp(folder; cleanup = false), path, what)
    try
        file_step(() -> set_mode(tmp, mode), path, what)
        f(io)
        file_step(path, what) do
            flush(io)
            sync_file(io)
            close(io)
            replace_file(tmp, target)
        end
    catch
        try
            close(io)  # flushes what `f` wrote into the file about to be removed; may fail again
        catch
        end
        rm(tmp; force = true)
        rethrow()
    end
    sync_folder(folder)
    return path
end

# The file a write to `path` replaces: `path`, or the end of the chain of symlinks it starts
# (followed by hand, so that a link to a file not yet there is written through too, as Python's
# `os.path.realpath` does); refused if that is a folder or not a regular file, or its folder is missing.
# `file_step`: `lstat`/`stat`/`readlink` throw `IOError` (EACCES, ELOOP) or `ArgumentError` (a "\0").
function write_target(path::AbstractString, what::AbstractString)
    return file_step(path, what) do
        target = abspath(path)
        hops = 0
        while islink(target)
            hops += 1
            hops > 40 && throw(DiagramError("$what-file", path, "cannot write $path: too many levels of symbolic links"))
            target = joinpath(dirname(target), readlink(target))  # an absolute link replaces the folder
        end
        isdir(target) && throw(DiagramError("$what-file", path, "cannot write a file over a folder: $target"))
        (ispath(target) && !isfile(target)) &&
            throw(DiagramError("$what-file", path, "cannot write $path: $target is not a regular file " *
                                                   "(a FIFO, a device or a socket)"))
        isdir(dirname(target)) ||
            throw(DiagramError("$what-file", path, "cannot write $path: no such folder $(dirname(target)) " *
                                                   "(folders are not created)"))
        target
    end
end

# Run one file system step of a write (Base's file functions only: they throw `SystemError`,
# `Base.IOError` or, for a path holding "\0", `ArgumentError`); what fails is `<what>-file` naming `path`.
function file_step(action, path::AbstractString, what::AbstractString)
    try
        return action()
    catch err
        (err isa InterruptException || err isa DiagramError) && rethrow()
        throw(DiagramError("$what-file", path, "cannot write $path: $(sprint(showerror, err))"))
    end
end

# The permission bits the written file gets: an existing target's, else those a plain `open` gives
# a new file (0666 less the umask); `nothing` on Windows, where `chmod` sets ACLs (Julia ≥ 1.6) and
# `mktemp`'s file keeps the folder's, as Python's `os.chmod` there only sets the read-only flag.
function target_mode(target::AbstractString)
    Sys.iswindows() && return nothing
    return isfile(target) ? filemode(target) & 0o7777 : new_file_mode()
end

set_mode(tmp::AbstractString, mode) = mode === nothing ? nothing : chmod(tmp, mode)

# 0666 less the process's umask, read by setting it and setting it back (as Python's files.py and
# Julia's own test/file.jl do; mode_t has at most 32 bits).
function new_file_mode()
    mask = ccall(:umask, Cuint, (Cuint,), 0o077)  # 0o077, not 0: files others create meanwhile stay private
    ccall(:umask, Cuint, (Cuint,), mask)
    return 0o666 & ~(mask & 0o777)
end

# fsync(2) of an open file (Julia's Base has no fsync); skipped on Windows.
function sync_file(io::IOStream)
    Sys.iswindows() && return nothing
    systemerror("fsync", ccall(:fsync, Cint, (Cint,), fd(io)) != 0)
    return nothing
end

# rename(2) through libuv (`jl_fs_rename`, what `Base.Filesystem.rename` calls), without `mv`: with
# `force = true`, the `mv` of Julia's base/file.jl before `_mv_replace` removes the target first
# and then renames (not atomic), and `rename` there falls back to copying; Pkg's Artifacts calls
# `jl_fs_rename` directly for the same reason.
function replace_file(tmp::AbstractString, target::AbstractString)
    err = ccall(:jl_fs_rename, Int32, (Cstring, Cstring), tmp, target)
    err < 0 && throw(SystemError("rename $tmp to $target", -err))  # libuv's codes are −errno on POSIX
    return nothing
end

# Make a rename in `folder` durable (POSIX: fsync of the folder opened read-only); skipped where a
# folder cannot be opened or synced, as Python's `_fsync_folder` does.
function sync_folder(folder::AbstractString)
    Sys.iswindows() && return nothing
    handle = ccall(:open, Cint, (Cstring, Cint), folder, 0)  # O_RDONLY is 0 on every POSIX system
    handle < 0 && return nothing
    ccall(:fsync, Cint, (Cint,), handle)
    ccall(:close, Cint, (Cint,), handle)
    return nothing
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
