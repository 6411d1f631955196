# Compiling a diagram to one Flux loss (SPEC §9): an evaluation plan holding every distinct
# subterm once (children first), the model arrows as Flux models, and the loss as a function of
# those models, differentiable with `Flux.gradient`. Nothing on the differentiated path mutates
# an array: term values are collected in a tuple that grows by one per plan step.

"""
    DataStep(column)

A data arrow in an evaluation plan: the position of its batch column in the plan's columns.
"""
struct DataStep
    column::Int
end

"""
    ModelStep(model, args, arrow, position, external, output_shape, index_checks)

A model arrow in an evaluation plan: the position of its model in the compiled models, the plan
positions of its arguments, its name and 0-based declaration position, whether it is external
(then its output must have the logical shape `output_shape` per example), and the embedding
inputs to check: `(argument, num_embeddings, column)` for every chain that starts with an embedding.
"""
struct ModelStep{N}
    model::Int
    args::NTuple{N,Int}
    arrow::String
    position::Int
    external::Bool
    output_shape::Vector{Int}
    index_checks::Vector{Tuple{Int,Int,String}}
end

"""
    EquationStep(lhs, rhs, weight, distance)

An equation in an evaluation plan: the plan positions of its two terms, its weight and distance.
"""
struct EquationStep
    lhs::Int
    rhs::Int
    weight::Float64
    distance::DistanceSpec
end

"""
    Plan

How to evaluate a diagram's equations: `steps` computes each distinct subterm once, children
before parents (`terms[i]` is the term step `i` computes); `columns` are the batch columns read.
"""
struct Plan
    steps::Vector{Any}
    terms::Vector{Term}
    columns::Vector{String}
    equations::Vector{EquationStep}
end

function first_embedding(layers::Vector{Layer})
    (isempty(layers) || layers[1].type != "embedding") && return nothing
    return param_int(full_params(layers[1]), "num_embeddings")
end

leaf_column(d::Diagram, t::Term) = arrow_named(d, term_leaves(t)[1].arrow).column

function index_checks(d::Diagram, a::ModelArrow, t::Term)
    checks = Tuple{Int,Int,String}[]
    arch = a.architecture
    arch === nothing && return checks
    if arch.inputs !== nothing
        for (k, branch) in enumerate(arch.inputs)
            num = first_embedding(branch)
            num === nothing || push!(checks, (k, num, leaf_column(d, t.args[k])))
        end
    end
    if length(a.sources) == 1
        num = first_embedding(arch.layers)
        num === nothing || push!(checks, (1, num, leaf_column(d, t.args[1])))
    end
    return checks
end

function value_shape(d::Diagram, name::AbstractString)
    o = object_named(d, name)
    return o isa CategoricalObject ? [o.shape; o.classes] : copy(o.shape)
end

"""
    build_plan(d::Diagram, equations, model_positions::Dict{String,Int}) -> Plan

The evaluation plan of `equations`: every distinct subterm once, in the order first needed.
"""
function build_plan(d::Diagram, equations::Vector{Equation}, model_positions::Dict{String,Int})
    steps = Any[]
    terms = Term[]
    columns = String[]
    position = Dict{Term,Int}()
    function step_of(t::Term)
        for sub in subterms(t)
            haskey(position, sub) && continue
            push!(steps, plan_step(d, sub, position, columns, model_positions))
            push!(terms, sub)
            position[sub] = length(steps)
        end
        return position[t]
    end
    eqs = EquationStep[EquationStep(step_of(eq.lhs), step_of(eq.rhs), eq.weight, DistanceSpec(d, eq)) for eq in equations]
    return Plan(steps, terms, columns, eqs)
end

function plan_step(d::Diagram, t::Term, position::Dict{Term,Int}, columns::Vector{String}, model_positions)
    arrow = arrow_named(d, t.arrow)
    args = Tuple(position[a] for a in t.args)
    if arrow isa DataArrow
        k = findfirst(==(arrow.column), columns)
        k === nothing && (push!(columns, arrow.column); k = length(columns))
        return DataStep(k)
    elseif arrow isa FunctionArrow
        source = object_named(d, arrow.sources[1])
        p = merge(function_defaults(arrow.op), arrow.params)  # defaults from the schema
        return FunctionStep(Symbol(arrow.op), args, Float64(get(p, "factor", 1.0)), Float64(get(p, "eps", 0.0)),
                            Int[json_int(x) for x in get(p, "shape", Any[])],
                            source isa CategoricalObject ? source.classes : 0)
    end
    return ModelStep(model_positions[arrow.name], args, arrow.name, arrow_position(d, arrow.name), arrow.external,
                     value_shape(d, arrow.target), index_checks(d, arrow, t))
