# Hostile inputs (issue 9), as the Python library's tests/test_hostile_inputs.py feeds them: each ends in
# a DiagramError with the same code and pointer, never another exception, a hang or an allocation the
# file did not pay for.

const HOSTILE_BASE = """
{"format": "learning-diagram", "format_version": "1.0", DESCRIPTION
 "objects": [{"name": "D", "kind": "data"},
             {"name": "X", "kind": "tensor", "shape": [SIZE], "dtype": "float32"},
             {"name": "Y", "kind": "categorical", "classes": 2}],
 "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
            {"name": "y", "kind": "data", "source": "D", "target": "Y", "column": "y"},
            {"name": "f", "kind": "model", "source": "X", "target": "Y", "trainable": true,
             "architecture": {"layers": [{"type": "linear", "in_features": SIZE, "out_features": 2}]}}]}
"""

hostile_text(; description = "", size = "3") =
    replace(HOSTILE_BASE, "DESCRIPTION" => description, "SIZE" => size)

function hostile_rejection(f)
    try
        f()
    catch err
        err isa DiagramError && return [(p.code, p.pointer) for p in err.problems]
        rethrow()
    end
    return nothing
end

@testset "hostile documents" begin
    @test parse_diagram(hostile_text()) isa Diagram
    # names: the whole name must match (PCRE's `$` also matches before a final newline)
    text = replace(hostile_text(), "\"name\": \"f\"" => "\"name\": \"f\\n\"")
    @test ("bad-value", "/arrows/2/name") in hostile_rejection(() -> parse_diagram(text))
    # a numeric format_version is wrong-type, reported with the other problems
    text = replace(hostile_text(), "\"format_version\": \"1.0\"" => "\"format_version\": 1.0")
    text = replace(text, "\"float32\"" => "\"float16\"")
    @test hostile_rejection(() -> parse_diagram(text)) == [("wrong-type", "/format_version"), ("bad-value", "/objects/1/dtype")]
    # lone surrogates: valid JSON, not Unicode text
    @test hostile_rejection(() -> parse_diagram(hostile_text(description = "\"description\": \"a\\ud800b\","))) ==
          [("bad-value", "/description")]
    # nesting beyond 512 levels, under an x- key too, in text and in a document given as data
    deep = "[" ^ 520 * "]" ^ 520
    @test hostile_rejection(() -> parse_diagram(hostile_text(description = "\"x-deep\": $deep,"))) == [("malformed-json", "")]
    @test parse_diagram(hostile_text(description = "\"x-deep\": $("[" ^ 511 * "]" ^ 511),")) isa Diagram
    nested = Any[]
    for _ in 1:520
        nested = Any[nested]
    end
    doc = DL.parse_json(hostile_text())
    doc["x-deep"] = nested
    @test hostile_rejection(() -> load_diagram(doc)) == [("malformed-json", "")]
    # integers: read exactly, and beyond ±(2^53 − 1) bad-value, however many digits
    @test hostile_rejection(() -> parse_diagram(hostile_text(size = "9007199254740992"))) ==
          [("bad-value", "/objects/1/shape/0"), ("bad-value", "/arrows/2/architecture/layers/0/in_features")]
    huge = "9" ^ 5000
    @test hostile_rejection(() -> parse_diagram(hostile_text(description = "\"max_terms\": $huge,"))) ==
          [("bad-value", "/max_terms")]
    # kl_div's temperature is at most 100
    text = replace(hostile_text(), "\"classes\": 2}" => "\"classes\": 2, \"distance\": {\"name\": \"kl_div\", \"temperature\": 1e8}}")
    @test hostile_rejection(() -> parse_diagram(text)) == [("bad-value", "/objects/2/distance/temperature")]
end

@testset "hostile files" begin
    mktempdir() do dir
        @test hostile_rejection(() -> load_diagram(dir)) == [("malformed-json", dir)]
        @test hostile_rejection(() -> read_safetensors(dir, "batch")) == [("batch-file", dir)]
        if Sys.which("mkfifo") !== nothing
            fifo = joinpath(dir, "pipe")
            run(`mkfifo $fifo`)
            @test hostile_rejection(() -> load_diagram(fifo)) == [("malformed-json", fifo)]  # refused, not blocked on
            @test hostile_rejection(() -> read_safetensors(fifo)) == [("weights-file", fifo)]
        end
        if ispath("/dev/zero")
            @test hostile_rejection(() -> load_diagram("/dev/zero")) == [("malformed-json", "/dev/zero")]
        end
    end
end

