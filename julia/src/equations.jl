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

struct TooManyTerms <: Exception
    object::String
end

struct TermsTooDeep <: Exception end

"""
    TermEnumerator(d::Diagram)

Enumerates the terms of objects with no arrow twice on a root-to-leaf path (SPEC §5.2), stopping
as soon as an object has more than the diagram's bound.
"""
struct TermEnumerator
    d::Diagram
    bound::Int
    into::Dict{String,Vector{String}}
    memo::Dict{Tuple{String,Vector{String}},Vector{Tuple{Term,TermInfo}}}
end

function TermEnumerator(d::Diagram)
    into = Dict{String,Vector{String}}(o.name => String[] for o in d.objects)
    for a in d.arrows
        push!(into[a.target], a.name)
    end
    return TermEnumerator(d, term_bound(d), into, Dict{Tuple{String,Vector{String}},Vector{Tuple{Term,TermInfo}}}())
end

function object_terms(e::TermEnumerator, object::String, forbidden::Vector{String} = String[])
    key = (object, forbidden)
    haskey(e.memo, key) && return e.memo[key]
    out = Tuple{Term,TermInfo}[]
    for name in e.into[object]
        name in forbidden && continue
        arrow = arrow_named(e.d, name)
        if arrow isa DataArrow
            push!(out, (Term(name), term_info(e.d, Term(name))))
        else
            inner = sort!(unique!([forbidden; name]))
            length(inner) > MAX_TERM_DEPTH && throw(TermsTooDeep())
            choices = [object_terms(e, s, inner) for s in arrow.sources]
            # Iterators.product varies its first argument fastest; reversed, the last varies fastest as in Python
            for reversed_combo in Iterators.product(reverse(choices)...)
                combo = reverse(collect(reversed_combo))
                length(unique(info.data_object for (_, info) in combo)) > 1 && continue
                t = Term(name, Term[sub for (sub, _) in combo])
                info = try
                    term_info(e.d, t)
                catch err
                    err isa TermError || rethrow()
                    continue  # an encoding the arrow does not accept: not a term
                end
                push!(out, (t, info))
                length(out) > e.bound && throw(TooManyTerms(object))
            end
        end
        length(out) > e.bound && throw(TooManyTerms(object))
    end
    sort!(out; by = ti -> term_key(e.d, ti[1]))
    e.memo[key] = out
    return out
end

"""
    enumerate_terms(d::Diagram) -> Vector{Pair{String,Vector{Tuple{Term,TermInfo}}}}

Every non-data object's enumerated terms with their types, objects in declaration order, terms
in canonical order; a [`DiagramError`](@ref) `too-many-terms` past the bound (SPEC §5.3).
"""
function enumerate_terms(d::Diagram)
    e = TermEnumerator(d)
    out = Pair{String,Vector{Tuple{Term,TermInfo}}}[]
    over = String[]
    deep = String[]
    for o in d.objects
        o isa DataObject && continue
        try
            push!(out, o.name => object_terms(e, o.name))
        catch err
            if err isa TooManyTerms
                err.object in over || push!(over, err.object)
            elseif err isa TermsTooDeep
                push!(deep, o.name)
            else
                rethrow()
            end
        end
    end
    if !isempty(deep)
        throw(DiagramError([Problem("too-many-terms", json_pointer("objects", d.object_index[o] - 1),
                                    "object $(repr(o)) has terms that nest more than $MAX_TERM_DEPTH arrows deep " *
                                    "(SPEC §5.3)") for o in deep]))
    end
    if !isempty(over)
        sort!(over; by = name -> d.object_index[name])
        throw(DiagramError([Problem("too-many-terms", json_pointer("objects", d.object_index[o] - 1),
                                    "object $(repr(o)) has more than $(term_bound(d)) terms; raise max_terms " *
                                    "or write explicit equations") for o in over]))
    end
    return out
end

function automatic_equations(d::Diagram, terms)
    eqs = Equation[]
    for (object, ts) in terms, data in data_objects(d)
        group = [(t, i) for (t, i) in ts if i.data_object == data]
        for a in eachindex(group), b in a+1:lastindex(group)
            (ta, ia), (tb, ib) = group[a], group[b]
            (ia.trainable || ib.trainable) || continue
            lhs, rhs = ia.trainable ? (ta, tb) : (tb, ta)
            push!(eqs, Equation("$lhs = $rhs", object, data, lhs, rhs, object_distance(d, object), 1.0, false))
        end
    end
    return eqs
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
    explicit = Tuple{Int,Equation}[]
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
                                     something(eq.weight, 1.0), true)))
    end
    isempty(problems) || throw(DiagramError(problems))

    by_pair = Dict{Set{Term},Tuple{Int,Equation}}(Set([e.lhs, e.rhs]) => (k, e) for (k, e) in explicit)
    used = Set{Int}()
    result = Tuple{String,Equation}[]
    if d.automatic
        for eq in automatic_equations(d, terms)
            hit = get(by_pair, Set([eq.lhs, eq.rhs]), nothing)
            if hit !== nothing && hit[2].object == eq.object
                push!(used, hit[1])
                push!(result, (json_pointer("equations", "explicit", hit[1]), hit[2]))
            else
                push!(result, (json_pointer("objects", d.object_index[eq.object] - 1), eq))
            end
        end
    end
    for (k, e) in explicit
        k in used || push!(result, (json_pointer("equations", "explicit", k), e))
    end

    named = Set(json_pointer("equations", "explicit", k - 1) for (k, e) in enumerate(d.explicit) if e.name !== nothing)
    names = Dict{String,String}()
    for (place, eq) in result
        if haskey(names, eq.name)
            push!(problems, Problem("duplicate-name", place * (place in named ? "/name" : ""),
                                    "two equations are named $(repr(eq.name))"))
        end
        names[eq.name] = place
        if object_named(d, eq.object) isa CategoricalObject
            encoding = term_info(d, eq.lhs).encoding
            encoding == "logits" ||
                push!(problems, Problem("distance-input-mismatch", place,
                                        "$(eq.distance.name) needs logits on the left, but $(eq.lhs) has encoding $encoding"))
        end
    end
    isempty(problems) || throw(DiagramError(problems))
    return [eq for (_, eq) in result]
end