end

"""
    CompiledDiagram

A diagram compiled to Flux: its `diagram`, `equations` (canonical order), evaluation `plan` and
`models`, a `NamedTuple` of the model arrows' Flux models keyed by arrow name (external arrows
hold what was bound to them). The compute dtype is its type parameter. Differentiate the loss
with respect to `models`: `Flux.gradient(m -> diagram_loss(m, c, batch), c.models)`.
"""
struct CompiledDiagram{T<:AbstractFloat,M<:NamedTuple}
    diagram::Diagram
    equations::Vector{Equation}
    plan::Plan
    models::M
end

compute_dtype(::CompiledDiagram{T}) where {T} = T

function Base.show(io::IO, c::CompiledDiagram{T}) where {T}
    name = something(c.diagram.name, "diagram")
    print(io, "CompiledDiagram{$T}(", repr(name), ": ", length(c.equations), " equations, models ",
          join(keys(c.models), ", "), ")")
end

"""
    load_weights(d::Diagram, source) -> Dict{String,Array}

Weights for `d` from a safetensors path or a dictionary (canonical name → array in storage
layout), checked against the diagram (SPEC §8): all or nothing.
"""
function load_weights(d::Diagram, source::AbstractString)
    tensors = read_safetensors(source, "weights")
    check_weights(d, tensors, source)
    return tensors
end

function load_weights(d::Diagram, source::AbstractDict)
    tensors = Dict{String,AbstractArray}(String(k) => v for (k, v) in source)
    check_weights(d, tensors, "weights")
    return tensors
end

"""
    compile_diagram(d; weights=nothing, dtype=Float32, externals=Dict(), rng=Random.default_rng()) -> CompiledDiagram

Compile a diagram (a [`Diagram`](@ref) or a path to one) to Flux in compute dtype `dtype`
(`Float32` or `Float64`). `weights` is a safetensors path or a dictionary of canonical name →
array in storage layout; without it the parameters are drawn from `rng` as PyTorch initialises
them. `externals` binds each `external` model arrow to a callable (a Flux model or a function)
taking one array per source in storage layout, batch last. Frozen arrows (`trainable: false`)
are put in test mode (`Flux.testmode!`, SPEC §9), so their dropout is off in training too.
Throws [`DiagramError`](@ref): every weights code of SPEC §8, `external-unbound` for an
external arrow without a binding, `too-many-parameters` when the architectures hold more than
`max_parameters` parameters (default 2^28 or `ENV["DLEARN_MAX_PARAMETERS"]`), counted before
anything is allocated.
"""
function compile_diagram(d::Diagram; weights = nothing, dtype::Type{<:AbstractFloat} = Float32,
                         externals::AbstractDict = Dict{String,Any}(), rng::AbstractRNG = default_rng(),
                         max_parameters::Integer = default_max_parameters())
    check_parameter_count(d; max_parameters = max_parameters)  # before anything is allocated (SPEC §8)
    T = dtype
    equations = diagram_equations(d)
    tensors = weights === nothing ? nothing : load_weights(d, weights)
    names = Symbol[]
    models = Any[]
    positions = Dict{String,Int}()
    for a in model_arrows(d)
        if a.external
            binding = get(externals, a.name, nothing)
            binding === nothing &&
                throw(DiagramError("external-unbound", json_pointer("arrows", arrow_position(d, a.name)),
                                   "external model $(repr(a.name)) needs a binding: pass externals=Dict($(repr(a.name)) => model)"))
            push!(models, binding)
        else
            push!(models, build_model(a.architecture, T; inputs = length(a.sources), weights = tensors,
                                      prefix = "$(a.name).", rng = rng, max_parameters = max_parameters))
        end
        # SPEC §9: a frozen arrow is always in evaluation mode (its dropout inactive, even inside a
        # gradient); trainable arrows keep Flux's automatic mode (active only inside a gradient).
        a.trainable || Flux.testmode!(models[end])
        push!(names, Symbol(a.name))
        positions[a.name] = length(models)
    end
    bundle = NamedTuple{Tuple(names)}(Tuple(models))
    return CompiledDiagram{T,typeof(bundle)}(d, equations, build_plan(d, equations, positions), bundle)
