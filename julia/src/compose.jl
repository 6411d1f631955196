# Composing diagrams, as in the Python library (python/diagrammatic_learning/compose.py, whose
# docstring is the full statement of the rules): gluing two diagrams along a common part (a pushout),
# disjoint union, renaming, namespacing, restriction to a sub-diagram, swapping a model, and moving
# weights to new names. Every operation returns a new, checked `Diagram` and leaves its inputs alone.
#
# Defines: `composed_document`, `Along`, `parse_along`, `Gluing`, `gluing`, `glue`, `disjoint_union`, `rename_diagram`,
# `namespace_diagram`, `restrict_diagram`, `replace_model`, `rename_weights`, `rename_term_text`,
# `glued_weights`.
#
# Needs from the main module (included before this file):
#   diagram.jl    `Diagram` and its positional constructor, `DataObject`, `TensorObject`,
#                 `CategoricalObject`, `DataArrow`, `FunctionArrow`, `ModelArrow`, `Architecture`,
#                 `Layer`, `Distance`, `ExplicitEquation`, `object_kind`, `arrow_kind`,
#                 `object_distance_field`, `is_float`, `has_object`, `has_arrow`, `object_named`,
#                 `arrow_named`, `distance_json`, `architecture_json`
#   errors.jl     `Problem`, `DiagramError`, `json_pointer`
#   terms.jl      `Term`, `parse_term`, `term_arrows`
#   layers.jl     `full_params`
#   distances.jl  `full_distance`, `DEFAULT_DISTANCE`
#   validate.jl   `load_diagram(doc::AbstractDict)`: checks a document and returns its `Diagram`
#                 (every result goes through it, so a composed diagram is exactly as valid as a file)

const COMPOSE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
const COMPOSE_MAX_NAME = 64

# ----------------------------------------------------------------------------- building diagrams

object_document(o::DataObject) = Dict{String,Any}("name" => o.name, "kind" => "data")
function object_document(o::Union{TensorObject,CategoricalObject})
    doc = Dict{String,Any}("name" => o.name, "kind" => object_kind(o), "shape" => o.shape)
    o isa TensorObject ? (doc["dtype"] = o.dtype) : (doc["classes"] = o.classes)
    o.distance === nothing || (doc["distance"] = distance_json(o.distance))
    return doc
end

function arrow_document(a::Arrow)
    doc = Dict{String,Any}("name" => a.name, "kind" => arrow_kind(a), "target" => a.target,
                           "source" => length(a.sources) == 1 ? a.sources[1] : a.sources)
    if a isa DataArrow
        doc["column"] = a.column
        a.encoding === nothing || (doc["encoding"] = a.encoding)
    elseif a isa FunctionArrow
        merge!(doc, a.params)
        doc["op"] = a.op
    else
        doc["trainable"] = a.trainable
        a.external ? (doc["external"] = true) : (doc["architecture"] = architecture_json(a.architecture))
    end
    return doc
end

function equation_document(e::ExplicitEquation)
    doc = Dict{String,Any}("lhs" => e.lhs, "rhs" => e.rhs)
    e.distance === nothing || (doc["distance"] = distance_json(e.distance))
    e.weight === nothing || (doc["weight"] = e.weight)
    e.name === nothing || (doc["name"] = e.name)
    return doc
end

"""
    composed_document(d::Diagram) -> Dict{String,Any}

The document of a diagram built here, as it would be written in a file.
"""
function composed_document(d::Diagram)
    doc = Dict{String,Any}("format" => "learning-diagram", "format_version" => d.format_version,
                           "objects" => Any[object_document(o) for o in d.objects],
                           "arrows" => Any[arrow_document(a) for a in d.arrows])
    d.name === nothing || (doc["name"] = d.name)
    d.description === nothing || (doc["description"] = d.description)
    d.max_terms === nothing || (doc["max_terms"] = d.max_terms)
    equations = Dict{String,Any}("automatic" => d.automatic)
    isempty(d.explicit) || (equations["explicit"] = Any[equation_document(e) for e in d.explicit])
    doc["equations"] = equations
    return doc
