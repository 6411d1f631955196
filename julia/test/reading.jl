# Reading: JSON text as SPEC §1 says (as the Python reader reads it), pointers, the schema's checks, terms and equations.

# A small valid diagram: data into X and Y, a linear model X → Y.
minimal_document() = DL.parse_json("""
{"format": "learning-diagram", "format_version": "1.0",
 "objects": [{"name": "D", "kind": "data"},
             {"name": "X", "kind": "tensor", "shape": [3], "dtype": "float32"},
             {"name": "Y", "kind": "categorical", "classes": 2}],
 "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
            {"name": "y", "kind": "data", "source": "D", "target": "Y", "column": "y"},
            {"name": "f", "kind": "model", "source": "X", "target": "Y", "trainable": true,
             "architecture": {"layers": [{"type": "linear", "in_features": 3, "out_features": 2}]}}]}
""")

function rejection(f)
    try
        f()
    catch err
        err isa DiagramError && return [(p.code, p.pointer) for p in err.problems]
        rethrow()
    end
    return nothing
end

@testset "JSON as SPEC §1 reads it" begin
    @test DL.parse_json("3") === 3
    @test DL.parse_json("-0") === 0
    @test DL.parse_json("3.0") === 3.0
    @test DL.parse_json("1e2") === 100.0
    @test DL.parse_json("123456789012345678901234567890") == big"123456789012345678901234567890"
    @test DL.parse_json("1e400") === Inf  # beyond Float64: infinite, as Python's json reads it
    @test DL.parse_json("-1e400") === -Inf
    @test DL.parse_json("1e-400") === 0.0  # below Float64's range: zero
    @test DL.parse_json("{\"a\": {\"b\": [1e-400, 1e400]}}")["a"]["b"] == Any[0.0, Inf]
    @test DL.parse_json(" [true, false, null] ") == Any[true, false, nothing]
    @test DL.parse_json("\"a\\u00e9\\ud83d\\ude00\\n\"") == "aé😀\n"
    o = DL.parse_json("{\"b\": 1, \"a\": 2}")
    @test collect(keys(o)) == ["b", "a"]  # document order
    for bad in ("{} x", "[1, 2,]", "01", "1.", "+1", "\"a\nb\"", "{'a': 1}", "", "[", "tru", "\"\\x\"",
                "NaN", "Infinity", "-Infinity", "[1, NaN]", "{\"b\": 1, \"b\": 2}", "[{\"b\": 1, \"a\": 0, \"b\": 1}]",
                "\ufeff{}", "[" ^ 513 * "]" ^ 513, "[" ^ 100_000)
        @test_throws DL.JSONSyntaxError DL.parse_json(bad)
    end
    @test DL.parse_json("[" ^ 512 * "]" ^ 512) isa Vector{Any}  # SPEC §1: 512 levels are allowed
    @test DL.parse_json("{\"[\": \"[[[\"}")["["] == "[[["  # brackets in strings do not nest
    @test DL.parse_json(DL.json_text(Dict("a" => [1, 2.5, nothing, true, "q\""]))) ==
          Dict("a" => Any[1, 2.5, nothing, true, "q\""])
    @test DL.json_text([NaN, Inf, -Inf]) == "[NaN,Infinity,-Infinity]"  # Python's json reads these (bridge replies)
    # A document given as Julia values: a Dict's keys sorted (it has no order), Float32 by its decimal.
    doc = DL.json_document(Dict("b" => 1, "a" => Dict(:z => 0.1f0, :y => Int32(2)), "c" => (1, "x")))
    @test collect(keys(doc)) == ["a", "b", "c"]
    @test collect(keys(doc["a"])) == ["y", "z"]
    @test doc["a"]["z"] === 0.1 && doc["a"]["y"] === 2
    @test doc["c"] == Any[1, "x"]
    @test DL.spec_float(1f-5) === 1e-5
    @test DL.spec_float(0.01f0) === 0.01
    @test DL.spec_float(Inf32) === Inf
    @test DL.json_pointer("arrows", 3, "a/b~c") == "/arrows/3/a~1b~0c"
    @test DL.json_pointer() == ""
end