end

compile_diagram(path::AbstractString; kwargs...) = compile_diagram(load_diagram(path); kwargs...)

"""
    Batch

A checked batch for one compiled diagram: its columns in the plan's order, in storage layout
(batch last), floats in the compute dtype and indices as `Int64`; `source` names it in errors.
"""
struct Batch
    columns::Vector{Any}
    source::String
end

"""
    load_batch(c::CompiledDiagram, source) -> Batch

A batch from a safetensors path or a dictionary (column name → array in storage layout, batch
last), checked against the diagram (SPEC §8) and converted to the compute dtype.
"""
function load_batch(c::CompiledDiagram{T}, source::AbstractString) where {T}
    return prepare_batch(c, read_safetensors(source, "batch"), source)
end

load_batch(c::CompiledDiagram, source::AbstractDict) =
    prepare_batch(c, Dict{String,AbstractArray}(String(k) => v for (k, v) in source), "batch")

function prepare_batch(c::CompiledDiagram{T}, columns::AbstractDict, source::AbstractString) where {T}
    check_batch(c.diagram, columns, source)
    converted = Any[]
    for name in c.plan.columns
        x = columns[name]
        push!(converted, eltype(x) <: Integer ? Array{Int64}(x) : Array{T}(x))
    end
    return Batch(converted, String(source))
end

run_step(step::DataStep, values, models, batch::Batch, ::Type{T}) where {T} = ignore_derivatives(() -> batch.columns[step.column])

run_step(step::FunctionStep, values, models, batch::Batch, ::Type{T}) where {T} =
    apply_function(step, map(k -> values[k], step.args), T)

function run_step(step::ModelStep, values, models, batch::Batch, ::Type{T}) where {T}
    xs = map(k -> values[k], step.args)
    ignore_derivatives(() -> check_embedding_indices(step, xs, batch))
    model = models[step.model]
    y = length(xs) == 1 ? model(xs[1]) : model(xs...)
    step.external && ignore_derivatives(() -> check_external_output(step, y, xs))
    return y
end

function check_embedding_indices(step::ModelStep, xs::Tuple, batch::Batch)
    for (k, num, column) in step.index_checks
        x = xs[k]
        isempty(x) && continue
        low, high = extrema(x)
        (low < 0 || high >= num) &&
            throw(DiagramError("batch-index-range", "$(batch.source)#$column",
                               "column $(repr(column)) has indices outside [0, $num) for an embedding"))
    end
end

function check_external_output(step::ModelStep, y, xs::Tuple)
    want = (reverse(step.output_shape)..., batch_size(xs[1]))
    (y isa AbstractArray && size(y) == want) && return
    got = y isa AbstractArray ? "size $(size(y))" : "a $(typeof(y))"
    throw(DiagramError("external-shape", json_pointer("arrows", step.position),
                       "external model $(repr(step.arrow)) returned $got; it must return size $want " *
                       "(logical [B] + $(step.output_shape), batch last)"))
end

"""
    term_values(models, c::CompiledDiagram, batch::Batch) -> Tuple

The value of every plan step (every distinct subterm of the equations), in plan order.
"""
function term_values(models, c::CompiledDiagram{T}, batch::Batch) where {T}
    values = ()
    for step in c.plan.steps
        values = (values..., run_step(step, values, models, batch, T))
    end
    return values
end

"""
    diagram_loss(c::CompiledDiagram, batch) -> T
    diagram_loss(models, c::CompiledDiagram, batch) -> T

The loss `Σ weightₖ · distanceₖ` over the equations in canonical order (SPEC §6.3), with the
compiled models or with `models` in their place: differentiate it with
`Flux.gradient(m -> diagram_loss(m, c, batch), c.models)`. `batch` is a [`Batch`](@ref), a
safetensors path or a dictionary of columns.
"""
diagram_loss(c::CompiledDiagram, batch) = diagram_loss(c.models, c, batch)

