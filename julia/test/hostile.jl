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
