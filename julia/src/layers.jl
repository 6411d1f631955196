# The layer vocabulary's metadata (SPEC §4): defaults (from the schema, vocabulary.jl), shape rules,
# parameter shapes. No numerics;
# the same rules as the Python library's layers.py. A value type is `(shape, dtype)` with the
# logical per-example shape and dtype `"float"` or `"int64"`.

const ValueType = Tuple{Vector{Int},String}

const ELEMENTWISE_LAYERS = ("relu", "tanh", "sigmoid", "gelu", "softplus", "identity", "leaky_relu", "elu", "dropout")

"""
    LayerError(code, message)

A layer (or combine step) that does not fit its input; `code` is a SPEC §10 code.
"""
struct LayerError <: Exception
    code::String
    message::String
end

Base.showerror(io::IO, e::LayerError) = print(io, e.message, " [", e.code, "]")

"""
    full_params(layer::Layer) -> Dict{String,Any}

The layer's parameters with every default filled in (SPEC §4).
"""
function full_params(layer::Layer)
    params = Dict{String,Any}(k => schema_default_value(v) for (k, v) in layer_defaults(layer.type))  # a fresh copy
    for (k, v) in layer.params
        startswith(k, "x-") || (params[k] = v)
    end
    if layer.type in ("max_pool2d", "avg_pool2d") && !haskey(params, "stride")
        params["stride"] = params["kernel_size"]
    end
    return params
end

# Integers clamped to Int's range as `json_int` does: a literal too large for Int64 (read as a
# BigInt) gives a checkable value instead of an `InexactError` escaping the checks.
param_int(p::AbstractDict, key) = json_int(p[key])
param_ints(p::AbstractDict, key) = json_ints(p[key])
param_float(p::AbstractDict, key) = Float64(p[key])

"""
    parameter_shapes(layer::Layer) -> Vector{Pair{String,Vector{Int}}}

The parameter tensors a layer owns, by canonical name (`weight`, `bias`, `weight_ih_l0`, …),
with their logical (PyTorch) shapes, in canonical order.
"""
function parameter_shapes(layer::Layer)
    p = full_params(layer)
    t = layer.type
    if t == "linear"
        out = ["weight" => [param_int(p, "out_features"), param_int(p, "in_features")]]
        p["bias"] === true && push!(out, "bias" => [param_int(p, "out_features")])
        return out
    elseif t == "conv2d"
        kh, kw = param_ints(p, "kernel_size")
        cout = param_int(p, "out_channels")
        out = ["weight" => [cout, param_int(p, "in_channels") ÷ param_int(p, "groups"), kh, kw]]
        p["bias"] === true && push!(out, "bias" => [cout])
        return out
    elseif t == "embedding"
        return ["weight" => [param_int(p, "num_embeddings"), param_int(p, "embedding_dim")]]
    elseif t == "layer_norm"
        p["elementwise_affine"] === true || return Pair{String,Vector{Int}}[]
        ns = param_ints(p, "normalized_shape")
        return ["weight" => ns, "bias" => copy(ns)]
    elseif t == "lstm"
        h, i = param_int(p, "hidden_size"), param_int(p, "input_size")
        gates = json_int(4 * big(h))  # saturates: the parameter count (BigInt) then exceeds any limit
        return ["weight_ih_l0" => [gates, i], "weight_hh_l0" => [gates, h], "bias_ih_l0" => [gates], "bias_hh_l0" => [gates]]
    end
    return Pair{String,Vector{Int}}[]
end

# Shape arithmetic on declared sizes is exact, as Python's is: in BigInt, the result saturating at
# Int's range (json_int). Declared sizes are at most 2^53 − 1 (SPEC §1), but `dilation · kernel`,
# a flattened size or a sum of concatenated sizes can pass 2^63 and would wrap around in Int;
# a saturated size exceeds every declared one, so it fails the same comparisons as Python's
# exact value (only the message shows typemax(Int) instead).
# Python's `//` rounds toward −∞, so does `fld`; `div` would not for a negative numerator.
pool_or_conv_out(size, pad_low, pad_high, kernel, stride, dilation) =
    json_int(fld(big(size) + pad_low + pad_high - big(dilation) * (kernel - 1) - 1, stride) + 1)

