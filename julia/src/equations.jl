# Term typing, term enumeration and the equations of a diagram in canonical order (SPEC §5–6),
# following the Python library's equations.py step for step so that both report the same problems.

"""
    TermInfo(object, data_object, encoding, trainable)

What a term computes: its object, its data object, its encoding (`"logits"`, `"index"`,
`"probabilities"`; `nothing` for tensor objects) and whether it contains a trainable model.
"""
struct TermInfo
    object::String
    data_object::String
    encoding::Union{Nothing,String}
    trainable::Bool
end

"""
    Equation(name, object, data_object, lhs, rhs, distance, weight, explicit)

One equation of the loss: `weight · distance(lhs, rhs)` on `object` over `data_object`, with the
distance's defaults filled in. `explicit` says whether it was written in the file.
"""
struct Equation
    name::String
    object::String
    data_object::String
    lhs::Term
    rhs::Term
    distance::Distance
    weight::Float64
    explicit::Bool
end

"""
    TermError(code, message)

A term that is not a term of the diagram; `code` is a SPEC §10 code such as `"term-arity"`.
"""
struct TermError <: Exception
    code::String
    message::String
end

Base.showerror(io::IO, e::TermError) = print(io, e.message, " [", e.code, "]")

const ENCODING_ACCEPTED = Dict("softmax" => "logits", "log_softmax" => "logits", "one_hot" => "index")

function applied_encoding(d::Diagram, arrow::Arrow, args::Vector{TermInfo})
    if arrow isa FunctionArrow
        need = get(ENCODING_ACCEPTED, arrow.op, nothing)
        if need !== nothing && args[1].encoding !== nothing && args[1].encoding != need
            throw(TermError("term-type-mismatch", "$(arrow.op) applies to $need terms, not $(args[1].encoding)"))
        end
        arrow.op in ("identity", "stop_gradient") && return args[1].encoding
    end
    object_named(d, arrow.target) isa CategoricalObject || return nothing
    arrow isa DataArrow && return something(arrow.encoding, "index")
    return "logits"
end

"""
    term_info(d::Diagram, t::Term) -> TermInfo

Type a term (SPEC §5.1); throws [`TermError`](@ref) if it is not a term of `d`.
"""
function term_info(d::Diagram, t::Term)
    has_arrow(d, t.arrow) || throw(TermError("unknown-arrow", "no arrow named $(repr(t.arrow))"))
    arrow = arrow_named(d, t.arrow)
    if arrow isa DataArrow
        isempty(t.args) ||
            throw(TermError("term-arity", "data arrow $(repr(t.arrow)) is a leaf and takes no arguments"))
        return TermInfo(arrow.target, arrow.sources[1], applied_encoding(d, arrow, TermInfo[]), false)
    end
    isempty(t.args) && throw(TermError("term-not-rooted", "$(repr(t.arrow)) is not a data arrow, so it needs " *
                                                          "arguments ($(length(arrow.sources)))"))
    length(t.args) == length(arrow.sources) ||
        throw(TermError("term-arity", "$(repr(t.arrow)) takes $(length(arrow.sources)) argument(s), got $(length(t.args))"))
    infos = TermInfo[term_info(d, a) for a in t.args]
    for (k, (info, source)) in enumerate(zip(infos, arrow.sources))
        info.object == source ||
            throw(TermError("term-type-mismatch", "argument $k of $(repr(t.arrow)) is a term of $(repr(info.object)), " *
                                                  "but the arrow's source there is $(repr(source))"))
    end
    data = unique(i.data_object for i in infos)
    length(data) > 1 &&
        throw(TermError("term-mixed-data", "the arguments of $(repr(t.arrow)) come from different data objects $(sort(data))"))
    encoding = applied_encoding(d, arrow, infos)
    # no gradient leaves a stop_gradient: its terms are constant whatever they contain (SPEC §5.1)
    trainable = (any(i.trainable for i in infos) || (arrow isa ModelArrow && arrow.trainable)) &&
                !(arrow isa FunctionArrow && arrow.op == "stop_gradient")
    return TermInfo(arrow.target, infos[1].data_object, encoding, trainable)
end

# An object past a bound of SPEC §5.3: `code` is "too-many-terms", "term-too-large", "cycles"
# (the step budget inside cycles is spent: reported as too-many-terms for the object under way), or
# "total" (more than max_total_terms terms found: too-many-total-terms for the object under way).
struct TooManyTerms <: Exception
    object::String
    code::String
end