@testset "form and meaning" begin
    @test load_diagram(minimal_document()) isa Diagram
    doc = minimal_document()
    doc["objects"][2]["shape"] = Any[3.0]  # SPEC §1: an integer is written without a fraction
    @test rejection(() -> load_diagram(doc)) == [("wrong-type", "/objects/1/shape/0")]
    doc = minimal_document()
    doc["arrows"][3]["architecture"]["layers"][1]["in_features"] = 4
    doc["objects"][2]["dtype"] = "float16"
    @test rejection(() -> load_diagram(doc)) == [("bad-value", "/objects/1/dtype")]  # form first, then meaning
    doc = minimal_document()
    doc["arrows"][3]["architecture"]["layers"][1]["in_features"] = 4
    @test rejection(() -> load_diagram(doc)) == [("shape-mismatch", "/arrows/2/architecture/layers/0")]
    doc = minimal_document()
    doc["arrows"][1]["name"] = "bad-name"
    doc["objects"][2]["x-note"] = "ignored"
    doc["objects"][2]["colour"] = "red"
    @test Set(rejection(() -> load_diagram(doc))) == Set([("bad-value", "/arrows/0/name"), ("unknown-key", "/objects/1/colour")])
    @test rejection(() -> parse_diagram("{\"format\": \"onnx\"}")) == [("not-a-diagram", "/format")]
    @test rejection(() -> parse_diagram("[1]")) == [("not-a-diagram", "")]
    @test rejection(() -> parse_diagram("{\"format\": \"learning-diagram\", \"format_version\": \"1.0\\n\"}")) ==
          [("unsupported-version", "/format_version")]
    @test rejection(() -> load_diagram(joinpath(@__DIR__, "no-such-file.json"))) ==
          [("file-not-found", joinpath(@__DIR__, "no-such-file.json"))]
    doc = minimal_document()
    doc["objects"][3]["distance"] = DL.parse_json("{\"name\": \"cross_entropy\", \"label_smoothing\": 0.0}")
    doc["objects"][3]["distance"]["label_smoothing"] = NaN  # no NaN literal in JSON text (SPEC §1), but a value can be
    doc["x-note"] = Inf  # ignored under x- keys
    @test rejection(() -> load_diagram(doc)) == [("bad-value", "/objects/2/distance/label_smoothing")]
    @test rejection(() -> parse_diagram("[" ^ 2000 * "]" ^ 2000)) == [("malformed-json", "")]
end

@testset "terms" begin
    t = parse_term("  dec ( enc(x) ,y )")
    @test string(t) == "dec(enc(x), y)"
    @test t == Term("dec", [Term("enc", [Term("x")]), Term("y")])
    @test hash(t) == hash(parse_term("dec(enc(x), y)"))
    @test [string(s) for s in subterms(t)] == ["x", "enc(x)", "y", "dec(enc(x), y)"]
    for bad in ("f(x", "f(x))", "f(,x)", "f x", "f(x)y", "", "1f", "f(x;y)")
        @test_throws DL.TermSyntaxError parse_term(bad)
    end
    @test string(parse_term("f(" ^ 99 * "x" * ")" ^ 99)) == "f(" ^ 99 * "x" * ")" ^ 99  # 100 arrows: allowed
    @test_throws DL.TermSyntaxError parse_term("f(" ^ 100 * "x" * ")" ^ 100)
end

@testset "terms and equations of an autoencoder with a cycle" begin
    doc = DL.parse_json("""
    {"format": "learning-diagram", "format_version": "1.0",
     "objects": [{"name": "D", "kind": "data"},
                 {"name": "X", "kind": "tensor", "shape": [4], "dtype": "float64"},
                 {"name": "Z", "kind": "tensor", "shape": [2], "dtype": "float64"}],
     "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
                {"name": "enc", "kind": "model", "source": "X", "target": "Z", "trainable": true,
                 "architecture": {"layers": [{"type": "linear", "in_features": 4, "out_features": 2}]}},
                {"name": "dec", "kind": "model", "source": "Z", "target": "X", "trainable": true,
                 "architecture": {"layers": [{"type": "linear", "in_features": 2, "out_features": 4}]}}]}
    """)
    d = load_diagram(doc)
    terms = Dict(name => [string(t) for (t, _) in ts] for (name, ts) in enumerate_terms(d))
    @test terms["X"] == ["x", "dec(enc(x))"]  # no arrow twice on a path (SPEC §5.2)
    @test terms["Z"] == ["enc(x)"]
    @test [eq.name for eq in diagram_equations(d)] == ["dec(enc(x)) = x"]  # the constant side on the right
end

