# Flux models → architectures (SPEC §4) and canonical (PyTorch-layout) weights: the way a model
# trained in Julia becomes a PyTorch module (`diagrammatic_learning.torch_backend.build_module`)
# or a diagram's portable architecture. The reverse of `build_model`.

unsupported_layer(i, layer, why) =
    throw(DiagramError("invalid-layer", "/layers/$(i - 1)",
                       "layer $(i - 1) ($(summary(layer))) has no equivalent in the layer vocabulary: $why"))

# An exported layer: its vocabulary layer and its parameters (name => array in storage layout).
const ExportedLayer = Tuple{Layer,Vector{Pair{String,Array}}}

plain_layer(type, params = Dict{String,Any}()) = (Layer(type, Dict{String,Any}(params)), Pair{String,Array}[])

"""
    activation_layer(f) -> Union{Nothing,ExportedLayer}

The vocabulary layer computing the function `f` (as found in a Dense's `σ` or as a Chain
element), `nothing` for `identity`; throws `ArgumentError` for a function outside the vocabulary.
"""
function activation_layer(f)
    f === identity && return nothing
    f === Flux.relu && return plain_layer("relu")
    f in (tanh, Flux.tanh_fast) && return plain_layer("tanh")
    f in (Flux.σ, Flux.sigmoid_fast) && return plain_layer("sigmoid")
    f === Flux.gelu_erf && return plain_layer("gelu")
    f === Flux.softplus && return plain_layer("softplus")
    f === Flux.leakyrelu && return plain_layer("leaky_relu", Dict("negative_slope" => 0.01))
    f === Flux.elu && return plain_layer("elu", Dict("alpha" => 1.0))
    f === Flux.softmax && return plain_layer("softmax")
    f === Flux.logsoftmax && return plain_layer("log_softmax")
    f in (Flux.flatten, Flux.MLUtils.flatten) && return plain_layer("flatten")
    f === Flux.gelu && throw(ArgumentError("NNlib's gelu is the tanh approximation; the vocabulary's gelu is " *
                                           "the exact one (NNlib.gelu_erf)"))
    throw(ArgumentError("the function $f is not in the layer vocabulary"))
end

function activation_layers(f)
    exported = activation_layer(f)
    return exported === nothing ? ExportedLayer[] : ExportedLayer[exported]
end

"""
    export_layer(layer) -> Vector{ExportedLayer}

The vocabulary layers (one, or two for a Flux layer with an activation) computing a Flux layer,
with their parameters in storage layout; throws `ArgumentError` if there are none.
"""
function export_layer(l::Flux.Dense)
    params = Dict{String,Any}("in_features" => size(l.weight, 2), "out_features" => size(l.weight, 1))
    tensors = Pair{String,Array}["weight" => permutedims(l.weight)]
    l.bias isa AbstractArray ? push!(tensors, "bias" => copy(l.bias)) : (params["bias"] = false)
    return ExportedLayer[(Layer("linear", params), tensors); activation_layers(l.σ)]
end

# Flux keeps `pad` as (lo₁, hi₁, lo₂, hi₂) over (W, H), or as one value per spatial axis.
function spec_padding(pad::Tuple)
    length(pad) == 4 && return [pad[3], pad[4], pad[1], pad[2]]
    length(pad) == 2 && return [pad[2], pad[2], pad[1], pad[1]]
    throw(ArgumentError("padding $pad is not for two spatial axes"))
end

function export_convolution(l, flipped::Bool, groups::Integer)
    ndims(l.weight) == 4 || throw(ArgumentError("only 2-d convolutions (4-d kernels) are in the vocabulary"))
    weight_storage = flipped ? l.weight[end:-1:1, end:-1:1, :, :] : copy(l.weight)
    kw, kh, c_group, c_out = size(l.weight)
    params = Dict{String,Any}("in_channels" => c_group * groups, "out_channels" => c_out, "kernel_size" => [kh, kw],
                              "stride" => [l.stride[2], l.stride[1]], "padding" => spec_padding(l.pad),
                              "dilation" => [l.dilation[2], l.dilation[1]], "groups" => groups)
    tensors = Pair{String,Array}["weight" => weight_storage]
    l.bias isa AbstractArray ? push!(tensors, "bias" => copy(l.bias)) : (params["bias"] = false)
    return ExportedLayer[(Layer("conv2d", params), tensors); activation_layers(l.σ)]
