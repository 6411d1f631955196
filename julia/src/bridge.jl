# Entry points for the Python bridge (`diagrammatic_learning.julia`), called through juliacall.
# They take plain arguments (strings, integers, NumPy arrays, which PythonCall passes as
# no-copy `PyArray`s, and Julia objects handed back) and return JSON text or tuples, so this
# package does not depend on PythonCall. Arrays from Python arrive in storage layout: the Python
# side passes `array.T`, a no-copy view of a row-major array with its axes reversed.
# A DiagramError becomes `{"ok": false, "problems": [...]}`; anything else propagates.

problems_json(err::DiagramError) =
    [Dict("code" => p.code, "pointer" => p.pointer, "message" => p.message) for p in err.problems]

"""
    bridge_call(f) -> String

Run `f()` and return `{"ok": true, "result": ...}` as JSON text, or `{"ok": false, "problems": [...]}`
if it threw a [`DiagramError`](@ref).
"""
function bridge_call(f)
    result = try
        f()
    catch err
        err isa DiagramError || rethrow()
        return json_text(Dict("ok" => false, "problems" => problems_json(err)))
    end
    return json_text(Dict("ok" => true, "result" => result))
end

"""
    bridge_value(f) -> Tuple

Run `f()` and return `(nothing, value)`, or `(problems_json, nothing)` if it threw a [`DiagramError`](@ref).
"""
function bridge_value(f)
    value = try
        f()
    catch err
        err isa DiagramError || rethrow()
        return (json_text(problems_json(err)), nothing)
    end
    return (nothing, value)
end

function parse_dtype(name::AbstractString)
    name == "float64" && return Float64
    name == "float32" && return Float32
    throw(ArgumentError("dtype must be \"float32\" or \"float64\", got $(repr(name))"))
end

evaluation_json(ev::Evaluation) =
    Dict("equations" => [Any[name, Float64(value)] for (name, value) in ev.equations], "total" => Float64(ev.total))

named(names_json::AbstractString, values) = Dict{String,Any}(zip(String.(parse_json(names_json)), values))

"""
    bridge_evaluate_files(diagram, weights, batch, dtype, external_names_json, externals...) -> String

[`evaluate_files`](@ref) for Python: equations as `[name, value]` pairs and the total, as JSON.
`externals` are Julia models handed back from Python, named by `external_names_json`.
"""
bridge_evaluate_files(diagram::AbstractString, weights::AbstractString, batch::AbstractString, dtype::AbstractString,
                      external_names_json::AbstractString = "[]", externals...) =
    bridge_call() do
        evaluation_json(evaluate_files(diagram, weights, batch; dtype = parse_dtype(dtype),
                                       externals = named(external_names_json, externals)))
    end

"""
    bridge_gradient_files(diagram, weights, batch, dtype, gradients_path) -> String

[`gradient_files`](@ref) for Python: writes the gradients to `gradients_path` (a safetensors file,
canonical names and layouts) and returns the evaluation as [`bridge_evaluate_files`](@ref) does.
"""
bridge_gradient_files(diagram::AbstractString, weights::AbstractString, batch::AbstractString, dtype::AbstractString,
                      gradients_path::AbstractString) =
    bridge_call() do
        ev, grads = gradient_files(diagram, weights, batch; dtype = parse_dtype(dtype))
        write_safetensors(gradients_path, grads)
        evaluation_json(ev)
    end

"""
    bridge_evaluate_arrays(diagram_json, dtype, weight_names_json, batch_names_json, external_names_json, items...) -> String

Evaluate a diagram given as JSON text on in-memory weights and batch columns (arrays in storage
layout), then externals, all passed positionally in the order of the three name lists.
"""
function bridge_evaluate_arrays(diagram_json::AbstractString, dtype::AbstractString, weight_names_json::AbstractString,
                                batch_names_json::AbstractString, external_names_json::AbstractString, items...)
    return bridge_call() do
        weight_names = String.(parse_json(weight_names_json))
        batch_names = String.(parse_json(batch_names_json))
        nw, nb = length(weight_names), length(batch_names)
        weights = Dict{String,Any}(zip(weight_names, items[1:nw]))
        columns = Dict{String,Any}(zip(batch_names, items[nw+1:nw+nb]))
        externals = named(external_names_json, items[nw+nb+1:end])
        d = parse_diagram(diagram_json)
        c = compile_diagram(d; weights = weights, dtype = parse_dtype(dtype), externals = externals)
        evaluation_json(evaluate_diagram(c, columns))
    end
end

"""
    bridge_evaluate_accuracy(diagram_json, dtype, weight_names_json, batch_names_json, equation_names_json, items...) -> String

[`bridge_evaluate_arrays`](@ref) without externals, adding `"hits"`: for each equation named in
`equation_names_json` (those whose right-hand side is a label column), `[right, count]` of its
top-1 predictions ([`evaluate_with_hits`](@ref)).
"""
function bridge_evaluate_accuracy(diagram_json::AbstractString, dtype::AbstractString,
                                  weight_names_json::AbstractString, batch_names_json::AbstractString,
                                  equation_names_json::AbstractString, items...)
    return bridge_call() do
        weight_names = String.(parse_json(weight_names_json))
        batch_names = String.(parse_json(batch_names_json))
        nw, nb = length(weight_names), length(batch_names)
        weights = Dict{String,Any}(zip(weight_names, items[1:nw]))
        columns = Dict{String,Any}(zip(batch_names, items[nw+1:nw+nb]))
        d = parse_diagram(diagram_json)
        c = compile_diagram(d; weights = weights, dtype = parse_dtype(dtype))
        ev, hits = evaluate_with_hits(c, load_batch(c, columns), Set(String.(parse_json(equation_names_json))))
        result = Dict{String,Any}(evaluation_json(ev))
        result["hits"] = Dict{String,Any}(name => Any[right, n] for (name, (right, n)) in hits)
        result
    end