"""
    MAX_CYCLIC_STEPS

Enumeration steps allowed under non-empty forbidden sets, i.e. inside cycles (SPEC §5.3).
"""
const MAX_CYCLIC_STEPS = 10_000

# How an arrow into an object makes terms: a data arrow's leaf, or a live arrow's sources with
# whether each lies in the target's component, whether its op checks encodings (else `fixed`),
# whether it is a trainable model, and whether it stops gradients (its terms are constant, SPEC §5.1).
struct ArrowInto
    name::String
    leaf::Union{Nothing,Tuple{Term,TermInfo}}
    sources::Vector{String}
    inside::Vector{Bool}
    checked::Bool
    fixed::Union{Nothing,String}
    trains::Bool
    stops::Bool
end

"""
    TermEnumerator(d::Diagram, graph::TermGraph)

Enumerates the terms of objects with no arrow twice on a root-to-leaf path (SPEC §5.2), within
the bounds of §5.3, as the Python library's enumerator does: memoized on the forbidden set cut
down to the arrows whose target is in the object's component (an acyclic diagram is enumerated
once per object), following live arrows only, products formed only within one data object, lists
built in canonical order without comparing terms, and steps counted inside cycles.
"""
mutable struct TermEnumerator
    d::Diagram
    bound::Int
    size_bound::Int
    total_bound::Int
    graph::TermGraph
    steps::Int
    found::Int
    into::Dict{String,Vector{ArrowInto}}
    within::Dict{Int,Set{String}}
    memo::Dict{Tuple{String,Vector{String}},Vector{Tuple{Term,TermInfo}}}
end

function TermEnumerator(d::Diagram, g::TermGraph = TermGraph(d))
    into = Dict{String,Vector{ArrowInto}}(o => ArrowInto[] for o in g.inhabited)
    within = Dict{Int,Set{String}}(c => Set{String}() for c in eachindex(g.cyclic) if g.cyclic[c])
    for a in d.arrows
        if a isa DataArrow
            haskey(into, a.target) || continue
            leaf = (Term(a.name), TermInfo(a.target, a.sources[1], applied_encoding(d, a, TermInfo[]), false))
            push!(into[a.target], ArrowInto(a.name, leaf, String[], Bool[], false, nothing, false, false))
        elseif a.name in g.live
            c = g.component[a.target]
            haskey(within, c) && push!(within[c], a.name)
            checked = a isa FunctionArrow && (haskey(ENCODING_ACCEPTED, a.op) || a.op in ("identity", "stop_gradient"))
            fixed = (checked || !(object_named(d, a.target) isa CategoricalObject)) ? nothing : "logits"
            inside = Bool[g.component[s] == c for s in a.sources]
            push!(into[a.target], ArrowInto(a.name, nothing, a.sources, inside, checked, fixed,
                                            a isa ModelArrow && a.trainable,
                                            a isa FunctionArrow && a.op == "stop_gradient"))
        end
    end
    return TermEnumerator(d, term_bound(d), term_size_bound(d), total_term_bound(d), g, 0, 0, into, within,
                          Dict{Tuple{String,Vector{String}},Vector{Tuple{Term,TermInfo}}}())
end

function count_step!(e::TermEnumerator, object::String)
    e.steps += 1
    e.steps > MAX_CYCLIC_STEPS && throw(TooManyTerms(object, "cycles"))
    return nothing
end

# One more term found, in any computation; past max_total_terms enumeration stops (SPEC §5.3).
function count_found!(e::TermEnumerator, object::String)
    e.found += 1
    e.found > e.total_bound && throw(TooManyTerms(object, "total"))
    return nothing
end