@testset "defaults come from the schema" begin
    conv = DL.full_params(Layer("conv2d", Dict{String,Any}("kernel_size" => [3, 3])))
    @test conv["stride"] == [1, 1]
    @test conv["stride"] isa Vector{Int}
    @test conv["padding"] == [0, 0, 0, 0] && conv["dilation"] == [1, 1] && conv["groups"] === 1
    @test conv["bias"] === true
    push!(conv["stride"], 7)  # a caller's change does not reach the next layer's defaults
    @test DL.full_params(Layer("conv2d", Dict{String,Any}()))["stride"] == [1, 1]
    @test DL.full_params(Layer("max_pool2d", Dict{String,Any}("kernel_size" => [2, 3])))["stride"] == [2, 3]
    @test DL.full_params(Layer("layer_norm", Dict{String,Any}()))["eps"] === 1e-5
    @test DL.full_params(Layer("elu", Dict{String,Any}()))["alpha"] === 1.0
    @test DL.full_params(Layer("relu", Dict{String,Any}())) == Dict{String,Any}()
    @test DL.full_distance(Distance("kl_div", Dict{String,Any}())).params["temperature"] === 1.0
    @test DL.full_distance(Distance("huber", Dict{String,Any}("delta" => 2))).params["delta"] === 2.0
    @test DL.function_defaults("normalize") == Dict{String,Any}("eps" => 1e-12)
    @test isempty(DL.function_defaults("scale"))
end

# The hostile shapes of the Python suite's test_term_bounds.py: each ends in a DiagramError (or its
# few terms) after bounded work, with the codes and pointers Python gives (SPEC §5.3, §6.4).
bound_tensor(name) = "{\"name\": \"$name\", \"kind\": \"tensor\", \"shape\": [2], \"dtype\": \"float64\"}"
bound_data(name, source, target) =
    "{\"name\": \"$name\", \"kind\": \"data\", \"source\": \"$source\", \"target\": \"$target\", \"column\": \"$name\"}"
bound_function(name, op, sources, target) =
    "{\"name\": \"$name\", \"kind\": \"function\", \"op\": \"$op\", \"source\": [" *
    join(["\"$s\"" for s in sources], ", ") * "], \"target\": \"$target\"" * (op == "scale" ? ", \"factor\": 0.5}" : "}")
bound_diagram(objects, arrows) =
    "{\"format\": \"learning-diagram\", \"format_version\": \"1.0\", \"objects\": [" * join(objects, ", ") *
    "], \"arrows\": [" * join(arrows, ", ") * "]}"

@testset "bounded enumeration of hostile shapes" begin
    data_object = "{\"name\": \"D\", \"kind\": \"data\"}"
    # X_i = a_i(X_{i-1}, X_{i-1}): 2^(i+1) - 1 arrows; X9 (1023) is the first past max_term_size 1000
    objects = [data_object; [bound_tensor("X$i") for i in 0:40]]
    arrows = [bound_data("x", "D", "X0"); [bound_function("a$i", "add", ["X$i", "X$i"], "X$(i + 1)") for i in 0:39]]
    @test rejection(() -> parse_diagram(bound_diagram(objects, arrows))) == [("term-too-large", "/objects/10")]
    # a chain of scale arrows: X101 is the first object whose terms nest more than 100 deep
    objects = [data_object; [bound_tensor("X$i") for i in 0:600]]
    arrows = [bound_data("x", "D", "X0"); [bound_function("s$i", "scale", ["X$i"], "X$(i + 1)") for i in 0:599]]
    @test rejection(() -> parse_diagram(bound_diagram(objects, arrows))) == [("too-many-terms", "/objects/102")]
    # add over 40 copies of X, which two data objects reach: 2^40 combinations, two terms
    objects = ["{\"name\": \"D1\", \"kind\": \"data\"}", "{\"name\": \"D2\", \"kind\": \"data\"}",
               bound_tensor("X"), bound_tensor("Y")]
    arrows = [bound_data("x1", "D1", "X"), bound_data("x2", "D2", "X"), bound_function("p", "add", fill("X", 40), "Y")]
    terms = Dict(enumerate_terms(parse_diagram(bound_diagram(objects, arrows))))
    @test [string(t) for (t, _) in terms["Y"]] == ["p(" * join(fill("x1", 40), ", ") * ")", "p(" * join(fill("x2", 40), ", ") * ")"]
    # a term sharing its halves 200 times: hashed and compared without walking 2^200 leaves
    t, u = Term("x"), Term("x")
    for i in 1:200
        t, u = Term("a", [t, t]), Term("a", [u, u])
    end
    @test t == u
    @test hash(t) == hash(u)
    @test DL.term_size(t) == typemax(Int)
end
