# The conformance suite (conformance/README.md): every valid case evaluated in float64 and
# float32 against expected.json, its gradients (Zygote, through `loss_gradients`) against
# gradients.safetensors where the case has trainable parameters, every invalid case rejected
# with its code and pointer.

relative_error(got, want) = abs(got - want) / max(abs(want), 1e-6)

# ‖g − g*‖ / max(‖g*‖, 1e-6) over one parameter's entries (both in storage layout)
gradient_error(got, want) =
    size(got) == size(want) ? sqrt(sum(abs2, Float64.(got) .- want)) / max(sqrt(sum(abs2, want)), 1e-6) : Inf

# A JSON pointer must be equal; `file#key` must name the same key (the file may be any path to
# a file of that name); `file` must be a path to a file of that name.
function pointer_matches(got::AbstractString, want::AbstractString)
    (isempty(want) || startswith(want, "/")) && return got == want
    if occursin('#', want)
        file, key = split(want, '#'; limit = 2)
        occursin('#', got) || return false
        got_file, got_key = split(got, '#'; limit = 2)
        return got_key == key && basename(got_file) == basename(file)
    end
    return !occursin('#', got) && basename(got) == basename(want)
end

case_dirs(kind) = [joinpath(CONFORMANCE, kind, name) for name in sort(readdir(joinpath(CONFORMANCE, kind)))
                   if isdir(joinpath(CONFORMANCE, kind, name))]

case_files(dir) = (joinpath(dir, "diagram.json"), joinpath(dir, "weights.safetensors"), joinpath(dir, "batch.safetensors"))

@testset "conformance" begin
    @test isdir(CONFORMANCE)
    valid = case_dirs("cases")
    invalid = case_dirs("invalid")
    @test length(valid) >= 30
    @test length(invalid) >= 30

    for (T, key) in ((Float64, "float64"), (Float32, "float32"))
        @testset "valid cases, $T" begin
            for dir in valid
                expected = DL.parse_json(read(joinpath(dir, "expected.json"), String))
                tolerance = expected["tolerance"][key]
                @testset "$(basename(dir))" begin
                    ev = evaluate_files(case_files(dir)...; dtype = T)
                    @test ev.total isa T
                    @test first.(ev.equations) == [e["name"] for e in expected["equations"]]
                    for ((name, value), e) in zip(ev.equations, expected["equations"])
                        @test relative_error(value, e["value"]) <= tolerance
                    end
                    @test relative_error(ev.total, expected["total"]) <= tolerance
                    gradients_file = joinpath(dir, "gradients.safetensors")
                    if isfile(gradients_file)
                        want = DL.read_safetensors(gradients_file, "gradients")
                        c = compile_diagram(case_files(dir)[1]; weights = case_files(dir)[2], dtype = T)
                        got = loss_gradients(c, case_files(dir)[3])
                        @test sort(collect(keys(got))) == sort(collect(keys(want)))
                        gradient_tolerance = expected["gradient_tolerance"][key]
                        for name in sort(collect(keys(want)))
                            @test haskey(got, name) && gradient_error(got[name], want[name]) <= gradient_tolerance
                        end
                    end
                end
            end
        end
    end

    @testset "invalid cases" begin
        for dir in invalid
            expected = DL.parse_json(read(joinpath(dir, "expected.json"), String))
            diagram_case = !isfile(joinpath(dir, "weights.safetensors"))
            @testset "$(basename(dir))" begin
                err = try
                    evaluate_files(case_files(dir)...; dtype = Float64)
                    nothing
                catch e
                    e isa DiagramError || rethrow()
                    e
                end
                @test err isa DiagramError
                if err isa DiagramError
                    @test error_code(err) == expected["code"]
                    @test pointer_matches(error_pointer(err), expected["pointer"])
                    # a diagram case has exactly one problem, as in the Python library's test
                    diagram_case && @test [(p.code, p.pointer) for p in err.problems] == [(expected["code"], expected["pointer"])]
                end
            end
        end
    end
end