function object_terms(e::TermEnumerator, object::String, forbidden::Vector{String} = String[])
    into = get(e.into, object, nothing)
    into === nothing && return Tuple{Term,TermInfo}[]  # not inhabited: no terms
    if !isempty(forbidden)
        within = get(e.within, e.graph.component[object], nothing)
        forbidden = within === nothing ? String[] : sort!(String[f for f in forbidden if f in within])
    end
    key = (object, forbidden)
    hit = get(e.memo, key, nothing)
    hit === nothing || return hit
    counting = !isempty(forbidden)
    counting && count_step!(e, object)
    out = Tuple{Term,TermInfo}[]
    for arrow in into
        arrow.name in forbidden && continue
        if arrow.leaf !== nothing
            push!(out, arrow.leaf)
            counting && count_step!(e, object)
            length(out) > e.bound && throw(TooManyTerms(object, "too-many-terms"))
            count_found!(e, object)
        else
            inner = any(arrow.inside) ? sort!(unique!([forbidden; arrow.name])) : String[]
            choices = Vector{Tuple{Term,TermInfo}}[object_terms(e, s, inside ? inner : String[])
                                                   for (s, inside) in zip(arrow.sources, arrow.inside)]
            if length(choices) == 1
                for (sub, info) in choices[1]
                    encoding = arrow.fixed
                    if arrow.checked
                        encoding = try
                            applied_encoding(e.d, arrow_named(e.d, arrow.name), [info])
                        catch err
                            err isa TermError || rethrow()
                            continue  # an encoding the arrow does not accept: not a term
                        end
                    end
                    t = Term(arrow.name, Term[sub])
                    push!(out, (t, TermInfo(object, info.data_object, encoding,
                                              (arrow.trains || info.trainable) && !arrow.stops)))
                    counting && count_step!(e, object)
                    term_size(t) > e.size_bound && throw(TooManyTerms(object, "term-too-large"))
                    length(out) > e.bound && throw(TooManyTerms(object, "too-many-terms"))
                    count_found!(e, object)
                end
            else
                foreach_combination(choices) do combo
                    t = Term(arrow.name, Term[c[1] for c in combo])
                    trainable = (arrow.trains || any(c -> c[2].trainable, combo)) && !arrow.stops
                    push!(out, (t, TermInfo(object, combo[1][2].data_object, arrow.fixed, trainable)))
                    counting && count_step!(e, object)
                    term_size(t) > e.size_bound && throw(TooManyTerms(object, "term-too-large"))
                    length(out) > e.bound && throw(TooManyTerms(object, "too-many-terms"))
                    count_found!(e, object)
                end
            end
        end
        length(out) > e.bound && throw(TooManyTerms(object, "too-many-terms"))
    end
    e.memo[key] = out
    return out
end

"""
    foreach_combination(f, choices)

Call `f` on each combination of one term per list that stays within one data object, in
lexicographic order (the last list varies fastest); combinations that mix data objects are never
formed: after the first argument each list is cut down to its data object.
"""
function foreach_combination(f, choices::Vector{Vector{Tuple{Term,TermInfo}}})
    groups = Dict{String,Vector{Tuple{Term,TermInfo}}}[]
    for ts in choices[2:end]
        g = Dict{String,Vector{Tuple{Term,TermInfo}}}()
        for x in ts
            push!(get!(Vector{Tuple{Term,TermInfo}}, g, x[2].data_object), x)
        end
        push!(groups, g)
    end
    for head in choices[1]
        data = head[2].data_object
        lists = Vector{Tuple{Term,TermInfo}}[]
        for g in groups
            haskey(g, data) || break
            push!(lists, g[data])
        end
        length(lists) == length(groups) || continue
        position = ones(Int, length(lists))
        while true
            combo = Tuple{Term,TermInfo}[head]
            for k in eachindex(lists)
                push!(combo, lists[k][position[k]])
            end
            f(combo)
            k = length(lists)
            while k >= 1
                position[k] += 1
                position[k] <= length(lists[k]) && break
                position[k] = 1
                k -= 1
            end
            k == 0 && break
        end
    end
    return nothing
end

objects_problem(d::Diagram, code, objects, f) =  # f(object): the message
    DiagramError([Problem(code isa AbstractString ? code : code[o], json_pointer("objects", d.object_index[o] - 1),
                          f(o)) for o in sort(collect(objects); by = o -> d.object_index[o])])

"""
    enumerate_terms(d::Diagram) -> Vector{Pair{String,Vector{Tuple{Term,TermInfo}}}}

Every non-data object's enumerated terms with their types, objects in declaration order, terms
in canonical order, within the bounds of SPEC §5.3: `too-many-terms` for objects whose terms may
nest more than $MAX_TERM_DEPTH arrows deep (checked first, in linear time), with more than
`max_terms` terms, or under way when the steps inside cycles run out; `term-too-large` for a term
of more than `max_term_size` arrows; `too-many-total-terms` for the object under way when more
than `max_total_terms` terms have been found over all objects.
"""
function enumerate_terms(d::Diagram)
    graph = TermGraph(d)
    deep = too_deep_objects(graph, d)
    isempty(deep) ||  # in declaration order
        throw(DiagramError([Problem("too-many-terms", json_pointer("objects", d.object_index[o] - 1),
                                    "object $(repr(o)) may have terms that nest more than $MAX_TERM_DEPTH arrows " *
                                    "deep (SPEC §5.3)") for o in deep]))
    e = TermEnumerator(d, graph)
    out = Pair{String,Vector{Tuple{Term,TermInfo}}}[]
    over = Dict{String,String}()
    for o in d.objects
        o isa DataObject && continue
        try
            push!(out, o.name => object_terms(e, o.name))
        catch err
            err isa TooManyTerms || rethrow()
            if err.code in ("cycles", "total")  # a budget is spent: the object under way is reported, nothing more
                haskey(over, o.name) || (over[o.name] = err.code)
                break
            end
            haskey(over, err.object) || (over[err.object] = err.code)
        end
    end
    if !isempty(over)
        codes = Dict{String,String}(o => (c == "cycles" ? "too-many-terms" : c == "total" ? "too-many-total-terms" : c)
                                    for (o, c) in over)
        throw(objects_problem(d, codes, keys(over), o -> bound_message(d, o, over[o])))
    end
    return out