end

"""
    rebuild_diagram(template, objects, arrows; explicit, automatic, name, max_terms) -> Diagram

A checked diagram with `template`'s settings except those given, through the loader, so that the
result is exactly what reading its file would give.
"""
function rebuild_diagram(template::Diagram, objects::Vector{DiagramObject}, arrows::Vector{Arrow};
                         explicit::Vector{ExplicitEquation} = template.explicit, automatic::Bool = template.automatic,
                         name = template.name, max_terms = template.max_terms)
    object_index = Dict{String,Int}(o.name => i for (i, o) in enumerate(objects))
    arrow_index = Dict{String,Int}(a.name => i for (i, a) in enumerate(arrows))
    d = Diagram(name, template.description, objects, arrows, object_index, arrow_index, automatic, explicit,
                max_terms, template.format_version)
    return load_diagram(composed_document(d))
end

check_names(names, place::AbstractString) =
    Problem[Problem("bad-value", place, "$(repr(n)) is not a valid name (letters, digits, _, at most $COMPOSE_MAX_NAME)")
     for n in names if !occursin(COMPOSE_NAME, n) || length(n) > COMPOSE_MAX_NAME]

function throw_if_any(problems::AbstractVector{Problem})
    isempty(problems) || throw(DiagramError(problems))
    return nothing
end

# ----------------------------------------------------------------------------- renaming

rename_term(t::Term, names::AbstractDict) = Term(get(names, t.arrow, t.arrow), Term[rename_term(a, names) for a in t.args])

"""
    rename_term_text(text, arrows) -> String

A term's text with its arrows renamed by the dictionary `arrows`, in canonical text.
"""
rename_term_text(text::AbstractString, arrows::AbstractDict) = string(rename_term(parse_term(text), arrows))

renamed(o::DataObject, n::String) = DataObject(n)
renamed(o::TensorObject, n::String) = TensorObject(n, o.shape, o.dtype, o.distance)
renamed(o::CategoricalObject, n::String) = CategoricalObject(n, o.classes, o.shape, o.distance)

rename_ends(a::Arrow, names) = (get(names, a.name, a.name), String[get(names, s, s) for s in a.sources],
                                get(names, a.target, a.target))
renamed(a::DataArrow, names::AbstractDict) = DataArrow(rename_ends(a, names)..., a.column, a.encoding)
renamed(a::FunctionArrow, names::AbstractDict) = FunctionArrow(rename_ends(a, names)..., a.op, a.params)
renamed(a::ModelArrow, names::AbstractDict) =
    ModelArrow(rename_ends(a, names)..., a.trainable, a.architecture, a.external)

renamed(e::ExplicitEquation, arrows::AbstractDict, name) =
    ExplicitEquation(rename_term_text(e.lhs, arrows), rename_term_text(e.rhs, arrows), e.distance, e.weight, name)

"""
    rename_diagram(d, names) -> Diagram

`d` with objects and arrows renamed by `names` (a dictionary old => new; others kept). Terms of
explicit equations follow; batch columns keep their names (they name data, not parts).
"""
function rename_diagram(d::Diagram, names::AbstractDict)
    problems = Problem[Problem("unknown-object", "", "the diagram has no object or arrow $(repr(n))")
                       for n in keys(names) if !has_object(d, n) && !has_arrow(d, n)]
    append!(problems, check_names(values(names), ""))
    throw_if_any(problems)
    objects = DiagramObject[renamed(o, get(names, o.name, o.name)) for o in d.objects]
    arrows = Arrow[renamed(a, names) for a in d.arrows]
    all_names = vcat([o.name for o in objects], [a.name for a in arrows])
    length(unique(all_names)) == length(all_names) ||
        throw(DiagramError("duplicate-name", "", "the renaming gives two parts the same name"))
    explicit = ExplicitEquation[renamed(e, names, e.name) for e in d.explicit]
    return rebuild_diagram(d, objects, arrows; explicit)
end

