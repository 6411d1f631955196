# Which format version a feature needs (SPEC §1): a document may only use what its declared
# version has. A 1.1 reader reads a 1.0 document unchanged, so `stop_gradient` in a document that
# declares 1.0 is `bad-value` at its op, as a 1.0 reader reports an op it does not know.

"The function ops a version added, with the version that added them (SPEC §1, §3.2)."
const OP_SINCE = Dict{String,String}("stop_gradient" => "1.1")

"""
    version_tuple(version) -> Tuple{Int,Int}

`"1.10"` → `(1, 10)`; a part too large for `Int` counts as `typemax(Int)`; a string that is not
`MAJOR.MINOR` counts as `(0, 0)` (reading reports it).
"""
function version_tuple(version::AbstractString)
    m = match(r"\A([0-9]+)\.([0-9]+)\z", version)
    m === nothing && return (0, 0)
    part(s) = something(tryparse(Int, s), typemax(Int))
    return (part(m[1]), part(m[2]))
end

"The later of two versions (`a` when they are equal)."
later_version(a::AbstractString, b::AbstractString) = version_tuple(b) > version_tuple(a) ? String(b) : String(a)

"Whether a document of `version` may use function op `op` (the ops of 1.0 always may)."
function op_allowed(op::AbstractString, version::AbstractString)
    since = get(OP_SINCE, op, nothing)
    return since === nothing || version_tuple(version) >= version_tuple(since)
end