@testset "hostile weights and sizes" begin
    d = parse_diagram(hostile_text())
    good = Dict{String,Array}("f.layers.0.weight" => zeros(3, 2), "f.layers.0.bias" => zeros(2))  # storage layout
    @test check_weights(d, good) === nothing
    bad = copy(good)
    bad["f.layers.0.bias"] = [0.0, NaN]
    @test hostile_rejection(() -> check_weights(d, bad)) == [("weights-value", "weights#f.layers.0.bias")]
    bad["f.layers.0.bias"] = [Inf, 0.0]
    @test hostile_rejection(() -> compile_diagram(d; weights = bad, dtype = Float64)) ==
          [("weights-value", "weights#f.layers.0.bias")]
    # the parameter limit: 3·2 + 2 = 8 parameters
    @test DL.check_parameter_count(d) == 8
    @test compile_diagram(d; max_parameters = 8) isa CompiledDiagram
    @test hostile_rejection(() -> compile_diagram(d; max_parameters = 7)) == [("too-many-parameters", "/arrows/2")]
    withenv("DLEARN_MAX_PARAMETERS" => "7") do
        @test hostile_rejection(() -> compile_diagram(d)) == [("too-many-parameters", "/arrows/2")]
    end
    withenv("DLEARN_MAX_PARAMETERS" => "lots") do
        @test hostile_rejection(() -> compile_diagram(d)) == [("bad-value", "DLEARN_MAX_PARAMETERS")]
    end
    big_model = parse_diagram(hostile_text(size = "10000000000"))  # 2·10¹⁰ parameters, refused before allocating
    @test hostile_rejection(() -> compile_diagram(big_model)) == [("too-many-parameters", "/arrows/2")]
end

@testset "hostile sizes: shape arithmetic is exact, as Python's" begin
    # flatten of [2^32, 2^32 + 3] is 2^64 + 3·2^32: wrapped around in Int it would be 3·2^32 and match
    text = replace(hostile_text(size = "4294967296, 4294967299"),
                   "\"layers\": [{\"type\": \"linear\", \"in_features\": 4294967296, 4294967299, \"out_features\": 2}]" =>
                   "\"layers\": [{\"type\": \"flatten\"}, {\"type\": \"linear\", \"in_features\": 12884901888, \"out_features\": 2}]")
    @test hostile_rejection(() -> parse_diagram(text)) == [("shape-mismatch", "/arrows/2/architecture/layers/1")]
    # dilation · (kernel − 1) = 2^33 · (2^31 − 1) wraps to −2^33 in Int: Python finds no output at the conv
    conv = "{\"type\": \"conv2d\", \"in_channels\": 1, \"out_channels\": 1, \"kernel_size\": [2147483648, 1], " *
           "\"dilation\": [8589934592, 1]}, {\"type\": \"flatten\"}"
    text = replace(hostile_text(size = "1, 8, 8"),
                   "\"layers\": [{\"type\": \"linear\", \"in_features\": 1, 8, 8," =>
                   "\"layers\": [$conv, {\"type\": \"linear\", \"in_features\": 64,")
    @test hostile_rejection(() -> parse_diagram(text)) == [("shape-mismatch", "/arrows/2/architecture/layers/0")]
    # the flatten and reshape function arrows too: [2^32, 2^32 + 3] holds 2^64 + 3·2^32 numbers, not 3·2^32
    funcs = """{"format": "learning-diagram", "format_version": "1.0",
     "objects": [{"name": "D", "kind": "data"},
                 {"name": "X", "kind": "tensor", "shape": [4294967296, 4294967299], "dtype": "float32"},
                 {"name": "F", "kind": "tensor", "shape": [12884901888], "dtype": "float32"}],
     "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"}, ARROW]}"""
    flat_arrow = "{\"name\": \"flat\", \"kind\": \"function\", \"source\": \"X\", \"target\": \"F\", \"op\": \"flatten\"}"
    @test hostile_rejection(() -> parse_diagram(replace(funcs, "ARROW" => flat_arrow))) == [("shape-mismatch", "/arrows/1/target")]
    reshape_arrow = "{\"name\": \"re\", \"kind\": \"function\", \"source\": \"X\", \"target\": \"F\", " *
                    "\"op\": \"reshape\", \"shape\": [12884901888]}"
    @test hostile_rejection(() -> parse_diagram(replace(funcs, "ARROW" => reshape_arrow))) == [("shape-mismatch", "/arrows/1/shape")]
    # LSTM gates 4 · 2^62 = 2^64: counted as more than any limit, not as 0 parameters
    lstm = Architecture([Layer("lstm", Dict{String,Any}("input_size" => 3, "hidden_size" => 2^62))], nothing, nothing)
    @test hostile_rejection(() -> build_model(lstm)) == [("too-many-parameters", "architecture")]
    # an architecture from JSON (the bridge, Flux model files) has the documents' integer bound
    arch = DL.parse_json("{\"layers\": [{\"type\": \"lstm\", \"input_size\": 3, \"hidden_size\": 4611686018427387904}]}")
    @test hostile_rejection(() -> DL.check_architecture_json(arch)) == [("bad-value", "/layers/0/hidden_size")]
end