"""
    namespace_diagram(d, prefix) -> Diagram

`d` with every object, arrow and given equation name written `<prefix>_<name>`.
"""
function namespace_diagram(d::Diagram, prefix::AbstractString)
    names = Dict{String,String}(n => "$(prefix)_$n" for n in vcat([o.name for o in d.objects], [a.name for a in d.arrows]))
    throw_if_any(check_names(values(names), ""))
    objects = DiagramObject[renamed(o, names[o.name]) for o in d.objects]
    arrows = Arrow[renamed(a, names) for a in d.arrows]
    explicit = ExplicitEquation[renamed(e, names, e.name === nothing ? nothing : "$(prefix)_$(e.name)")
                                for e in d.explicit]
    return rebuild_diagram(d, objects, arrows; explicit)
end

"""
    rename_weights(weights, arrows) -> Dict

Weights keyed `<arrow>.<path>` moved to `<arrows[arrow]>.<path>`; arrows not in `arrows` keep their keys.
"""
function rename_weights(weights::AbstractDict, arrows::AbstractDict)
    out = Dict{String,Any}()
    for (key, value) in weights
        dot = findfirst('.', key)
        arrow = dot === nothing ? key : key[1:prevind(key, dot)]
        rest = dot === nothing ? "" : key[dot:end]
        out[get(arrows, arrow, arrow) * rest] = value
    end
    return out
end

# ----------------------------------------------------------------------------- the common part

"""
    Along(objects, arrows)

The common part of a gluing: pairs (name in the first diagram => name in the second), in order.
"""
struct Along
    objects::Vector{Pair{String,String}}
    arrows::Vector{Pair{String,String}}
end

"""
    parse_along(doc, d1; source = "along") -> Along

Read an `along` document: `{"objects": {...}, "arrows": {...}}` (maps from names of the first
diagram to names of the second, or lists of shared names), or one list of shared names sorted
into objects and arrows by what they are in `d1`. Problems point at `<source>#<pointer>`.
"""
function parse_along(doc, d1::Diagram; source::AbstractString = "along")
    doc isa Along && return doc
    place(parts...) = "$source#$(json_pointer(parts...))"
    problems = Problem[]
    if doc isa AbstractVector
        objects, arrows = Pair{String,String}[], Pair{String,String}[]
        for (i, n) in enumerate(doc)
            if !(n isa AbstractString)
                push!(problems, Problem("wrong-type", place(i - 1), "expected a name, got $(repr(n))"))
            else
                push!(has_arrow(d1, n) ? arrows : objects, String(n) => String(n))
            end
        end
        throw_if_any(problems)
        return Along(objects, arrows)
    end
    doc isa AbstractDict ||
        throw(DiagramError("wrong-type", place(), "along is an object {\"objects\": {...}, \"arrows\": {...}} " *
                                                  "or a list of shared names"))
    for key in keys(doc)
        key in ("objects", "arrows") || startswith(key, "x-") ||
            push!(problems, Problem("unknown-key", place(key), "unknown key $(repr(key)); expected objects, arrows"))
    end
    maps = Dict{String,Vector{Pair{String,String}}}()
    for key in ("objects", "arrows")
        value = get(doc, key, Dict{String,Any}())
        if value isa AbstractVector && all(v -> v isa AbstractString, value)
            maps[key] = [String(v) => String(v) for v in value]
        elseif value isa AbstractDict && all(v -> v isa AbstractString, values(value))
            maps[key] = [String(k) => String(v) for (k, v) in value]
        else
            push!(problems, Problem("wrong-type", place(key), "$key maps names of the first diagram to names " *
                                                              "of the second (strings), or lists shared names"))
        end
    end
    throw_if_any(problems)
    return Along(maps["objects"], maps["arrows"])
end

# ----------------------------------------------------------------------------- checking the identifications

same_distance(a::Distance, b::Distance) = a.name == b.name && a.params == b.params
effective_distance(o::DataObject) = nothing
effective_distance(o::Union{TensorObject,CategoricalObject}) =
    full_distance(something(o.distance, Distance(DEFAULT_DISTANCE[object_kind(o)], Dict{String,Any}())))
