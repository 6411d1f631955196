# Top-1 accuracy of the equations whose right-hand side is a label column, for `dlearn eval
# --backend julia`: the counts the Python library's `evaluation.py` makes from the same values.

"""
    top1_hits(logits, labels) -> (right, count)

How many label entries the largest logit gets right. Storage layout: `logits` of logical shape
`[B] + S + [C]` is `(C, sₙ, …, s₁, B)`, `labels` (0-based class indices, logical `[B] + S`) is
`(sₙ, …, s₁, B)`; both are read in the same linear order once the class axis is reduced.
"""
function top1_hits(logits::AbstractArray, labels::AbstractArray{<:Integer})
    predicted = map(i -> i[1] - 1, argmax(logits; dims = 1))  # CartesianIndex → 0-based class
    return count(vec(predicted) .== vec(labels)), length(labels)
end

"""
    evaluate_with_hits(c::CompiledDiagram, batch::Batch, names) -> (Evaluation, Dict{String,Tuple{Int,Int}})

[`evaluate_diagram`](@ref), and for each equation named in `names` the [`top1_hits`](@ref) of its
left-hand side's value against its right-hand side's labels, from one evaluation of the terms.
"""
function evaluate_with_hits(c::CompiledDiagram, batch::Batch, names)
    values = term_values(c.models, c, batch)
    hits = Dict{String,Tuple{Int,Int}}()
    for (eq, step) in zip(c.equations, c.plan.equations)
        eq.name in names || continue
        hits[eq.name] = top1_hits(values[step.lhs], values[step.rhs])
    end
    return evaluation_of(c, values), hits
end
