# stop_gradient (format 1.1) and loss_gradients without the conformance files: the version rule,
# term trainability, and that no gradient passes the arrow while others do.

const STOP_GRADIENT_DOCUMENT = """
{"format": "learning-diagram", "format_version": "VERSION",
 "objects": [{"name": "D", "kind": "data"},
             {"name": "X", "kind": "tensor", "shape": [3], "dtype": "float64"},
             {"name": "Z", "kind": "tensor", "shape": [2], "dtype": "float64"}],
 "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
            {"name": "f", "kind": "model", "source": "X", "target": "Z", "trainable": true,
             "architecture": {"layers": [{"type": "linear", "in_features": 3, "out_features": 2}]}},
            {"name": "g", "kind": "model", "source": "X", "target": "Z", "trainable": true,
             "architecture": {"layers": [{"type": "linear", "in_features": 3, "out_features": 2},
                                         {"type": "dropout", "p": 0.5}]}},
            {"name": "sg", "kind": "function", "source": "Z", "target": "Z", "op": "stop_gradient"}],
 "equations": {"automatic": false, "explicit": [{"lhs": "f(x)", "rhs": "sg(g(x))"}]}}
"""

@testset "stop_gradient and loss_gradients" begin
    rejected = try
        parse_diagram(replace(STOP_GRADIENT_DOCUMENT, "VERSION" => "1.0"))
        nothing
    catch err
        err isa DiagramError || rethrow()
        [(p.code, p.pointer) for p in err.problems]
    end
    @test rejected == [("bad-value", "/arrows/3/op")]  # a 1.0 document may not use it (SPEC §1)
    d = parse_diagram(replace(STOP_GRADIENT_DOCUMENT, "VERSION" => "1.1"))
    @test !term_info(d, parse_term("sg(g(x))")).trainable
    @test term_info(d, parse_term("f(x)")).trainable
    c = compile_diagram(d; dtype = Float64, rng = Xoshiro(1))
    batch = Dict("x" => randn(Xoshiro(2), 3, 4))  # storage layout: (features, batch)
    grads = loss_gradients(c, batch)
    @test sort(collect(keys(grads))) == ["f.layers.0.bias", "f.layers.0.weight", "g.layers.0.bias", "g.layers.0.weight"]
    @test all(iszero, grads["g.layers.0.weight"]) && all(iszero, grads["g.layers.0.bias"])
    @test !all(iszero, grads["f.layers.0.weight"])
    # evaluation mode: the dropout in g is the identity, so the gradient is deterministic
    @test loss_gradients(c, batch)["f.layers.0.weight"] == grads["f.layers.0.weight"]
    # f(x) = sg(f(x)) has value 0: stop_gradient passes the value unchanged
    same = parse_diagram(replace(replace(STOP_GRADIENT_DOCUMENT, "VERSION" => "1.1"), "sg(g(x))" => "sg(f(x))"))
    @test evaluate_diagram(compile_diagram(same; dtype = Float64), batch).total == 0.0
end