function diagram_loss(models, c::CompiledDiagram{T}, batch::Batch) where {T}
    values = term_values(models, c, batch)
    total = zero(T)
    for eq in c.plan.equations
        total += T(eq.weight) * distance_value(eq.distance, values[eq.lhs], values[eq.rhs], T)
    end
    return total
end

diagram_loss(models, c::CompiledDiagram, batch) = diagram_loss(models, c, load_batch(c, batch))

"""
    Evaluation

One evaluation of a diagram on a batch: `equations`, equation name => unweighted distance in
canonical order, and `total`, `Σ weight · distance`.
"""
struct Evaluation{T}
    equations::Vector{Pair{String,T}}
    total::T
end

"""
    evaluate_diagram(c::CompiledDiagram, batch) -> Evaluation

Every equation's unweighted distance and the total loss on a batch (a [`Batch`](@ref), a
safetensors path or a dictionary of columns). Dropout is the identity here (outside a gradient
Flux's `Dropout` is inactive), so the values are comparable across backends (SPEC §9).
"""
evaluate_diagram(c::CompiledDiagram, batch::Batch) = evaluation_of(c, term_values(c.models, c, batch))

"""
    evaluation_of(c::CompiledDiagram, values) -> Evaluation

The equations' distances and the total from the plan's term values (see [`term_values`](@ref)).
"""
function evaluation_of(c::CompiledDiagram{T}, values) where {T}
    equations = Pair{String,T}[]
    total = zero(T)
    for (eq, step) in zip(c.equations, c.plan.equations)
        value = distance_value(step.distance, values[step.lhs], values[step.rhs], T)
        push!(equations, eq.name => value)
        total += T(step.weight) * value
    end
    return Evaluation{T}(equations, total)
end

evaluate_diagram(c::CompiledDiagram, batch) = evaluate_diagram(c, load_batch(c, batch))

"""
    evaluate_files(diagram, weights, batch; dtype=Float64) -> Evaluation

Read a diagram, its weights and a batch from files, in that order (each checked before the
next is read), and evaluate: the conformance suite's protocol (conformance/README.md).
"""
function evaluate_files(diagram::AbstractString, weights::AbstractString, batch::AbstractString;
                        dtype::Type{<:AbstractFloat} = Float64, externals::AbstractDict = Dict{String,Any}())
    d = load_diagram(diagram)
    c = compile_diagram(d; weights = weights, dtype = dtype, externals = externals)
    return evaluate_diagram(c, load_batch(c, batch))
end

"""
    training_state(rule, c::CompiledDiagram)

`Flux.setup(rule, c.models)` with the frozen model arrows (`trainable: false`) frozen, so that
`Flux.update!` leaves them as they are; gradients still pass through them.
"""
function training_state(rule, c::CompiledDiagram)
    state = Flux.setup(rule, c.models)
    for a in model_arrows(c.diagram)
        a.trainable || Flux.freeze!(getfield(state, Symbol(a.name)))
    end
    return state
end

"""
    train_step!(c::CompiledDiagram, state, batch) -> loss

One optimisation step on a batch: the loss and its gradient with respect to `c.models`, then
`Flux.update!` with `state` from [`training_state`](@ref). Returns the loss before the step.
"""
function train_step!(c::CompiledDiagram, state, batch)
    prepared = batch isa Batch ? batch : load_batch(c, batch)
    loss, grads = Flux.withgradient(models -> diagram_loss(models, c, prepared), c.models)
    Flux.update!(state, c.models, grads[1])
    return loss
end

"""
    canonical_weights(c::CompiledDiagram) -> Dict{String,Array}

The current parameters of every architecture model under their canonical names (SPEC §8), in
storage layout; see [`save_weights`](@ref) to write them.
"""
function canonical_weights(c::CompiledDiagram)
    out = Dict{String,Array}()
    for a in model_arrows(c.diagram)
        a.external && continue
        _, tensors = export_model(getfield(c.models, Symbol(a.name)))
        for (path, value) in tensors
            out["$(a.name).$path"] = value
        end
    end
    return out
end

"""
    save_weights(c::CompiledDiagram, path)

Write the current parameters as a weights file (safetensors, canonical names and layouts, as the
PyTorch backend reads them), atomically.
"""
save_weights(c::CompiledDiagram, path::AbstractString) = write_safetensors(path, canonical_weights(c))