end

"""
    bridge_build_model(architecture_json, dtype, inputs, weight_names_json, weights...) -> (problems, model)

A Flux model from an architecture (JSON text) and canonical weights by path (`layers.0.weight`),
arrays in storage layout; with no weights, a fresh PyTorch-style initialisation.
"""
function bridge_build_model(architecture_json::AbstractString, dtype::AbstractString, inputs::Integer,
                            weight_names_json::AbstractString, weights...)
    return bridge_value() do
        arch = check_architecture_json(parse_document(architecture_json; source = "the architecture"))
        names = String.(parse_json(weight_names_json))
        tensors = isempty(names) ? nothing : Dict{String,Any}(zip(names, weights))
        tensors === nothing || check_tensors(architecture_parameter_shapes(arch), tensors, "weights")
        build_model(arch, parse_dtype(dtype); inputs = inputs, weights = tensors)
    end
end

"""
    bridge_export_model(model, weights_path) -> (problems, architecture_json)

The architecture of a Flux model as JSON text; its canonical weights are written to
`weights_path` (safetensors, logical layout).
"""
function bridge_export_model(model, weights_path::AbstractString)
    return bridge_value() do
        arch, tensors = export_model(model)
        write_safetensors(weights_path, tensors)
        json_text(architecture_json(arch))
    end
end

"""
    bridge_save_flux_model(path, model, inputs) -> (problems, path)

[`save_flux_model`](@ref) for Python.
"""
bridge_save_flux_model(path::AbstractString, model, inputs::Integer) =
    bridge_value(() -> save_flux_model(path, model; inputs = inputs))

"""
    bridge_load_flux_model(path, dtype) -> (problems, (model, architecture_json, inputs, dtype))

[`load_flux_model`](@ref) for Python; `dtype` `""` keeps the saved element type. The reply
names the element type the model has (`"float32"` or `"float64"`).
"""
function bridge_load_flux_model(path::AbstractString, dtype::AbstractString)
    return bridge_value() do
        model, arch, inputs = load_flux_model(path; dtype = isempty(dtype) ? nothing : parse_dtype(dtype))
        T = something(stored_eltype(Flux.state(model)), Float32)
        (model, json_text(architecture_json(arch)), inputs, dtype_name(T))
    end
end

bridge_array(x::AbstractArray, ::Type{T}) where {T} = eltype(x) <: Integer ? Array{Int64}(x) : Array{T}(x)

"""
    with_mode(f, model, training::Bool)

`f()` with the model's Dropout layers in PyTorch's mode: active when `training` (PyTorch's
`train()`), inactive otherwise (`eval()`), whether or not inside a gradient; Flux's automatic
mode (active only inside a gradient) is restored afterwards.
"""
function with_mode(f, model, training::Bool)
    Flux.testmode!(model, !training)
    try
        return f()
    finally
        Flux.testmode!(model, :auto)
    end
end

apply_model(model, xs...) = length(xs) == 1 ? model(xs[1]) : model(xs...)

"""
    bridge_forward(model, dtype, inputs...; training=false) -> Array

The model applied to one batch per source (storage layout, batch last), floats in `dtype`, in
PyTorch's `train()` (`training = true`) or `eval()` mode (see [`with_mode`](@ref)).
"""
function bridge_forward(model, dtype::AbstractString, inputs...; training::Bool = false)
    T = parse_dtype(dtype)
    xs = map(x -> bridge_array(x, T), inputs)
    return with_mode(() -> apply_model(model, xs...), model, training)
end

"""
    bridge_forward_pullback(model, dtype, inputs...; training=false) -> (Array, pullback)

The forward pass and its pullback together, for a backward pass that must see the forward
pass's own random numbers (Dropout in training mode): give the pullback to
[`bridge_pullback`](@ref) later.
"""
function bridge_forward_pullback(model, dtype::AbstractString, inputs...; training::Bool = false)
    T = parse_dtype(dtype)
    xs = map(x -> bridge_array(x, T), inputs)
    y, back = with_mode(() -> Flux.pullback((args...) -> apply_model(model, args...), xs...), model, training)
    return (y, BridgePullback(back, T))
end

"""
    BridgePullback

A pullback and the float type of its gradients, kept by Python between the forward and the
backward pass (one Julia object, so juliacall hands it back unchanged).
"""
struct BridgePullback{F}
    back::F
    T::Type
end

"""
    bridge_pullback(pullback, output_gradient) -> Vector

The input gradients from a pullback returned by [`bridge_forward_pullback`](@ref) (`nothing`
for integer inputs).
"""
bridge_pullback(pullback::BridgePullback, output_gradient) =
    collect(Any, pullback.back(Array{pullback.T}(output_gradient)))

"""
    bridge_input_gradients(model, dtype, output_gradient, inputs...; training=false) -> Vector

The gradient of `⟨output_gradient, model(inputs...)⟩` with respect to each input (`nothing` for
integer inputs): the backward pass of a Flux model used inside a PyTorch graph. The forward pass
is recomputed, in evaluation mode unless `training` (then Dropout draws a new mask: use
[`bridge_forward_pullback`](@ref) instead).
"""
function bridge_input_gradients(model, dtype::AbstractString, output_gradient, inputs...; training::Bool = false)
    T = parse_dtype(dtype)
    xs = map(x -> bridge_array(x, T), inputs)
    _, back = with_mode(() -> Flux.pullback((args...) -> apply_model(model, args...), xs...), model, training)
    return collect(Any, back(Array{T}(output_gradient)))
end
