# Flux models ↔ architectures with canonical weights, and Flux models on disk.

function same_outputs(a, b, x; rtol = 1e-12)
    ya, yb = a(x), b(x)
    return size(ya) == size(yb) && isapprox(ya, yb; rtol = rtol)
end

@testset "Flux models and architectures" begin
    rng = MersenneTwister(5)

    @testset "a Flux Chain becomes an architecture and back" begin
        chain = Chain(Conv((2, 3), 2 => 4, relu; pad = (1, 0, 2, 1), stride = (1, 2)), MaxPool((2, 2)), Flux.flatten,
                      Dense(32 => 5, tanh), Dense(5 => 3; bias = false), softmax) |> f64
        arch, weights = export_model(chain)
        @test [l.type for l in arch.layers] ==
              ["conv2d", "relu", "max_pool2d", "flatten", "linear", "tanh", "linear", "softmax"]
        conv = arch.layers[1].params
        @test conv["kernel_size"] == [3, 2] && conv["padding"] == [2, 1, 1, 0] && conv["stride"] == [2, 1]
        @test arch.layers[7].params["bias"] === false
        @test sort(collect(keys(weights))) == ["layers.0.bias", "layers.0.weight", "layers.4.bias", "layers.4.weight", "layers.6.weight"]
        @test size(weights["layers.4.weight"]) == (32, 5)  # storage layout of the logical [5, 32]
        rebuilt = build_model(arch, Float64; weights = weights)
        @test length(rebuilt.layers) == length(arch.layers)
        x = randn(rng, 9, 8, 2, 3)  # WHCN
        @test same_outputs(chain, rebuilt, x; rtol = 1e-10)  # tanh_fast in Flux's Dense vs exact tanh
        again, weights_again = export_model(rebuilt)
        @test [l.type for l in again.layers] == [l.type for l in arch.layers]
        @test all(weights_again[k] ≈ weights[k] for k in keys(weights))
    end

    @testset "Flux's LSTM, LayerNorm and Embedding" begin
        lstm = Flux.LSTM(3 => 4) |> f64
        arch, weights = export_model(Chain(lstm))
        @test arch.layers[1].type == "lstm" && all(iszero, weights["layers.0.bias_hh_l0"])
        x = randn(rng, 3, 6, 2)
        @test same_outputs(Chain(lstm), build_model(arch, Float64; weights = weights), x; rtol = 1e-10)

        norm = Flux.LayerNorm(4) |> f64
        arch, weights = export_model(norm)
        @test arch.layers[1].type == "layer_norm" && arch.layers[1].params["normalized_shape"] == [4]
        @test same_outputs(norm, build_model(arch, Float64; weights = weights), randn(rng, 4, 5); rtol = 1e-8)

        embedding = Flux.Embedding(6 => 3) |> f64
        arch, weights = export_model(embedding)
        rebuilt = build_model(arch, Float64; weights = weights)
        tokens = [1 6; 3 2]
        @test rebuilt(tokens .- 1) == embedding(tokens)  # the exported layer reads 0-based indices
    end

    @testset "Float32 hyperparameters keep their declared values" begin
        chain = Chain(Flux.LayerNorm(4; eps = 1f-5), DL.Activation(:leaky_relu, DL.exact_leaky_relu, 0.01f0),
                      DL.Activation(:elu, DL.exact_elu, 0.3f0), Dropout(0.1f0))
        arch, _ = export_model(chain)
        @test arch.layers[1].params["eps"] === 1e-5  # not Float64(1f-5) == 9.99999974737875e-6
        @test arch.layers[2].params["negative_slope"] === 0.01
        @test arch.layers[3].params["alpha"] === 0.3
        @test arch.layers[4].params["p"] === 0.1
    end

    @testset "Dropout follows PyTorch's train/eval mode across the bridge" begin
        chain = Chain(Dense(4 => 64), Dropout(0.5), Dense(64 => 3)) |> f64
        x = randn(rng, 4, 5)
        ŷ = chain(x)  # outside a gradient Dropout is off
        @test DL.bridge_forward(chain, "float64", x) ≈ ŷ
        g = ones(3, 5)
        grads = DL.bridge_input_gradients(chain, "float64", g, x)  # evaluation mode: no mask inside the pullback
        @test grads[1] ≈ chain[1].weight' * (chain[3].weight' * g) rtol = 1e-12  # the linear map's transpose
        @test chain[2].active === nothing  # Flux's automatic mode restored
        y, back = DL.bridge_forward_pullback(chain, "float64", x; training = true)
        @test size(DL.bridge_pullback(back, g)[1]) == size(x)
        @test DL.bridge_pullback(back, g)[1] == DL.bridge_pullback(back, g)[1]  # the forward pass's own mask, every time
        @test y != ŷ  # in training mode the mask was applied
    end

    @testset "what has no equivalent" begin
        err = try
            export_model(Chain(Dense(2 => 2), Dense(2 => 2, Flux.gelu)))
        catch e
            e
        end
        @test err isa DiagramError && error_code(err) == "invalid-layer" && error_pointer(err) == "/layers/1"
        @test_throws DiagramError export_model(Chain(x -> 2x))
        @test_throws DiagramError export_model(Chain(BatchNorm(3)))
    end

    @testset "a product model" begin
        arch = Architecture([Layer("linear", Dict{String,Any}("in_features" => 5, "out_features" => 2))],
                            [Layer[], [Layer("linear", Dict{String,Any}("in_features" => 4, "out_features" => 3))]], "concat")
        model = build_model(arch, Float64; inputs = 2, rng = rng)
        @test model isa ProductModel
        a, b = randn(rng, 2, 7), randn(rng, 4, 7)
        @test size(model(a, b)) == (2, 7)
        @test model((a, b)) == model(a, b)
        exported, weights = export_model(model)
        @test exported.combine == "concat" && length(exported.inputs) == 2 && isempty(exported.inputs[1])
        @test sort(collect(keys(weights))) == ["inputs.1.0.bias", "inputs.1.0.weight", "layers.0.bias", "layers.0.weight"]
    end

    @testset "saved with the architecture, loaded anywhere" begin
        chain = Chain(Dense(4 => 6, relu), Dropout(0.2), Dense(6 => 2)) |> f64
        path = tempname() * ".jld2"
        save_flux_model(path, chain)
        model, arch, inputs = load_flux_model(path)
        @test inputs == 1
        @test [l.type for l in arch.layers] == ["linear", "relu", "dropout", "linear"]
        @test eltype(model[1].weight) == Float64
        x = randn(rng, 4, 3)
        @test model(x) ≈ chain(x)
        model32, _, _ = load_flux_model(path; dtype = Float32)
        @test eltype(model32[1].weight) == Float32
        rm(path)
        @test_throws DiagramError load_flux_model(path)
        notjld = tempname()
        write(notjld, "not a JLD2 file")
        err = try
            load_flux_model(notjld)
        catch e
            e
        end
        @test err isa DiagramError && error_code(err) == "weights-file"
        rm(notjld)
    end
end