end

function bound_message(d::Diagram, o::String, why::String)
    why == "term-too-large" &&
        return "object $(repr(o)) has a term of more than $(term_size_bound(d)) arrows; raise max_term_size or " *
               "write explicit equations"
    why == "cycles" &&
        return "enumerating the terms of object $(repr(o)) takes more than $MAX_CYCLIC_STEPS steps inside " *
               "cycles (SPEC §5.3)"
    why == "total" &&
        return "the diagram's objects have more than $(total_term_bound(d)) terms in all (found while enumerating " *
               "object $(repr(o))); raise max_total_terms or write explicit equations"
    return "object $(repr(o)) has more than $(term_bound(d)) terms; raise max_terms or write explicit equations"
end

# An object's terms grouped by data object: groups in declaration order, canonical order inside.
function by_data_object(ts::Vector{Tuple{Term,TermInfo}}, data_index::Dict{String,Int})
    groups = Dict{String,Vector{Tuple{Term,TermInfo}}}()
    for x in ts
        push!(get!(Vector{Tuple{Term,TermInfo}}, groups, x[2].data_object), x)
    end
    return [groups[k] for k in sort(collect(keys(groups)); by = k -> data_index[k])]
end

# Automatic equations of one group: pairs with at least one trainable side (SPEC §6.4).
function pair_count(group::Vector{Tuple{Term,TermInfo}})
    n = length(group)
    constant = count(x -> !x[2].trainable, group)
    return n * (n - 1) ÷ 2 - constant * (constant - 1) ÷ 2
end

# SPEC §6.1's equations with the type of each left side; pairs of constant terms are never visited.
function automatic_equations(d::Diagram, groups)
    eqs = Tuple{Equation,TermInfo}[]
    for (object, per_data) in groups
        distance = object_distance(d, object)
        for group in per_data
            trainable_at = [k for (k, x) in enumerate(group) if x[2].trainable]
            for (a, (ta, ia)) in enumerate(group)
                if ia.trainable
                    for b in a+1:length(group)
                        tb = group[b][1]
                        push!(eqs, (Equation("$ta = $tb", object, ia.data_object, ta, tb, distance, 1.0, false), ia))
                    end
                else
                    for b in trainable_at[searchsortedfirst(trainable_at, a + 1):end]
                        tb, ib = group[b]
                        push!(eqs, (Equation("$tb = $ta", object, ia.data_object, tb, ta, distance, 1.0, false), ib))
                    end
                end
            end
        end
    end
    return eqs
end

# `too-many-equations` (SPEC §6.4) before any equation is built: counted, not listed.
function check_equation_count(d::Diagram, groups, explicit, terms)
    bound = equation_bound(d)
    total = 0
    for (object, per_data) in groups
        total += sum(pair_count, per_data; init = 0)
        total > bound &&
            throw(DiagramError("too-many-equations", json_pointer("objects", d.object_index[object] - 1),
                               "the automatic equations up to object $(repr(object)) number $total, more than " *
                               "$bound; raise max_equations or set equations.automatic to false"))
    end
    enumerated = Set{Term}()
    if d.automatic && !isempty(explicit)
        for (_, ts) in terms, (t, _) in ts
            push!(enumerated, t)
        end
    end
    for (k, eq, li, ri) in explicit
        replaces = d.automatic && eq.lhs != eq.rhs && eq.lhs in enumerated && eq.rhs in enumerated &&
                   (li.trainable || ri.trainable)
        replaces && continue
        total += 1
        total > bound && throw(DiagramError("too-many-equations", json_pointer("equations", "explicit", k),
                                            "the diagram has more than $bound equations; raise max_equations"))
    end
    return nothing
end

