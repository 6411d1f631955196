# Evaluation: memoized terms, external arrows, gradients against finite differences, training
# with a frozen arrow, and the bridge entry points the Python library calls.

case_path(name, file) = joinpath(CONFORMANCE, "cases", name, file)

function external_document()
    return DL.parse_json("""
    {"format": "learning-diagram", "format_version": "1.0",
     "objects": [{"name": "D", "kind": "data"},
                 {"name": "X", "kind": "tensor", "shape": [3], "dtype": "float64"},
                 {"name": "Y", "kind": "categorical", "classes": 2}],
     "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
                {"name": "y", "kind": "data", "source": "D", "target": "Y", "column": "y"},
                {"name": "teacher", "kind": "model", "source": "X", "target": "Y", "trainable": false, "external": true},
                {"name": "student", "kind": "model", "source": "X", "target": "Y", "trainable": true,
                 "architecture": {"layers": [{"type": "linear", "in_features": 3, "out_features": 2}]}}]}
    """)
end

@testset "evaluation" begin
    rng = MersenneTwister(11)

    @testset "every distinct subterm once" begin
        d = load_diagram(case_path("cycle-translation", "diagram.json"))
        c = compile_diagram(d; weights = case_path("cycle-translation", "weights.safetensors"), dtype = Float64)
        distinct = Set{Term}()
        for eq in diagram_equations(d), side in (eq.lhs, eq.rhs)
            union!(distinct, subterms(side))
        end
        @test length(c.plan.steps) == length(distinct)
        @test Set(c.plan.terms) == distinct
        @test length(term_values(c.models, c, load_batch(c, case_path("cycle-translation", "batch.safetensors")))) == length(distinct)
    end

    @testset "external arrows" begin
        d = load_diagram(external_document())
        @test [eq.name for eq in diagram_equations(d)] == ["student(x) = y", "student(x) = teacher(x)"]
        err = try
            compile_diagram(d; dtype = Float64)
        catch e
            e
        end
        @test err isa DiagramError && error_code(err) == "external-unbound" && error_pointer(err) == "/arrows/2"
        calls = Ref(0)
        w = randn(rng, 2, 3)
        teacher = x -> (calls[] += 1; w * x)
        c = compile_diagram(d; dtype = Float64, externals = Dict("teacher" => teacher), rng = rng)
        columns = Dict("x" => randn(rng, 3, 5), "y" => [0, 1, 1, 0, 1])
        ev = evaluate_diagram(c, columns)
        @test calls[] == 1  # teacher(x) is in one equation, x in two: each computed once
        @test ev.total ≈ sum(last.(ev.equations))
        wrong = compile_diagram(d; dtype = Float64, externals = Dict("teacher" => x -> w[1:1, :] * x))
        err = try
            evaluate_diagram(wrong, columns)
        catch e
            e
        end
        @test err isa DiagramError && error_code(err) == "external-shape" && error_pointer(err) == "/arrows/2"
        @test_throws DiagramError evaluate_diagram(c, Dict("x" => randn(rng, 3, 5), "y" => [0, 1, 2, 0, 1]))
    end

    @testset "gradient against finite differences" begin
        name = "regime-multitask"
        c = compile_diagram(case_path(name, "diagram.json"); weights = case_path(name, "weights.safetensors"), dtype = Float64)
        batch = load_batch(c, case_path(name, "batch.safetensors"))
        grads = Flux.gradient(m -> diagram_loss(m, c, batch), c.models)[1]
        checked = 0
        for arrow in keys(c.models)
            model = c.models[arrow]
            model isa Flux.Chain || continue
            for (i, l) in enumerate(model.layers)
                l isa Flux.Dense || continue
                g = grads[arrow].layers[i].weight
                for k in (1, length(l.weight))
                    original = l.weight[k]
                    h = 1e-6
                    l.weight[k] = original + h
                    up = diagram_loss(c, batch)
                    l.weight[k] = original - h
                    down = diagram_loss(c, batch)
                    l.weight[k] = original
                    @test g[k] ≈ (up - down) / 2h rtol = 1e-5 atol = 1e-8
                    checked += 1
                end
            end
        end
        @test checked >= 2
    end

    @testset "training lowers the loss and leaves frozen arrows alone" begin
        name = "regime-distillation"
        c = compile_diagram(case_path(name, "diagram.json"); weights = case_path(name, "weights.safetensors"), dtype = Float64)
        batch = load_batch(c, case_path(name, "batch.safetensors"))
        teacher_before = deepcopy(c.models.teacher)
        student_before = copy(c.models.student[1].weight)
        state = training_state(Flux.Descent(0.05), c)
        first_loss = train_step!(c, state, batch)
        for _ in 1:20
            train_step!(c, state, batch)
        end
        @test diagram_loss(c, batch) < first_loss
        @test c.models.teacher[1].weight == teacher_before[1].weight
        @test c.models.student[1].weight != student_before
    end

    @testset "a frozen arrow's dropout is off in training too (SPEC §9)" begin
        d = load_diagram(DL.parse_json("""
        {"format": "learning-diagram", "format_version": "1.0",
         "objects": [{"name": "D", "kind": "data"},
                     {"name": "X", "kind": "tensor", "shape": [3], "dtype": "float64"},
                     {"name": "Y", "kind": "tensor", "shape": [4], "dtype": "float64"}],
         "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
                    {"name": "teacher", "kind": "model", "source": "X", "target": "Y", "trainable": false,
                     "architecture": {"layers": [{"type": "linear", "in_features": 3, "out_features": 4},
                                                 {"type": "dropout", "p": 0.5}]}},
                    {"name": "student", "kind": "model", "source": "X", "target": "Y", "trainable": true,
                     "architecture": {"layers": [{"type": "linear", "in_features": 3, "out_features": 4},
                                                 {"type": "dropout", "p": 0.5}]}}]}
        """))
        c = compile_diagram(d; dtype = Float64, rng = rng)
        @test c.models.teacher[2].active === false   # frozen: test mode
        @test c.models.student[2].active === nothing  # trainable: Flux's automatic mode
        x = randn(rng, 3, 64)
        outside = c.models.teacher(x)
        # withgradient's auxiliary output (Flux.withgradient docstring): the values seen inside the gradient
        result = Flux.withgradient(m -> (sum(m.student(x)), m.teacher(x), m.student(x)), c.models)
        _, teacher_inside, student_inside = result.val
        @test teacher_inside == outside  # no dropout mask inside the gradient either
        @test count(iszero, student_inside) > 0  # the trainable arrow's dropout is active in training
    end

    @testset "weights round trip" begin
        name = "chain-cnn"
        c = compile_diagram(case_path(name, "diagram.json"); weights = case_path(name, "weights.safetensors"), dtype = Float64)
        path = tempname() * ".safetensors"
        save_weights(c, path)
        original = read_safetensors(case_path(name, "weights.safetensors"))
        saved = read_safetensors(path)
        @test Set(keys(saved)) == Set(keys(original))
        @test all(saved[k] ≈ original[k] for k in keys(original))
        probe = tempname(dirname(path))
        write(probe, "")
        @test filemode(path) & 0o777 == filemode(probe) & 0o777  # a plain file's mode, not mktemp's private 0600
        rm(probe)
        rm(path)
    end

    @testset "bridge entry points" begin
        name = "regime-supervised"
        files = (case_path(name, "diagram.json"), case_path(name, "weights.safetensors"), case_path(name, "batch.safetensors"))
        reply = DL.parse_json(DL.bridge_evaluate_files(files..., "float64"))
        expected = DL.parse_json(read(case_path(name, "expected.json"), String))
        @test reply["ok"] === true
        @test reply["result"]["total"] ≈ expected["total"] rtol = 1e-12
        @test [e[1] for e in reply["result"]["equations"]] == [e["name"] for e in expected["equations"]]
        bad = joinpath(CONFORMANCE, "invalid", "weights-missing-key")
        reply = DL.parse_json(DL.bridge_evaluate_files(joinpath(bad, "diagram.json"), joinpath(bad, "weights.safetensors"),
                                                       joinpath(bad, "batch.safetensors"), "float32"))
        @test reply["ok"] === false && reply["problems"][1]["code"] == "weights-missing-key"
        d = load_diagram(files[1])
        weights = read_safetensors(files[2])
        columns = read_safetensors(files[3], "batch")
        names = collect(keys(weights))
        batch_names = collect(keys(columns))
        reply = DL.parse_json(DL.bridge_evaluate_arrays(read(files[1], String), "float64", DL.json_text(names),
                                                        DL.json_text(batch_names), "[]",
                                                        (weights[k] for k in names)..., (columns[k] for k in batch_names)...))
        @test reply["ok"] === true
        @test reply["result"]["total"] ≈ expected["total"] rtol = 1e-12
        # accuracy through the bridge: the classifier's own argmax against the label column
        reply = DL.parse_json(DL.bridge_evaluate_accuracy(read(files[1], String), "float64", DL.json_text(names),
                                                          DL.json_text(batch_names), DL.json_text(["classifier(x) = y"]),
                                                          (weights[k] for k in names)..., (columns[k] for k in batch_names)...))
        @test reply["ok"] === true
        @test reply["result"]["total"] ≈ expected["total"] rtol = 1e-12
        c = compile_diagram(d; weights = files[2], dtype = Float64)
        logits = c.models.classifier(Array{Float64}(columns["image"]))
        labels = columns["label"]
        right = count(j -> argmax(logits[:, j]) - 1 == labels[j], 1:length(labels))
        @test reply["result"]["hits"]["classifier(x) = y"] == [right, length(labels)]
    end

    @testset "top-1 hits in storage layout" begin
        logits = Float64[0 5 1; 9 0 1; 0 0 7; 1 1 1]  # (C = 4, B = 3): classes 1, 0, 2 (0-based)
        @test top1_hits(logits, [1, 0, 3]) == (2, 3)
        seq = zeros(2, 3, 2)  # logical [B = 2, L = 3, C = 2]
        seq[2, :, 1] .= 1.0   # example 1: class 1 at every step
        seq[1, 2, 2] = 1.0    # example 2: class 0 at step 2; ties elsewhere give the first class, 0
        @test top1_hits(seq, [1 0; 1 0; 0 0]) == (5, 6)
    end
end
