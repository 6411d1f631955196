# Terms: trees of arrows computing a value of an object from a data object (SPEC §5.1), their
# canonical text and their canonical order key (§5.4).

"""
    Term(arrow, args)
    Term(arrow)

`arrow` applied to the terms `args`; a leaf (a data arrow) has no arguments. `string(t)` is the
canonical text, e.g. `"decoder(img, prefix)"`. A term keeps its size (arrow occurrences, leaves
included: SPEC §5.3) and its hash, computed once from its arguments', so a term that shares
subterms hashes and compares in time linear in its distinct subterms, not in its leaves.
"""
struct Term
    arrow::String
    args::Vector{Term}
    arrow_count::Int   # the term's size; saturates at typemax(Int) (only bounds compare with it)
    hashed::UInt

    function Term(arrow::AbstractString, args::Vector{Term})
        name = String(arrow)
        h = hash(name, TERM_SEED)
        n = 1
        for a in args
            h = hash(a.hashed, h)
            n = a.arrow_count > typemax(Int) - n ? typemax(Int) : n + a.arrow_count
        end
        return new(name, args, n, h)
    end
end

const TERM_SEED = 0x5a1f7e3c9b2d4e61 % UInt

Term(arrow::AbstractString) = Term(arrow, Term[])

"""
    term_size(t::Term) -> Int

The number of arrow occurrences in `t`, leaves included (SPEC §5.3).
"""
term_size(t::Term) = t.arrow_count

# Structural equality, each pair of subterms compared once (shared subterms cost once).
function Base.:(==)(a::Term, b::Term)
    a === b && return true
    (a.hashed == b.hashed && a.arrow_count == b.arrow_count) || return false
    seen = Set{Tuple{UInt,UInt}}()
    todo = Tuple{Term,Term}[(a, b)]
    while !isempty(todo)
        x, y = pop!(todo)
        x === y && continue
        (x.hashed == y.hashed && x.arrow_count == y.arrow_count && x.arrow == y.arrow &&
         length(x.args) == length(y.args)) || return false
        key = (objectid(x), objectid(y))
        key in seen && continue
        push!(seen, key)
        for pair in zip(x.args, y.args)
            push!(todo, pair)
        end
    end
    return true
end

Base.hash(t::Term, h::UInt) = hash(t.hashed, h)

function Base.print(io::IO, t::Term)
    print(io, t.arrow)
    isempty(t.args) && return
    print(io, '(')
    join(io, t.args, ", ")
    print(io, ')')
end

Base.show(io::IO, t::Term) = print(io, "Term(", repr(string(t)), ")")

"""
    term_arrows(t::Term) -> Vector{String}

Every arrow of the term in prefix order, with repeats.
"""
function term_arrows(t::Term)
    out = [t.arrow]
    for a in t.args
        append!(out, term_arrows(a))
    end
    return out
end

"""
    term_leaves(t::Term) -> Vector{Term}

The leaves (data arrows) of the term, left to right.
"""
term_leaves(t::Term) = isempty(t.args) ? [t] : Term[leaf for a in t.args for leaf in term_leaves(a)]

"""
    subterms(t::Term) -> Vector{Term}

All subterms, children before parents: an evaluation order.
"""
function subterms(t::Term)
    out = Term[]
    for a in t.args
        append!(out, subterms(a))
    end
    push!(out, t)
    return out
end

"""
    term_key(d::Diagram, t::Term) -> Vector{Int}

The canonical order key (SPEC §5.4): the arrows' declaration positions in prefix order.
Keys compare lexicographically.
"""
term_key(d::Diagram, t::Term) = [arrow_position(d, a) for a in term_arrows(t)]

"""
    TermSyntaxError(message, offset)

Thrown by [`parse_term`](@ref); `offset` is the 0-based character offset of the problem.
"""
struct TermSyntaxError <: Exception
    message::String
    offset::Int
end

Base.showerror(io::IO, e::TermSyntaxError) = print(io, e.message)

is_name_start(c::Char) = ('A' <= c <= 'Z') || ('a' <= c <= 'z') || c == '_'
is_name_char(c::Char) = is_name_start(c) || ('0' <= c <= '9')

function term_tokens(text::AbstractString)
    chars = collect(text)
    tokens = Tuple{Symbol,String,Int}[]  # (kind, text, 0-based offset); kind :name, :open, :close, :comma
    i = 1
    while i <= length(chars)
        c = chars[i]
        if isspace(c)
            i += 1
        elseif is_name_start(c)
            j = i
            while j < length(chars) && is_name_char(chars[j+1])
                j += 1
            end
            push!(tokens, (:name, String(chars[i:j]), i - 1))
            i = j + 1
        elseif c in ('(', ')', ',')
            push!(tokens, (c == '(' ? :open : c == ')' ? :close : :comma, string(c), i - 1))
            i += 1
        else
            throw(TermSyntaxError("unexpected character $(repr(c)) at offset $(i - 1)", i - 1))
        end
    end
    return tokens, length(chars)
end

"""
    MAX_TERM_DEPTH

The most arrows on a root-to-leaf path of a term written as text (SPEC §6.2), and the most
non-data arrows on such a path of an enumerated term: objects whose depth bound passes it are
`too-many-terms` (SPEC §5.3, checked by [`too_deep_objects`](@ref) before enumerating).
"""
const MAX_TERM_DEPTH = 100

"""
    parse_term(text::AbstractString) -> Term

Parse `name` or `name(term, ...)` (spaces allowed between tokens, at most [`MAX_TERM_DEPTH`](@ref)
arrows deep) into a [`Term`](@ref); throws [`TermSyntaxError`](@ref) otherwise.
"""
function parse_term(text::AbstractString)
    tokens, len = term_tokens(text)
    i = 1
    offset(k) = k <= length(tokens) ? tokens[k][3] : len
    function expect_name()
        if i > length(tokens) || tokens[i][1] != :name
            got = i <= length(tokens) ? repr(tokens[i][2]) : "the end"
            throw(TermSyntaxError("expected an arrow name at offset $(offset(i)), found $got", offset(i)))
        end
        i += 1
        return tokens[i-1][2]
    end
    function term(depth)
        name = expect_name()
        if i <= length(tokens) && tokens[i][1] == :open
            depth >= MAX_TERM_DEPTH &&
                throw(TermSyntaxError("the term nests more than $MAX_TERM_DEPTH arrows deep (at offset $(offset(i)))", offset(i)))
            i += 1
            args = [term(depth + 1)]
            while i <= length(tokens) && tokens[i][1] == :comma
                i += 1
                push!(args, term(depth + 1))
            end
            if i > length(tokens) || tokens[i][1] != :close
                throw(TermSyntaxError("expected ',' or ')' at offset $(offset(i))", offset(i)))
            end
            i += 1
            return Term(name, args)
        end
        return Term(name)
    end
    result = term(1)
    i == length(tokens) + 1 ||
        throw(TermSyntaxError("unexpected $(repr(tokens[i][2])) at offset $(offset(i)) after a complete term", offset(i)))
    return result
end