"""
    diagram_equations(d::Diagram) -> Vector{Equation}

The diagram's equations in canonical order (SPEC §6): the automatic ones, each replaced in place
by an explicit equation of the same pair of terms, then the other explicit ones. Throws a
[`DiagramError`](@ref) listing every problem of the explicit equations and the names.
"""
function diagram_equations(d::Diagram)
    terms = enumerate_terms(d)
    problems = Problem[]
    explicit = Tuple{Int,Equation,TermInfo,TermInfo}[]
    seen_pairs = Dict{Set{Term},Int}()
    for (position, eq) in enumerate(d.explicit)
        k = position - 1
        place = ("equations", "explicit", k)
        sides = Tuple{Term,TermInfo}[]
        for (side, text) in (("lhs", eq.lhs), ("rhs", eq.rhs))
            try
                t = parse_term(text)
                push!(sides, (t, term_info(d, t)))
            catch err
                if err isa TermSyntaxError
                    push!(problems, Problem("term-syntax", json_pointer(place..., side),
                                            "cannot read term $(repr(text)): $(err.message)"))
                elseif err isa TermError
                    push!(problems, Problem(err.code, json_pointer(place..., side), "$(repr(text)) is not a term: $(err.message)"))
                else
                    rethrow()
                end
            end
        end
        length(sides) == 2 || continue
        (lt, li), (rt, ri) = sides
        if (li.object, li.data_object) != (ri.object, ri.data_object)
            push!(problems, Problem("equation-object-mismatch", json_pointer(place...),
                                    "lhs is a term of $(repr(li.object)) over $(repr(li.data_object)), rhs of " *
                                    "$(repr(ri.object)) over $(repr(ri.data_object))"))
            continue
        end
        pair = Set([lt, rt])
        if haskey(seen_pairs, pair)
            push!(problems, Problem("duplicate-equation", json_pointer(place...),
                                    "the same pair of terms as explicit equation $(seen_pairs[pair])"))
            continue
        end
        seen_pairs[pair] = k
        distance = eq.distance === nothing ? object_distance(d, li.object) : full_distance(eq.distance)
        for (code, message) in distance_problems(object_named(d, li.object), distance)
            push!(problems, Problem(code, json_pointer(place..., "distance"), message))
        end
        push!(explicit, (k, Equation(something(eq.name, "$lt = $rt"), li.object, li.data_object, lt, rt, distance,
                                     something(eq.weight, 1.0), true), li, ri))
    end
    isempty(problems) || throw(DiagramError(problems))

    data_index = Dict{String,Int}(name => i for (i, name) in enumerate(data_objects(d)))
    groups = d.automatic ? [object => by_data_object(ts, data_index) for (object, ts) in terms] :
             Pair{String,Vector{Vector{Tuple{Term,TermInfo}}}}[]
    check_equation_count(d, groups, explicit, terms)

    by_pair = Dict{Set{Term},Tuple{Int,Equation,TermInfo}}(Set([e.lhs, e.rhs]) => (k, e, li) for (k, e, li, _) in explicit)
    used = Set{Int}()
    result = Tuple{String,Equation,TermInfo}[]
    for (eq, lhs_info) in automatic_equations(d, groups)
        hit = isempty(by_pair) ? nothing : get(by_pair, Set([eq.lhs, eq.rhs]), nothing)
        if hit !== nothing && hit[2].object == eq.object
            push!(used, hit[1])
            push!(result, (json_pointer("equations", "explicit", hit[1]), hit[2], hit[3]))
        else
            push!(result, (json_pointer("objects", d.object_index[eq.object] - 1), eq, lhs_info))
        end
    end
    for (k, e, li, _) in explicit
        k in used || push!(result, (json_pointer("equations", "explicit", k), e, li))
    end

    named = Set(json_pointer("equations", "explicit", k - 1) for (k, e) in enumerate(d.explicit) if e.name !== nothing)
    names = Dict{String,String}()
    for (place, eq, lhs_info) in result
        if haskey(names, eq.name)
            push!(problems, Problem("duplicate-name", place * (place in named ? "/name" : ""),
                                    "two equations are named $(repr(eq.name))"))
        end
        names[eq.name] = place
        if object_named(d, eq.object) isa CategoricalObject
            encoding = lhs_info.encoding
            encoding == "logits" ||
                push!(problems, Problem("distance-input-mismatch", place,
                                        "$(eq.distance.name) needs logits on the left, but $(eq.lhs) has encoding $encoding"))
        end
    end
    isempty(problems) || throw(DiagramError(problems))
    return [eq for (_, eq, _) in result]
end
