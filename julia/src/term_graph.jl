# The shape of a diagram's terms, found in linear time before any term is built (SPEC §5.3),
# following the Python library's term_graph.py step for step.

"""
    TermGraph(d::Diagram)

Which objects are *inhabited* (have terms at all) and which non-data arrows are *live* (all their
sources inhabited; only live arrows occur in terms), the strongly connected components of the live
arrows (ids in topological order), whether each component has an arrow inside it (`cyclic`: only
there can a forbidden arrow matter), and each component's depth bound (SPEC §5.3). Linear in the
size of the diagram: no per-object sets.
"""
struct TermGraph
    inhabited::Set{String}
    live::Set{String}
    component::Dict{String,Int}
    members::Vector{Vector{String}}
    cyclic::Vector{Bool}
    depth::Vector{Int}
    entry::Vector{Vector{Tuple{Int,Int}}}  # per component: (component entered from, 0 or 1 arrow)
end

function TermGraph(d::Diagram)
    inhabited, live = live_arrows(d)
    component, members = live_components(d, inhabited, live)
    cyclic, depth, entry = component_depths(d, live, component, length(members))
    return TermGraph(inhabited, live, component, members, cyclic, depth, entry)
end

function live_arrows(d::Diagram)
    inhabited = Set{String}()
    live = Set{String}()
    users = Dict{String,Vector{String}}()
    need = Dict{String,Int}()
    todo = String[]
    for a in d.arrows
        if a isa DataArrow
            if !(a.target in inhabited)
                push!(inhabited, a.target)
                push!(todo, a.target)
            end
            continue
        end
        distinct = unique(a.sources)
        need[a.name] = length(distinct)
        for s in distinct
            push!(get!(Vector{String}, users, s), a.name)
        end
    end
    while !isempty(todo)
        for name in get(users, pop!(todo), String[])
            need[name] -= 1
            if need[name] == 0
                push!(live, name)
                target = arrow_named(d, name).target
                if !(target in inhabited)
                    push!(inhabited, target)
                    push!(todo, target)
                end
            end
        end
    end
    return inhabited, live
end

# Tarjan's algorithm without recursion, objects as roots in declaration order, arrows in declaration order.
function live_components(d::Diagram, inhabited::Set{String}, live::Set{String})
    succ = Dict{String,Vector{String}}()
    for a in d.arrows
        a.name in live || continue
        for s in a.sources
            push!(get!(Vector{String}, succ, s), a.target)
        end
    end
    index = Dict{String,Int}()
    low = Dict{String,Int}()
    on_stack = Set{String}()
    stack = String[]
    found = Vector{String}[]  # reverse topological order
    for o in d.objects
        root = o.name
        (root in inhabited && !haskey(index, root)) || continue
        n = length(index)
        index[root] = n
        low[root] = n
        push!(stack, root)
        push!(on_stack, root)
        work = Tuple{String,Int}[(root, 1)]
        while !isempty(work)
            node, next_position = work[end]
            successors = get(succ, node, String[])
            if next_position <= length(successors)
                work[end] = (node, next_position + 1)
                nxt = successors[next_position]
                if !haskey(index, nxt)
                    n = length(index)
                    index[nxt] = n
                    low[nxt] = n
                    push!(stack, nxt)
                    push!(on_stack, nxt)
                    push!(work, (nxt, 1))
                elseif nxt in on_stack
                    low[node] = min(low[node], index[nxt])
                end
                continue
            end
            pop!(work)
            if !isempty(work)
                parent = work[end][1]
                low[parent] = min(low[parent], low[node])
            end
            if low[node] == index[node]
                group = String[]
                while true
                    x = pop!(stack)
                    delete!(on_stack, x)
                    push!(group, x)
                    x == node && break
                end
                push!(found, group)
            end
        end
    end
    members = reverse(found)
    component = Dict{String,Int}()
    for (c, group) in enumerate(members), x in group
        component[x] = c
    end
    return component, members
end

function component_depths(d::Diagram, live::Set{String}, component::Dict{String,Int}, count::Int)
    weight = zeros(Int, count)
    cyclic = fill(false, count)
    entry = [Tuple{Int,Int}[] for _ in 1:count]
    for a in d.arrows
        a.name in live || continue
        c = component[a.target]
        internal = any(s -> component[s] == c, a.sources)
        if internal
            weight[c] += 1
            cyclic[c] = true
        end
        for s in a.sources
            component[s] == c || push!(entry[c], (component[s], internal ? 0 : 1))
        end
    end
    depth = zeros(Int, count)
    for c in 1:count  # topological order: every entering component comes first
        before = 0
        for (p, step) in entry[c]
            before = max(before, depth[p] + step)
        end
        depth[c] = weight[c] + before
    end
    return cyclic, depth, entry
end

"""
    too_deep_objects(g::TermGraph, d::Diagram; limit = MAX_TERM_DEPTH) -> Vector{String}

The objects SPEC §5.3 reports for depth, in declaration order: those of a component whose depth
bound passes `limit` while no component it is entered from does.
"""
function too_deep_objects(g::TermGraph, d::Diagram; limit::Int = MAX_TERM_DEPTH)
    deep = [x > limit for x in g.depth]
    first_deep = Set{Int}(c for c in eachindex(deep) if deep[c] && !any(p -> deep[p[1]], g.entry[c]))
    return String[o.name for o in d.objects if haskey(g.component, o.name) && g.component[o.name] in first_deep]
end
