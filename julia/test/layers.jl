# Each layer built from the vocabulary against a loop written here from SPEC §4, on logical
# (PyTorch-layout) arrays: the layer takes storage layout, so the comparison also checks the
# layout rule, the kernel flip, the padding order and the 0-based embedding.

layer(type; params...) = Layer(type, Dict{String,Any}(String(k) => v for (k, v) in params))

# The layer built with logical weights, applied to a logical batch (batch first); logical result.
function apply_layer(l::Layer, weights::Dict, x::AbstractArray)
    storage = Dict{String,Any}("layers.0.$k" => storage_layout(v) for (k, v) in weights)
    model = build_model(Architecture([l]), Float64; weights = storage)
    return storage_layout(model(storage_layout(x)))
end

sigmoid_reference(z) = 1 / (1 + exp(-z))

function conv_reference(x, w, b, stride, padding, dilation, groups)
    c_in, h, wd = size(x)
    c_out, c_group, kh, kw = size(w)
    top, bottom, left, right = padding
    padded = zeros(c_in, h + top + bottom, wd + left + right)
    padded[:, top+1:top+h, left+1:left+wd] = x
    ho = fld(h + top + bottom - dilation[1] * (kh - 1) - 1, stride[1]) + 1
    wo = fld(wd + left + right - dilation[2] * (kw - 1) - 1, stride[2]) + 1
    per_group = c_out ÷ groups
    y = zeros(c_out, ho, wo)
    for o in 0:c_out-1, i in 0:ho-1, j in 0:wo-1
        g = o ÷ per_group
        s = b[o+1]
        for c in 0:c_group-1, p in 0:kh-1, q in 0:kw-1
            s += w[o+1, c+1, p+1, q+1] * padded[g*c_group+c+1, i*stride[1]+p*dilation[1]+1, j*stride[2]+q*dilation[2]+1]
        end
        y[o+1, i+1, j+1] = s
    end
    return y
end

function pool_reference(x, kernel, stride, padding, kind)
    c, h, w = size(x)
    top, bottom, left, right = padding
    fill_value = kind == :max ? -Inf : 0.0
    padded = fill(fill_value, c, h + top + bottom, w + left + right)
    padded[:, top+1:top+h, left+1:left+w] = x
    ho = fld(h + top + bottom - kernel[1], stride[1]) + 1
    wo = fld(w + left + right - kernel[2], stride[2]) + 1
    y = zeros(c, ho, wo)
    for ch in 1:c, i in 0:ho-1, j in 0:wo-1
        window = padded[ch, i*stride[1]+1:i*stride[1]+kernel[1], j*stride[2]+1:j*stride[2]+kernel[2]]
        y[ch, i+1, j+1] = kind == :max ? maximum(window) : sum(window) / (kernel[1] * kernel[2])
    end
    return y
end

function lstm_reference(x, w_ih, w_hh, b_ih, b_hh)
    steps, _ = size(x)
    hidden = size(w_hh, 2)
    h, c = zeros(hidden), zeros(hidden)
    y = zeros(steps, hidden)
    for t in 1:steps
        z = w_ih * x[t, :] + b_ih + w_hh * h + b_hh
        i, f = sigmoid_reference.(z[1:hidden]), sigmoid_reference.(z[hidden+1:2hidden])
        g, o = tanh.(z[2hidden+1:3hidden]), sigmoid_reference.(z[3hidden+1:4hidden])
        c = f .* c .+ i .* g
        h = o .* tanh.(c)
        y[t, :] = h
    end
    return y
end