# A safetensors file: the 8-byte little-endian header length, the header, the data.
function write_raw_safetensors(path, header::AbstractString, data::Vector{UInt8} = UInt8[])
    open(path, "w") do io
        write(io, htol(UInt64(ncodeunits(header))))
        write(io, header)
        write(io, data)
    end
    return path
end

@testset "hostile safetensors sizes" begin
    mktempdir() do dir
        path = joinpath(dir, "w.safetensors")
        good = "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}"
        write_raw_safetensors(path, good, zeros(UInt8, 8))
        @test read_safetensors(path)["w"] == zeros(Float32, 2)
        for header in ("{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 8]}}",  # 2^66 bytes
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [$(join(fill("4611686018427387904", 1000), ", "))], \"data_offsets\": [0, 8]}}",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 18446744073709551615]}}",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",  # a gap before it
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",  # more than the file holds
                       # as Python's tensorfiles._entries: an axis of 2^62 or more (even beside a 0), a key other
                       # than dtype/shape/data_offsets, __metadata__ not strings to strings (before any dtype)
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 0], \"data_offsets\": [0, 0]}, " *
                       "\"v\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8], \"extra\": 1}}",
                       # no element, but NumPy (Python's reader) refuses 2^62 - 1 sizes of 4 bytes; a dtype in a list
                       "{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387903, 0], \"data_offsets\": [0, 0]}, " *
                       "\"v\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                       "{\"w\": {\"dtype\": [\"F32\"], \"shape\": [2], \"data_offsets\": [0, 8]}}",
                       "{\"__metadata__\": {\"a\": 1}, \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                       "{\"__metadata__\": {\"a\": 1}, \"w\": {\"dtype\": \"F4\", \"shape\": [4], \"data_offsets\": [0, 2]}, " *
                       "\"v\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [2, 6]}}")
            write_raw_safetensors(path, header, zeros(UInt8, 8))
            @test hostile_rejection(() -> read_safetensors(path)) == [("weights-file", path)]
        end
        # a dtype this package does not read, in a consistent file: weights-dtype, found in the header
        write_raw_safetensors(path, "{\"w\": {\"dtype\": \"F4\", \"shape\": [4], \"data_offsets\": [0, 2]}}", zeros(UInt8, 2))
        @test hostile_rejection(() -> read_safetensors(path)) == [("weights-dtype", "$path#w")]
    end
end

@testset "writing files" begin
    mktempdir() do dir
        tensors = Dict("w" => [1.0, 2.0])
        # a folder, a missing folder: weights-file, nothing created
        @test hostile_rejection(() -> write_safetensors(dir, tensors)) == [("weights-file", dir)]
        missing_folder = joinpath(dir, "no", "such", "w.safetensors")
        @test hostile_rejection(() -> write_safetensors(missing_folder, tensors)) == [("weights-file", missing_folder)]
        @test !ispath(joinpath(dir, "no"))
        if Sys.which("mkfifo") !== nothing
            fifo = joinpath(dir, "pipe")
            run(`mkfifo $fifo`)
            @test hostile_rejection(() -> write_safetensors(fifo, tensors)) == [("weights-file", fifo)]
            rm(fifo)
        end
        @test isempty(readdir(dir))
        if !Sys.iswindows()
            # an existing 0600 file keeps its mode; a symlink is written through and stays a link
            target = joinpath(dir, "real.safetensors")
            write(target, "old")
            chmod(target, 0o600)
            link = joinpath(dir, "link.safetensors")
            symlink(target, link)
            @test write_safetensors(link, tensors) == link
            @test islink(link) && readlink(link) == target
            @test filemode(target) & 0o777 == 0o600
            @test read_safetensors(target)["w"] == [1.0, 2.0]
            @test readdir(dir) == ["link.safetensors", "real.safetensors"]
            # a new file gets 0666 less the umask, as a plain open gives
            fresh = joinpath(dir, "new.safetensors")
            mask = ccall(:umask, Cuint, (Cuint,), 0o022)
            try
                write_safetensors(fresh, tensors)
            finally
                ccall(:umask, Cuint, (Cuint,), mask)
            end
            @test filemode(fresh) & 0o777 == 0o644
            # a writer that throws: its own exception, the old file intact, no temporary file left
            before = read(target)
            @test_throws ErrorException DL.atomic_write(io -> (write(io, "partial"); error("the writer failed")), link)
            @test read(target) == before
            @test readdir(dir) == ["link.safetensors", "new.safetensors", "real.safetensors"]
            # a dangling symlink: the file it names is created, the link stays
            dangling = joinpath(dir, "dangling.safetensors")
            symlink(joinpath(dir, "later.safetensors"), dangling)
            write_safetensors(dangling, tensors)
            @test islink(dangling) && read_safetensors(joinpath(dir, "later.safetensors"))["w"] == [1.0, 2.0]
        end
    end
end