distance_text(d::Distance) = isempty(d.params) ? d.name : "$(d.name)($(join(["$k=$v" for (k, v) in sort(collect(d.params))], ", ")))"

"""
    object_mismatch(o1, o2) -> Union{Nothing,Tuple{String,String}}

`(code, what differs)` between two objects to identify, or `nothing` if they agree.
"""
function object_mismatch(o1::DiagramObject, o2::DiagramObject)
    k1, k2 = object_kind(o1), object_kind(o2)
    k1 == k2 || return ("kind-mismatch", "kinds differ: $k1 vs $k2")
    if o1 isa TensorObject
        o1.shape == o2.shape || return ("shape-mismatch", "shapes differ: $(o1.shape) vs $(o2.shape)")
        is_float(o1) == is_float(o2) || return ("dtype-mismatch", "dtypes differ: $(o1.dtype) vs $(o2.dtype)")
    elseif o1 isa CategoricalObject
        o1.classes == o2.classes || return ("shape-mismatch", "class counts differ: $(o1.classes) vs $(o2.classes)")
        o1.shape == o2.shape || return ("shape-mismatch", "shapes differ: $(o1.shape) vs $(o2.shape)")
    end
    e1, e2 = effective_distance(o1), effective_distance(o2)
    if e1 !== nothing && !same_distance(e1, e2)
        return ("bad-value", "distances differ: $(distance_text(e1)) vs $(distance_text(e2))")
    end
    return nothing
end

layer_text(l::Layer) = "$(l.type)($(join(["$k=$v" for (k, v) in sort(collect(full_params(l)); by = first)], ", ")))"

function architecture_mismatch(a1::Architecture, a2::Architecture)
    a1.combine == a2.combine || return "combine steps differ: $(a1.combine) vs $(a2.combine)"
    parts = Tuple{String,Vector{Layer},Vector{Layer}}[]
    if a1.inputs !== nothing || a2.inputs !== nothing
        n = max(length(something(a1.inputs, [])), length(something(a2.inputs, [])))
        b1 = something(a1.inputs, [Layer[] for _ in 1:n])
        b2 = something(a2.inputs, [Layer[] for _ in 1:n])
        for k in 1:min(length(b1), length(b2))
            push!(parts, ("inputs/$(k - 1)", b1[k], b2[k]))
        end
    end
    push!(parts, ("layers", a1.layers, a2.layers))
    for (label, l1, l2) in parts
        t1, t2 = layer_text.(l1), layer_text.(l2)
        length(t1) == length(t2) || return "$label has $(length(t1)) layers vs $(length(t2))"
        for i in eachindex(t1)
            t1[i] == t2[i] || return "$label/$(i - 1): $(t1[i]) vs $(t2[i])"
        end
    end
    return nothing
end

"""
    arrow_mismatch(a1, a2) -> Union{Nothing,Tuple{String,String}}

`(code, what differs)` between two arrows to identify, endpoints aside, or `nothing` if they agree.
"""
function arrow_mismatch(a1::Arrow, a2::Arrow)
    k1, k2 = arrow_kind(a1), arrow_kind(a2)
    k1 == k2 || return ("kind-mismatch", "kinds differ: $k1 vs $k2")
    if a1 isa DataArrow
        a1.column == a2.column || return ("bad-value", "columns differ: $(repr(a1.column)) vs $(repr(a2.column))")
        e1, e2 = something(a1.encoding, "index"), something(a2.encoding, "index")
        e1 == e2 || return ("bad-value", "encodings differ: $e1 vs $e2")
    elseif a1 isa FunctionArrow
        a1.op == a2.op || return ("bad-value", "ops differ: $(a1.op) vs $(a2.op)")
        a1.params == a2.params || return ("bad-value", "op parameters differ: $(a1.params) vs $(a2.params)")
    elseif a1 isa ModelArrow
        a1.trainable == a2.trainable ||
            return ("bad-value", "one is trainable and the other frozen ($(a1.trainable) vs $(a2.trainable))")
        a1.external == a2.external || return ("bad-value", "one is external and the other has an architecture")
        if a1.architecture !== nothing && a2.architecture !== nothing
            diff = architecture_mismatch(a1.architecture, a2.architecture)
            diff === nothing || return ("bad-value", "architectures differ, $diff")
        end
    end
    return nothing