@testset "layers against SPEC §4 loops" begin
    rng = MersenneTwister(7)
    B = 3

    @testset "linear on a sequence, no bias" begin
        x = randn(rng, B, 5, 4)
        w = randn(rng, 2, 4)
        y = apply_layer(layer("linear"; in_features = 4, out_features = 2, bias = false), Dict("weight" => w), x)
        @test size(y) == (B, 5, 2)
        @test y ≈ [sum(w[o, i] * x[b, t, i] for i in 1:4) for b in 1:B, t in 1:5, o in 1:2]
    end

    @testset "conv2d: asymmetric padding, stride, dilation, groups" begin
        x = randn(rng, B, 4, 7, 6)
        w = randn(rng, 6, 2, 2, 3)
        bias = randn(rng, 6)
        l = layer("conv2d"; in_channels = 4, out_channels = 6, kernel_size = [2, 3], stride = [2, 1],
                  padding = [1, 0, 2, 1], dilation = [2, 1], groups = 2)
        y = apply_layer(l, Dict("weight" => w, "bias" => bias), x)
        want = cat([reshape(conv_reference(x[b, :, :, :], w, bias, (2, 1), (1, 0, 2, 1), (2, 1), 2), 1, 6, 3, 7)
                    for b in 1:B]...; dims = 1)
        @test size(y) == size(want) == (B, 6, 3, 7)
        @test y ≈ want rtol = 1e-12
    end

    @testset "$(kind)_pool2d with padding" for kind in (:max, :avg)
        x = randn(rng, B, 2, 5, 6)
        l = layer("$(kind)_pool2d"; kernel_size = [2, 3], stride = [2, 2], padding = [1, 0, 0, 2])
        y = apply_layer(l, Dict(), x)
        want = cat([reshape(pool_reference(x[b, :, :, :], (2, 3), (2, 2), (1, 0, 0, 2), kind), 1, 2, 3, 3)
                    for b in 1:B]...; dims = 1)
        @test size(y) == size(want)
        @test y ≈ want rtol = 1e-12
    end

    @testset "flatten is row-major" begin
        x = randn(rng, B, 2, 3, 4)
        y = apply_layer(layer("flatten"), Dict(), x)
        @test y == reshape(permutedims(x, (1, 4, 3, 2)), B, :)  # last logical axis fastest
        @test y[2, 1:4] == x[2, 1, 1, :]
    end

    @testset "embedding reads 0-based indices" begin
        w = randn(rng, 5, 3)
        idx = [0 4; 2 2; 1 3]
        y = apply_layer(layer("embedding"; num_embeddings = 5, embedding_dim = 3), Dict("weight" => w), idx)
        @test size(y) == (3, 2, 3)
        @test all(y[b, s, :] == w[idx[b, s]+1, :] for b in 1:3, s in 1:2)
    end

    @testset "layer_norm over the last two axes" begin
        x = randn(rng, B, 2, 3, 4)
        w, bias = randn(rng, 3, 4), randn(rng, 3, 4)
        y = apply_layer(layer("layer_norm"; normalized_shape = [3, 4], eps = 1e-3), Dict("weight" => w, "bias" => bias), x)
        for b in 1:B, a in 1:2
            v = x[b, a, :, :]
            μ = sum(v) / 12
            σ² = sum((v .- μ) .^ 2) / 12
            @test y[b, a, :, :] ≈ (v .- μ) ./ sqrt(σ² + 1e-3) .* w .+ bias rtol = 1e-12
        end
    end

    @testset "lstm: gates i, f, g, o and two biases" begin
        x = randn(rng, B, 5, 3)
        w_ih, w_hh = randn(rng, 16, 3), randn(rng, 16, 4)
        b_ih, b_hh = randn(rng, 16), randn(rng, 16)
        weights = Dict("weight_ih_l0" => w_ih, "weight_hh_l0" => w_hh, "bias_ih_l0" => b_ih, "bias_hh_l0" => b_hh)
        y = apply_layer(layer("lstm"; input_size = 3, hidden_size = 4), weights, x)
        @test size(y) == (B, 5, 4)
        for b in 1:B
            @test y[b, :, :] ≈ lstm_reference(x[b, :, :], w_ih, w_hh, b_ih, b_hh) rtol = 1e-12
        end
    end

    @testset "last_step, softmax, log_softmax" begin
        x = randn(rng, B, 4, 3) .* 50
        @test apply_layer(layer("last_step"), Dict(), x) == x[:, 4, :]
        s = apply_layer(layer("softmax"), Dict(), x)
        @test all(sum(s; dims = 3) .≈ 1)
        @test apply_layer(layer("log_softmax"), Dict(), x) ≈ log.(s) rtol = 1e-12
    end

    @testset "exact activations" begin
        @test DL.spec_gelu(1.0) ≈ 0.8413447460685429 rtol = 1e-15  # Φ(1)
        @test DL.spec_softplus(30.0) == 30.0 + log1p(exp(-30.0))  # no threshold at 20
        @test DL.spec_softplus(30.0) != 30.0
        @test DL.spec_softplus(-800.0) == 0.0
        @test DL.spec_sigmoid(-80.0) ≈ 1 / (1 + exp(80.0))
        @test DL.exact_elu(-1e-10, 2.0) ≈ 2.0 * -1e-10 rtol = 1e-9  # expm1, not exp(x) - 1
        @test DL.exact_elu(-1000.0, 1.0) == -1.0
        @test DL.exact_leaky_relu(-2.0, 0.1) == -0.2
        @test DL.exact_leaky_relu(0.0, 0.1) == 0.0
        x = randn(rng, 6, 2) .* 3
        @test apply_layer(layer("leaky_relu"; negative_slope = 0.2), Dict(), x) == ifelse.(x .>= 0, x, 0.2 .* x)
        @test apply_layer(layer("elu"), Dict(), x) == ifelse.(x .> 0, x, expm1.(min.(x, 0)))
    end
end