end

# A Flux Conv convolves (its kernel is flipped relative to SPEC §4's cross-correlation); CrossCor does not.
export_layer(l::Flux.Conv) = export_convolution(l, true, l.groups)
export_layer(l::Flux.CrossCor) = export_convolution(l, false, 1)

function export_pool(type, l)
    length(l.k) == 2 || throw(ArgumentError("only 2-d pooling is in the vocabulary"))
    params = Dict{String,Any}("kernel_size" => [l.k[2], l.k[1]], "stride" => [l.stride[2], l.stride[1]],
                              "padding" => spec_padding(l.pad))
    return ExportedLayer[(Layer(type, params), Pair{String,Array}[])]
end

export_layer(l::Flux.MaxPool) = export_pool("max_pool2d", l)
export_layer(l::Flux.MeanPool) = export_pool("avg_pool2d", l)

# Flux's Embedding reads 1-based indices; the vocabulary's reads 0-based ones, so the exported
# layer is meant for indices one lower. A padding index gives zero vectors: its column is zeroed.
function export_layer(l::Flux.Embedding)
    weight = copy(l.weight)
    padding = hasproperty(l, :padding_idx) ? l.padding_idx : nothing
    padding === nothing || (weight[:, padding] .= 0)
    params = Dict{String,Any}("num_embeddings" => size(weight, 2), "embedding_dim" => size(weight, 1))
    return ExportedLayer[(Layer("embedding", params), Pair{String,Array}["weight" => weight])]
end

export_layer(l::ZeroBasedEmbedding) = export_layer(l.embedding)

function export_layer(l::Flux.LayerNorm)
    l.λ === identity || throw(ArgumentError("a LayerNorm with an activation is not in the vocabulary"))
    ns = reverse(collect(Int, l.size))
    params = Dict{String,Any}("normalized_shape" => ns, "eps" => spec_float(l.ϵ))
    if l.diag isa Flux.Scale
        bias = l.diag.bias isa AbstractArray ? copy(l.diag.bias) : zero(l.diag.scale)
        return ExportedLayer[(Layer("layer_norm", params), Pair{String,Array}["weight" => copy(l.diag.scale), "bias" => bias])]
    end
    params["elementwise_affine"] = false
    return ExportedLayer[(Layer("layer_norm", params), Pair{String,Array}[])]
end

function export_layer(l::TorchLayerNorm)
    params = Dict{String,Any}("normalized_shape" => reverse(collect(Int, l.shape)), "eps" => spec_float(l.eps))
    if l.weight === nothing
        params["elementwise_affine"] = false
        return ExportedLayer[(Layer("layer_norm", params), Pair{String,Array}[])]
    end
    return ExportedLayer[(Layer("layer_norm", params), Pair{String,Array}["weight" => copy(l.weight), "bias" => copy(l.bias)])]
end

function lstm_layer(weight_ih, weight_hh, bias_ih, bias_hh)
    params = Dict{String,Any}("input_size" => size(weight_ih, 2), "hidden_size" => size(weight_hh, 2))
    tensors = Pair{String,Array}["weight_ih_l0" => permutedims(weight_ih), "weight_hh_l0" => permutedims(weight_hh),
                                 "bias_ih_l0" => copy(bias_ih), "bias_hh_l0" => copy(bias_hh)]
    return ExportedLayer[(Layer("lstm", params), tensors)]
end

export_layer(l::TorchLSTM) = lstm_layer(l.weight_ih, l.weight_hh, l.bias_ih, l.bias_hh)

