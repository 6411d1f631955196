# The package's one exception type, as in the Python library (errors.py): every problem has a
# stable code (SPEC §10), a place and a message.

"""
    Problem(code, pointer, message)

One thing wrong with an input: a stable `code` from SPEC §10, where it is (`pointer`: an RFC 6901
JSON pointer into the diagram document such as `"/arrows/3/architecture/layers/0"`, or `file` or
`file#key` for weights and batch files) and a `message` for people.
"""
struct Problem
    code::String
    pointer::String
    message::String
end

Base.show(io::IO, p::Problem) = print(io, isempty(p.pointer) ? "/" : p.pointer, ": ", p.message, " [", p.code, "]")

"""
    DiagramError(problems)
    DiagramError(code, pointer, message)

The exception thrown for every invalid input: a diagram, a weights file, a batch, a binding.
`err.problems` holds every [`Problem`](@ref) found, in the order found; [`error_code`](@ref) and
[`error_pointer`](@ref) give those of the first.
"""
struct DiagramError <: Exception
    problems::Vector{Problem}
    function DiagramError(problems::AbstractVector{Problem})
        isempty(problems) && throw(ArgumentError("a DiagramError needs at least one problem"))
        return new(collect(Problem, problems))
    end
end

DiagramError(problem::Problem) = DiagramError([problem])
DiagramError(code::AbstractString, pointer::AbstractString, message::AbstractString) =
    DiagramError(Problem(code, pointer, message))

"""
    error_code(err::DiagramError) -> String

The code of the first problem, e.g. `"shape-mismatch"`.
"""
error_code(err::DiagramError) = err.problems[1].code

"""
    error_pointer(err::DiagramError) -> String

The pointer of the first problem, e.g. `"/arrows/4/architecture/layers/0"` or `"batch.safetensors#y"`.
"""
error_pointer(err::DiagramError) = err.problems[1].pointer

function Base.showerror(io::IO, err::DiagramError)
    if length(err.problems) == 1
        print(io, "DiagramError: ", err.problems[1])
    else
        print(io, "DiagramError: ", length(err.problems), " problems:")
        for p in err.problems
            print(io, "\n  ", p)
        end
    end
end

"""
    json_pointer(parts...) -> String

An RFC 6901 JSON pointer from path parts (strings or 0-based integers), escaping `~` and `/`:
`json_pointer("arrows", 3, "name") == "/arrows/3/name"`; no parts give `""`, the whole document.
"""
json_pointer(parts...) = join("/" * replace(string(p), "~" => "~0", "/" => "~1") for p in parts)