end

side_label(d::Diagram, fallback::String) = d.name === nothing ? fallback : "$fallback ($(d.name))"

function ends_text(a::Arrow)
    src = length(a.sources) == 1 ? a.sources[1] : "(" * join(a.sources, ", ") * ")"
    return "$src → $(a.target)"
end

function check_along(d1::Diagram, d2::Diagram, along::Along, source::AbstractString)
    problems = Problem[]
    first, second = side_label(d1, "the first diagram"), side_label(d2, "the second diagram")
    tables = (("objects", "object", "unknown-object", has_object, object_named, object_mismatch),
              ("arrows", "arrow", "unknown-arrow", has_arrow, arrow_named, arrow_mismatch))
    for (key, singular, code, has, named, mismatch) in tables
        seen = Dict{String,String}()
        for (n1, n2) in getfield(along, Symbol(key))
            place = "$source#$(json_pointer(key, n1))"
            if !has(d1, n1)
                push!(problems, Problem(code, place, "$first has no $singular $(repr(n1))"))
            elseif !has(d2, n2)
                push!(problems, Problem(code, place, "$second has no $singular $(repr(n2))"))
            elseif haskey(seen, n2)
                push!(problems, Problem("bad-value", place, "$(repr(seen[n2])) and $(repr(n1)) are both identified " *
                                                            "with $(repr(n2)); identifications are one-to-one"))
            else
                seen[n2] = n1
                diff = mismatch(named(d1, n1), named(d2, n2))
                diff === nothing ||
                    push!(problems, Problem(diff[1], place, "cannot identify $singular $(repr(n1)) with $(repr(n2)): $(diff[2])"))
            end
        end
    end
    objects = Dict(along.objects)
    for (n1, n2) in along.arrows
        (has_arrow(d1, n1) && has_arrow(d2, n2)) || continue
        a1, a2 = arrow_named(d1, n1), arrow_named(d2, n2)
        arrow_kind(a1) == arrow_kind(a2) || continue
        mapped = [get(objects, s, nothing) for s in a1.sources]
        if mapped != a2.sources || get(objects, a1.target, nothing) != a2.target
            push!(problems, Problem("bad-value", "$source#$(json_pointer("arrows", n1))",
                                    "arrow $(repr(n1)) goes $(ends_text(a1)) in $first and $(repr(n2)) goes " *
                                    "$(ends_text(a2)) in $second; identify their sources and targets too (under " *
                                    "\"objects\") to identify the arrows"))
        end
    end
    throw_if_any(problems)
end

# ----------------------------------------------------------------------------- gluing

"""
    Gluing(diagram, left, right)

A glued diagram and where each side's names went: `left` and `right` map every object and arrow
name of the first and second diagram to its name in `diagram`.
"""
struct Gluing
    diagram::Diagram
    left::Dict{String,String}
    right::Dict{String,String}
end

"""
    glued_weights(g::Gluing, left, right) -> Dict

Both sides' weights under the glued names; for a shared arrow the left side's weights win.
"""
glued_weights(g::Gluing, left::AbstractDict, right::AbstractDict) =
    merge(rename_weights(right, g.right), rename_weights(left, g.left))

"""
    default_prefix(d) -> String

The namespace for a diagram's clashing names: its name made into a valid name, else `"right"`.
"""
function default_prefix(d::Diagram)
    if d.name !== nothing
        candidate = replace(d.name, r"[^A-Za-z0-9_]" => "_")
        candidate = first(candidate, 32)
        occursin(COMPOSE_NAME, candidate) && return candidate
    end
    return "right"
end