# Flux's LSTM has one bias (PyTorch's two summed); it becomes bias_ih, with bias_hh zero.
function export_layer(l::Flux.LSTM)
    l isa Flux.LSTM{false} || throw(ArgumentError("an LSTM with return_state=true returns a tuple"))
    cell = l.cell
    bias = cell.bias isa AbstractArray ? cell.bias : zeros(eltype(cell.Wi), size(cell.Wi, 1))
    return lstm_layer(cell.Wi, cell.Wh, bias, zero(bias))
end

function export_layer(l::Flux.Dropout)
    l.dims === Colon() || throw(ArgumentError("dropout along dimensions is not in the vocabulary"))
    return ExportedLayer[plain_layer("dropout", Dict("p" => spec_float(l.p)))]
end

function export_layer(l::Activation)
    name = String(l.name)
    l.param === nothing && return ExportedLayer[plain_layer(name)]
    key = name == "leaky_relu" ? "negative_slope" : "alpha"
    return ExportedLayer[plain_layer(name, Dict(key => spec_float(l.param)))]
end

export_layer(l::SoftmaxLayer) = ExportedLayer[plain_layer(l.log ? "log_softmax" : "softmax")]
export_layer(::FlattenLayer) = ExportedLayer[plain_layer("flatten")]
export_layer(::LastStep) = ExportedLayer[plain_layer("last_step")]
export_layer(::NoLayers) = ExportedLayer[]
export_layer(c::Flux.Chain) = ExportedLayer[x for layer in c.layers for x in export_layer(layer)]
export_layer(f::Function) = activation_layers(f)
export_layer(l) = throw(ArgumentError("$(typeof(l)) is not a layer of the vocabulary"))

function export_chain(layers, path::AbstractString)
    arch_layers = Layer[]
    tensors = Dict{String,Array}()
    for (i, layer) in enumerate(layers)
        exported = try
            export_layer(layer)
        catch err
            err isa ArgumentError || rethrow()
            unsupported_layer(i, layer, err.msg)
        end
        for (spec, params) in exported
            push!(arch_layers, spec)
            for (name, value) in params
                tensors["$path.$(length(arch_layers) - 1).$name"] = value
            end
        end
    end
    return arch_layers, tensors
end

chain_layers(c::Flux.Chain) = Any[x for layer in c.layers for x in chain_layers(layer)]
chain_layers(layer) = Any[layer]

"""
    export_model(model) -> (Architecture, Dict{String,Array})

The architecture computing a Flux model (a `Flux.Chain` of supported layers, nested chains
flattened, or a [`ProductModel`](@ref)) and its parameters under canonical paths
(`"layers.0.weight"`, `"inputs.1.0.weight"`), in storage layout. Supported: Dense, Conv and
CrossCor (2-d), MaxPool, MeanPool, Embedding (which then reads 0-based indices), LayerNorm,
LSTM, Dropout, the activations of the vocabulary as functions or in a layer's `σ`
(`relu`, `tanh`, `σ`, `gelu_erf`, `softplus`, `leakyrelu`, `elu`, `softmax`, `logsoftmax`,
`Flux.flatten`), and this package's own layers. Anything else is a [`DiagramError`](@ref)
`invalid-layer` at `/layers/<i>`.
"""
function export_model(model::ProductModel)
    inputs = Vector{Layer}[]
    tensors = Dict{String,Array}()
    for (k, branch) in enumerate(model.branches)
        layers, params = export_chain(chain_layers(branch), "inputs.$(k - 1)")
        push!(inputs, layers)
        merge!(tensors, params)
    end
    layers, params = export_chain(chain_layers(model.trunk), "layers")
    merge!(tensors, params)
    return Architecture(layers, inputs, String(model.combine)), tensors
end

function export_model(model)
    layers, tensors = export_chain(chain_layers(model), "layers")
    return Architecture(layers), tensors
end
