# The gradient of a diagram's loss (SPEC §9.1) under canonical parameter names: what the
# conformance suite's `gradients.safetensors` holds. Zygote differentiates the loss with respect
# to one flat vector of every model's parameters (`Flux.destructure`); rebuilding the models
# from the gradient vector and exporting them (`export_model`, the same linear maps as for
# weights: transposes, kernel flips) gives each gradient in storage layout under its canonical name.

"""
    evaluation_mode(models)

`models` with every `Flux.Dropout` replaced by an inactive copy (dropout the identity), sharing all
parameter arrays; the models themselves are not changed.
"""
evaluation_mode(models) =
    Flux.fmap(d -> Flux.Dropout(d.p, d.dims, false, d.rng), models; exclude = x -> x isa Flux.Dropout)

"""
    loss_gradients(c::CompiledDiagram, batch) -> Dict{String,Array}

The gradient of the total loss on `batch` (a [`Batch`](@ref), a safetensors path or a dictionary
of columns) with respect to every parameter of every trainable architecture model arrow, by
canonical name (`student.layers.0.weight`), in storage layout and the compute dtype, taken in
evaluation mode (dropout the identity, SPEC §9.1). Frozen and external arrows have no entries;
a parameter that no equation reaches gets zeros; `stop_gradient` arrows pass no gradient.
"""
function loss_gradients(c::CompiledDiagram{T}, batch) where {T}
    prepared = batch isa Batch ? batch : load_batch(c, batch)
    flat, rebuild = Flux.destructure(evaluation_mode(c.models))
    grad = Flux.gradient(v -> diagram_loss(rebuild(v), c, prepared), flat)[1]
    gradient_models = rebuild(grad === nothing ? zero(flat) : grad)
    out = Dict{String,Array}()
    for a in model_arrows(c.diagram)
        (a.trainable && !a.external) || continue
        _, tensors = export_model(getfield(gradient_models, Symbol(a.name)))
        for (path, value) in tensors
            out["$(a.name).$path"] = Array{T}(value)
        end
    end
    return out
end

"""
    gradient_files(diagram, weights, batch; dtype=Float64) -> (Evaluation, Dict{String,Array})

Read a diagram, its weights and a batch from files (as [`evaluate_files`](@ref)), and return the
evaluation and [`loss_gradients`](@ref): the conformance suite's protocol for gradients.
"""
function gradient_files(diagram::AbstractString, weights::AbstractString, batch::AbstractString;
                        dtype::Type{<:AbstractFloat} = Float64)
    c = compile_diagram(load_diagram(diagram); weights = weights, dtype = dtype)
    prepared = load_batch(c, batch)
    return evaluate_diagram(c, prepared), loss_gradients(c, prepared)
end