"""
    layer_output(layer::Layer, vt::ValueType) -> ValueType

The value type a layer returns for input type `vt`; throws [`LayerError`](@ref) if it does not fit.
"""
function layer_output(layer::Layer, vt::ValueType)
    t = layer.type
    p = full_params(layer)
    shape, dtype = vt
    if t == "embedding"
        dtype == "int64" || throw(LayerError("dtype-mismatch", "embedding needs an int64 input, got $dtype"))
        return ([shape; param_int(p, "embedding_dim")], "float")
    end
    dtype == "float" || throw(LayerError("dtype-mismatch", "$t needs a float input, got $dtype"))
    t in ELEMENTWISE_LAYERS && return vt
    if t in ("softmax", "log_softmax")
        isempty(shape) && throw(LayerError("shape-mismatch", "$t needs at least one axis, got a scalar"))
        return vt
    elseif t == "linear"
        (isempty(shape) || shape[end] != param_int(p, "in_features")) &&
            throw(LayerError("shape-mismatch", "linear expects last axis $(p["in_features"]), got shape $shape"))
        return ([shape[1:end-1]; param_int(p, "out_features")], "float")
    elseif t == "flatten"
        return ([json_int(prod(big, shape; init = big(1)))], "float")
    elseif t == "last_step"
        length(shape) == 2 || throw(LayerError("shape-mismatch", "last_step expects [L, F], got shape $shape"))
        return (shape[2:2], "float")
    elseif t == "layer_norm"
        ns = param_ints(p, "normalized_shape")
        (length(shape) < length(ns) || shape[end-length(ns)+1:end] != ns) &&
            throw(LayerError("shape-mismatch", "layer_norm over $ns does not fit shape $shape"))
        return vt
    elseif t == "lstm"
        (length(shape) != 2 || shape[2] != param_int(p, "input_size")) &&
            throw(LayerError("shape-mismatch", "lstm expects [L, $(p["input_size"])], got shape $shape"))
        return ([shape[1], param_int(p, "hidden_size")], "float")
    elseif t in ("conv2d", "max_pool2d", "avg_pool2d")
        length(shape) == 3 || throw(LayerError("shape-mismatch", "$t expects [C, H, W], got shape $shape"))
        c, h, w = shape
        kh, kw = param_ints(p, "kernel_size")
        sh, sw = param_ints(p, "stride")
        top, bottom, left, right = param_ints(p, "padding")
        dh, dw = haskey(p, "dilation") ? param_ints(p, "dilation") : [1, 1]
        if t == "conv2d"
            groups = param_int(p, "groups")
            (param_int(p, "in_channels") % groups != 0 || param_int(p, "out_channels") % groups != 0) &&
                throw(LayerError("invalid-layer", "groups=$groups must divide in_channels=$(p["in_channels"]) " *
                                                  "and out_channels=$(p["out_channels"])"))
            c == param_int(p, "in_channels") ||
                throw(LayerError("shape-mismatch", "conv2d expects $(p["in_channels"]) channels, got shape $shape"))
            c = param_int(p, "out_channels")
        elseif top >= kh || bottom >= kh || left >= kw || right >= kw
            throw(LayerError("invalid-layer", "$t padding [$top, $bottom, $left, $right] must be smaller " *
                                              "than the kernel [$kh, $kw] on each side"))
        end
        ho = pool_or_conv_out(h, top, bottom, kh, sh, dh)
        wo = pool_or_conv_out(w, left, right, kw, sw, dw)
        (ho < 1 || wo < 1) &&
            throw(LayerError("shape-mismatch", "$t with kernel [$kh, $kw] leaves no output for input $shape"))
        return ([c, ho, wo], "float")
    end
    throw(LayerError("bad-value", "unknown layer type $(repr(t))"))
end

"""
    combine_output(combine, types::Vector{ValueType}) -> ValueType

The value type of a combine step (SPEC §4); throws [`LayerError`](@ref) if the inputs do not fit.
"""
function combine_output(combine::AbstractString, types::Vector{ValueType})
    for (_, d) in types
        d == "float" || throw(LayerError("dtype-mismatch", "$combine needs float inputs, got $d"))
    end
    shapes = [s for (s, _) in types]
    if combine == "add"
        all(s -> s == shapes[1], shapes) || throw(LayerError("shape-mismatch", "add needs equal shapes, got $shapes"))
        return (shapes[1], "float")
    elseif combine == "concat"
        (any(isempty, shapes) || any(s -> s[1:end-1] != shapes[1][1:end-1], shapes)) &&
            throw(LayerError("shape-mismatch", "concat needs shapes equal but for the last axis, got $shapes"))
        return ([shapes[1][1:end-1]; json_int(sum(big(s[end]) for s in shapes))], "float")
    elseif combine == "prepend"
        (length(shapes) != 2 || length(shapes[1]) != 1 || length(shapes[2]) != 2 || shapes[1][1] != shapes[2][2]) &&
            throw(LayerError("shape-mismatch", "prepend needs [F] and [L, F], got $shapes"))
        return ([json_int(big(shapes[2][1]) + 1), shapes[1][1]], "float")
    end
    throw(LayerError("bad-value", "unknown combine $(repr(combine))"))
end

"""
    architecture_parameter_shapes(arch::Architecture) -> Vector{Pair{String,Vector{Int}}}

Parameter paths within one architecture (SPEC §8), e.g. `"layers.0.weight" => [out, in]`,
input branches first, in canonical order.
"""
function architecture_parameter_shapes(arch::Architecture)
    out = Pair{String,Vector{Int}}[]
    if arch.inputs !== nothing
        for (k, branch) in enumerate(arch.inputs), (i, layer) in enumerate(branch)
            for (name, shape) in parameter_shapes(layer)
                push!(out, "inputs.$(k - 1).$(i - 1).$name" => shape)
            end
        end
    end
    for (i, layer) in enumerate(arch.layers), (name, shape) in parameter_shapes(layer)
        push!(out, "layers.$(i - 1).$name" => shape)
    end
    return out
end
