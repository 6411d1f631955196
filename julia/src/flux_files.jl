# Flux models on disk: a JLD2 file holding `Flux.state` of the model together with the
# architecture it was built from (SPEC §4 JSON), so that it can be rebuilt anywhere, in Julia or,
# through its canonical weights, as a PyTorch module. The architecture is what makes the file
# loadable without the code that built the model.

const FLUX_MODEL_FORMAT = "diagrammatic-learning-flux-model"

"""
    check_architecture_json(arch; pointer="") -> Architecture

An architecture from its JSON form, checked against the format's JSON Schema (`#/\$defs/architecture`)
and, as a diagram document is, for numbers that are not finite and integers beyond ±(2^53 − 1)
(`bad-value`, SPEC §1: so that no declared size overflows `Int` when the shape rules multiply it);
a [`DiagramError`](@ref) with the codes of SPEC §10 otherwise.
"""
function check_architecture_json(arch; pointer::AbstractString = "")
    schema = loaded_schema()
    violations = schema_violations(arch, resolve_ref(schema, "#/\$defs/architecture"), schema)
    if !isempty(violations)
        problems = [Problem(get(KEYWORD_CODES, v.keyword, "bad-value"), pointer * json_pointer(v.path...),
                            violation_message(v)) for v in violations]
        throw(DiagramError(problems))
    end
    numbers = non_finite_problems(arch)
    isempty(numbers) || throw(DiagramError([Problem(p.code, pointer * p.pointer, p.message) for p in numbers]))
    return architecture_from_json(arch)
end

model_eltype(tensors::AbstractDict) = isempty(tensors) ? Float32 : eltype(first(values(tensors)))

"""
    save_flux_model(path, model; architecture=nothing, inputs=1)

Save a Flux model as a JLD2 file with its architecture: `model` is a `Flux.Chain` of supported
layers or a [`ProductModel`](@ref) (see [`export_model`](@ref)); `architecture` defaults to the
one exported from it. What is stored is `Flux.state` of the model rebuilt from that architecture
(one Flux layer per vocabulary layer), so [`load_flux_model`](@ref) can restore it exactly.
Written through a temporary file and a rename, as [`atomic_write`](@ref) writes: an existing
file keeps its mode, a symlink is written through, a folder or missing folder is `weights-file`.
"""
function save_flux_model(path::AbstractString, model; architecture::Union{Nothing,Architecture} = nothing,
                         inputs::Integer = model isa ProductModel ? length(model.branches) : 1)
    exported, tensors = export_model(model)
    arch = architecture === nothing ? exported : architecture
    canonical = build_model(arch, model_eltype(tensors); inputs = inputs, weights = tensors)
    # as atomic_write (tensorfiles.jl) does, but JLD2 writes by name: through a symlink, keeping the
    # target's mode, fsynced, renamed without `mv`'s removal of the target first
    target = write_target(path, "weights")
    folder = dirname(target)
    mode = target_mode(target)
    tmp = tempname(folder; cleanup = false) * ".jld2"
    try
        JLD2.jldopen(tmp, "w") do file
            file["format"] = FLUX_MODEL_FORMAT
            file["format_version"] = "1.0"
            file["architecture"] = json_text(architecture_json(arch))
            file["inputs"] = Int(inputs)
            file["model_state"] = Flux.state(canonical)
        end
        file_step(path, "weights") do
            open(sync_file, tmp, "r")  # before `set_mode`: the target's mode may not allow reading
            set_mode(tmp, mode)
            replace_file(tmp, target)
        end
    catch
        rm(tmp; force = true)
        rethrow()
    end
    sync_folder(folder)
    return path
end

"""
    load_flux_model(path; dtype=nothing) -> (model, architecture, inputs)

A Flux model saved by [`save_flux_model`](@ref): rebuilt from its architecture and filled with
`Flux.loadmodel!` from the saved state, in element type `dtype` (by default the saved one).
A file that is not such a model is a [`DiagramError`](@ref) `weights-file` naming it.
"""
function load_flux_model(path::AbstractString; dtype::Union{Nothing,Type{<:AbstractFloat}} = nothing)
    isfile(path) || throw(DiagramError("weights-file", path, "no such file: $path"))
    stored = try
        JLD2.jldopen(path, "r") do file
            missing_keys = [k for k in ("format", "architecture", "inputs", "model_state") if !haskey(file, k)]
            isempty(missing_keys) || return missing_keys
            (file["format"], file["architecture"], file["inputs"], file["model_state"])
        end
    catch err
        err isa InterruptException && rethrow()
        throw(DiagramError("weights-file", path, "$path is not a readable JLD2 file: $(sprint(showerror, err))"))
    end
    stored isa Vector{String} && throw(DiagramError("weights-file", "$path#$(stored[1])", "$path has no $(repr(stored[1]))"))
    format, arch_text, inputs, state = stored
    format == FLUX_MODEL_FORMAT || throw(DiagramError("weights-file", "$path#format", "$path is not a $FLUX_MODEL_FORMAT file"))
    arch = check_architecture_json(parse_document(arch_text; source = "$path#architecture"))
    T = dtype === nothing ? something(stored_eltype(state), Float32) : dtype
    model = build_model(arch, T; inputs = inputs)
    try
        Flux.loadmodel!(model, state)
    catch err
        err isa Union{ArgumentError,DimensionMismatch,ErrorException} || rethrow()
        throw(DiagramError("weights-file", "$path#model_state", "the saved state does not fit the architecture: " *
                                                                sprint(showerror, err)))
    end
    return model, arch, inputs
end

# The element type of the first float array in a saved state, or `nothing`.
stored_eltype(x::AbstractArray{<:AbstractFloat}) = eltype(x)
function stored_eltype(x::Union{Tuple,NamedTuple})
    for v in x
        T = stored_eltype(v)
        T === nothing || return T
    end
    return nothing
end
stored_eltype(x) = nothing