"""
    gluing(d1, d2, along; prefix = nothing, name = nothing, along_source = "along") -> Gluing

Glue `d2` onto `d1` along a common part (a pushout): identified parts become one (they must
agree), everything else is kept apart, `d2`'s clashing names get `<prefix>_`. The result lists
`d1`'s objects and arrows, then the rest of `d2`'s; explicit equations of `d2` follow with their
terms renamed. See python/diagrammatic_learning/compose.py for the full rules.
"""
function gluing(d1::Diagram, d2::Diagram, along; prefix = nothing, name = nothing,
                along_source::AbstractString = "along")
    common = parse_along(along, d1; source = along_source)
    check_along(d1, d2, common, along_source)
    d1.automatic == d2.automatic ||
        throw(DiagramError("bad-value", "$along_source#", "one diagram forms automatic equations and the other " *
                                                          "does not; set equations.automatic the same on both"))
    prefix = prefix === nothing ? default_prefix(d2) : String(prefix)
    throw_if_any(check_names(["$(prefix)_x"], "prefix"))

    names1 = vcat([o.name for o in d1.objects], [a.name for a in d1.arrows])
    left = Dict{String,String}(n => n for n in names1)
    back = Dict{String,String}(v => k for (k, v) in vcat(common.objects, common.arrows))
    right = Dict{String,String}()
    fresh = String[]
    for n in vcat([o.name for o in d2.objects], [a.name for a in d2.arrows])
        if haskey(back, n)
            right[n] = back[n]
        else
            right[n] = haskey(left, n) ? "$(prefix)_$n" : n
            push!(fresh, right[n])
        end
    end
    clashes = sort(unique([n for n in fresh if haskey(left, n) || count(==(n), fresh) > 1]))
    isempty(clashes) || throw(DiagramError("duplicate-name", "prefix",
                                           "renaming with prefix $(repr(prefix)) still clashes on $clashes; choose another prefix"))
    throw_if_any(check_names(fresh, "prefix"))

    objects = DiagramObject[d1.objects...]
    append!(objects, DiagramObject[renamed(o, right[o.name]) for o in d2.objects if !haskey(back, o.name)])
    arrows = Arrow[d1.arrows...]
    append!(arrows, Arrow[renamed(a, right) for a in d2.arrows if !haskey(back, a.name)])
    explicit = vcat(d1.explicit, carried_equations(d1, d2, right, prefix))
    names = [x.name for x in (d1, d2) if x.name !== nothing]
    glued_name = name !== nothing ? name : (isempty(names) ? nothing : join(names, " + "))
    bounds = [m for m in (d1.max_terms, d2.max_terms) if m !== nothing]
    diagram = rebuild_diagram(d1, objects, arrows; explicit, automatic = d1.automatic, name = glued_name,
                              max_terms = isempty(bounds) ? nothing : maximum(bounds))
    return Gluing(diagram, left, right)
end

same_equation(a::ExplicitEquation, b::ExplicitEquation) =
    parse_term(a.lhs) == parse_term(b.lhs) && parse_term(a.rhs) == parse_term(b.rhs) && a.weight == b.weight &&
    a.name == b.name && (a.distance === b.distance ||
                         (a.distance !== nothing && b.distance !== nothing && same_distance(a.distance, b.distance)))

function carried_equations(d1::Diagram, d2::Diagram, right::AbstractDict, prefix::String)
    given = Set(e.name for e in d1.explicit if e.name !== nothing)
    mine = Dict(Set([parse_term(e.lhs), parse_term(e.rhs)]) => (k - 1, e) for (k, e) in enumerate(d1.explicit))
    out = ExplicitEquation[]
    for (k, eq) in enumerate(d2.explicit)
        new_name = eq.name !== nothing && eq.name in given ? "$(prefix)_$(eq.name)" : eq.name
        moved = renamed(eq, right, new_name)
        pair = Set([parse_term(moved.lhs), parse_term(moved.rhs)])
        if haskey(mine, pair)
            j, other = mine[pair]
            same_equation(other, renamed(eq, right, eq.name)) && continue
            throw(DiagramError("duplicate-equation", json_pointer("equations", "explicit", k - 1),
                               "explicit equation $(k - 1) of the second diagram is on the same terms as explicit " *
                               "equation $j of the first ($(moved.lhs) = $(moved.rhs)) but differs"))
        end
        push!(out, moved)
    end
    return out
end

"""
    glue(d1, d2, along; prefix = nothing, name = nothing) -> Diagram

The pushout of `d1` and `d2` over their common part `along`; see [`gluing`](@ref).
"""
glue(d1::Diagram, d2::Diagram, along; kwargs...) = gluing(d1, d2, along; kwargs...).diagram

"""
    disjoint_union(d1, d2; prefix = nothing, name = nothing) -> Diagram

Both diagrams side by side, nothing shared; `d2`'s clashing names get `<prefix>_`.
"""
disjoint_union(d1::Diagram, d2::Diagram; kwargs...) = glue(d1, d2, Dict{String,Any}(); kwargs...)

# ----------------------------------------------------------------------------- sub-diagrams and model swaps

"""
    restrict_diagram(d, keep; direction = "backward") -> Diagram

The sub-diagram of the objects and arrows reachable from the names in `keep`: `"backward"`,
everything that feeds them; `"forward"`, everything computed from them (an arrow once all its
sources are kept). A named arrow brings its sources and target. Explicit equations are kept
when all their arrows are.
"""
function restrict_diagram(d::Diagram, keep; direction::AbstractString = "backward")
    direction in ("backward", "forward") ||
        throw(DiagramError("bad-value", "direction", "direction is backward or forward, not $(repr(direction))"))
    throw_if_any(Problem[Problem("unknown-object", "", "the diagram has no object or arrow $(repr(n))")
                         for n in keep if !has_object(d, n) && !has_arrow(d, n)])
    objects = Set{String}(n for n in keep if has_object(d, n))
    arrows = Set{String}(n for n in keep if has_arrow(d, n))
    for n in arrows
        a = arrow_named(d, n)
        union!(objects, a.sources)
        push!(objects, a.target)
    end
    changed = true
    while changed
        changed = false
        for a in d.arrows
            a.name in arrows && continue
            if direction == "backward" && a.target in objects
                push!(arrows, a.name)
                union!(objects, a.sources)
                changed = true
            elseif direction == "forward" && all(s -> s in objects, a.sources)
                push!(arrows, a.name)
                push!(objects, a.target)
                changed = true
            end
        end
    end
    explicit = ExplicitEquation[e for e in d.explicit
                                if all(a -> a in arrows, vcat(term_arrows(parse_term(e.lhs)), term_arrows(parse_term(e.rhs))))]
    return rebuild_diagram(d, DiagramObject[o for o in d.objects if o.name in objects],
                           Arrow[a for a in d.arrows if a.name in arrows]; explicit)
end

"""
    replace_model(d, arrow, architecture = nothing; external = false, trainable = nothing) -> Diagram

`d` with model arrow `arrow` given a new architecture (or made external) in the same place;
`trainable` keeps the arrow's setting unless given. The new model must still fit.
"""
function replace_model(d::Diagram, arrow::AbstractString, architecture::Union{Nothing,Architecture} = nothing;
                       external::Bool = false, trainable::Union{Nothing,Bool} = nothing)
    has_arrow(d, arrow) || throw(DiagramError("unknown-arrow", "", "the diagram has no arrow $(repr(arrow))"))
    old = arrow_named(d, arrow)
    old isa ModelArrow || throw(DiagramError("kind-mismatch", "", "$(repr(arrow)) is a $(arrow_kind(old)) arrow, not a model"))
    (architecture === nothing) == !external &&  # neither or both given
        throw(DiagramError("bad-value", "", "give exactly one of an architecture or external = true"))
    new = ModelArrow(old.name, old.sources, old.target, something(trainable, old.trainable), architecture, external)
    return rebuild_diagram(d, copy(d.objects), Arrow[a.name == arrow ? new : a for a in d.arrows])
end
