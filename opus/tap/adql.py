"""ADQL 2.0 to PostgreSQL, checked before it runs: the one gate between a TAP query and
the database.

:func:`translate` turns a query into the one PostgreSQL SELECT that will run, or raises
:class:`opus.errors.ParameterError` (400) naming the problem. The translation is
queryparser's (``ADQLQueryTranslator(...).to_postgresql()``); the checks are:

1. one statement: a ``;`` other than a trailing one is refused (queryparser would quietly
   keep only the first statement);
2. only tables of the schemas ``provenance`` and ``tap_schema``, each named with its schema
   (queryparser's :class:`PostgreSQLQueryProcessor` lists them, subqueries and joins
   included);
3. only the functions of ADQL 2.0's standard set (section 2.3: the mathematical,
   trigonometric and aggregate functions), as queryparser names them in PostgreSQL. Checked
   twice: by the processor's list, and by a lexical scan of the SQL text in which every
   name followed by ``(`` must be such a function or an SQL keyword. The scan does not
   depend on the parser's view of the query, so a function the parser let through
   unlisted (``set_config``, ``current_setting``, ``pg_read_file``, ``pg_sleep``, ...) is
   still refused.

Translations are cached (queryparser takes 0.2 s for a one-table query, seconds for a
join of four: most of a query's time). The cache is keyed by the query's *shape*: each
string literal is replaced by a placeholder literal, the shape is translated and checked
once, and the literals are put back into the PostgreSQL text, where they are the same
tokens (ADQL 2.0 section 2.1.4 and PostgreSQL both write a literal ``'...'`` with ``''``
for a quote). So the same search for another value costs no translation. A shape whose
placeholders do not come out exactly once each (a literal queryparser rewrites) is
translated as it is, uncached.

Why it matters: the views of the ``provenance`` schema filter rows by the viewer held in
transaction-local settings (migration 0006); ``set_config`` is the only way a SELECT could
change them, and it is not in the set.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from queryparser.adql import ADQLQueryTranslator
from queryparser.exceptions import QueryError, QuerySyntaxError
from queryparser.postgresql import PostgreSQLQueryProcessor

from opus.errors import ParameterError

#: The schemas a query may read.
SCHEMAS = frozenset({"provenance", "tap_schema"})

#: ADQL 2.0 functions, as queryparser writes them in PostgreSQL (LOG -> ln, LOG10 -> log,
#: TRUNCATE -> trunc, RAND -> random).
FUNCTIONS = frozenset({
    "abs", "ceiling", "degrees", "exp", "floor", "ln", "log", "mod", "pi", "power",
    "radians", "random", "round", "sqrt", "trunc",
    "acos", "asin", "atan", "atan2", "cos", "cot", "sin", "tan",
    "avg", "count", "max", "min", "sum",
})

#: Words that may precede ``(`` in the SQL without being a function call.
KEYWORDS = frozenset({
    "all", "and", "as", "between", "by", "distinct", "else", "except", "exists", "from",
    "having", "ilike", "in", "intersect", "is", "join", "like", "limit", "not", "offset",
    "on", "or", "select", "then", "union", "using", "when", "where",
})

_TOKEN = re.compile(r"""
      (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<comment>--|/\*)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<space>\s+)
    | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) of the tokens of ``text``, white space left out."""
    found = [(str(match.lastgroup), match.group()) for match in _TOKEN.finditer(text)]
    return [token for token in found if token[0] != "space"]


def _prefixed_string(text: str) -> str | None:
    """A name glued to a string literal (``E'...'``, ``U&'...'``), which PostgreSQL reads
    with other rules than this scan; None if there is none."""
    previous = ("", "")
    for match in _TOKEN.finditer(text):
        token = (str(match.lastgroup), match.group())
        if token[0] == "string" and (previous[0] == "word" or previous[1] == "&"):
            return previous[1]
        previous = token
    return None


def _single_statement(adql: str) -> str:
    """``adql`` without a trailing ``;``; refuses a second statement."""
    tokens = _tokens(adql)
    while tokens and tokens[-1] == ("other", ";"):
        tokens.pop()
    if any(token == ("other", ";") for token in tokens):
        raise ParameterError("QUERY", "only one statement may be given (found ';')")
    return adql.strip().rstrip(";").rstrip()


def _called_names(sql: str) -> list[str]:
    """Every name directly followed by ``(`` in ``sql``, lower case; refuses text the
    scan cannot read safely (comments, prefixed or dollar-quoted strings)."""
    prefix = _prefixed_string(sql)
    if prefix is not None:
        raise ParameterError("QUERY", f"prefixed string literals are not supported "
                                      f"({prefix}'...')")
    tokens = _tokens(sql)
    names = []
    for (kind, text), (next_kind, next_text) in zip(tokens, tokens[1:] + [("", "")]):
        if kind == "comment" or (kind == "other" and text == "$"):
            raise ParameterError("QUERY", "comments and dollar quotes are not supported")
        if kind in {"word", "quoted"} and next_text == "(":
            name = text[1:-1].replace('""', '"') if kind == "quoted" else text
            names.append(name.lower())
    return names


@dataclass(frozen=True)
class Translated:
    """The PostgreSQL text of a checked query and the tables it reads."""

    sql: str
    tables: tuple[str, ...]


def _syntax_problem(error: QuerySyntaxError) -> str:
    spots = error.args[0] if error.args else []
    try:
        line, column, near = spots[0]
        return f"ADQL syntax error at line {line}, column {column + 1}, near '{near}'"
    except (IndexError, TypeError, ValueError):
        return f"ADQL syntax error: {error}"


def _placeholder(number: int) -> str:
    return f"'opus_literal_{number}_x'"


def _shape(query: str) -> tuple[str, list[str]]:
    """``query`` with its string literals replaced by placeholders, and the literals."""
    literals: list[str] = []
    parts: list[str] = []
    for match in _TOKEN.finditer(query):
        if match.lastgroup == "string":
            parts.append(_placeholder(len(literals)))
            literals.append(match.group())
        else:
            parts.append(match.group())
    return "".join(parts), literals


def translate(adql: str) -> Translated:
    """The checked PostgreSQL translation of the ADQL query ``adql`` (module docstring)."""
    if not adql.strip():
        raise ParameterError("QUERY", "required: an ADQL query")
    query = _single_statement(adql)
    shape, literals = _shape(query)
    if literals:
        template = _translate_cached(shape)
        sql = template.sql
        placeholders = [_placeholder(number) for number in range(len(literals))]
        if all(sql.count(p) == 1 for p in placeholders) and \
                not any(p in literal for p in placeholders for literal in literals):
            pieces = re.split("(" + "|".join(map(re.escape, placeholders)) + ")", sql)
            values = dict(zip(placeholders, literals))
            return Translated("".join(values.get(piece, piece) for piece in pieces),
                              template.tables)
        return _translate(query)
    return _translate_cached(query)


@functools.lru_cache(maxsize=1024)
def _translate_cached(query: str) -> Translated:
    return _translate(query)


def _translate(query: str) -> Translated:
    first = _tokens(query)[0]
    if first[0] != "word" or first[1].lower() != "select":
        raise ParameterError("QUERY", "only SELECT queries are accepted")
    try:
        sql = ADQLQueryTranslator(query).to_postgresql()
    except QuerySyntaxError as error:
        raise ParameterError("QUERY", _syntax_problem(error)) from None
    except QueryError as error:
        raise ParameterError("QUERY", f"ADQL: {error}") from None
    sql = sql.strip().rstrip(";").rstrip()
    try:
        processor = PostgreSQLQueryProcessor(sql + ";")
    except QuerySyntaxError as error:
        raise ParameterError("QUERY", f"refused: {_syntax_problem(error)[len('ADQL '):]} "
                                      f"of the PostgreSQL translation (a function that is "
                                      f"not ADQL 2.0, or a construct this service does "
                                      f"not support)") from None
    except QueryError as error:
        raise ParameterError("QUERY", f"ADQL: {error}") from None
    tables = []
    for schema, table in processor.tables:
        if not schema or str(schema).lower() not in SCHEMAS:
            raise ParameterError("QUERY", f"table {schema}.{table} is not available: only "
                                          f"the tables of the schemas provenance and "
                                          f"tap_schema may be queried (see /tap/tables)")
        tables.append(f"{schema}.{table}".lower())
    for name in [str(f).lower() for f in processor.functions] + _called_names(sql):
        if name not in FUNCTIONS and name not in KEYWORDS:
            raise ParameterError("QUERY", f"function {name} is not available: only the "
                                          f"ADQL 2.0 mathematical, trigonometric and "
                                          f"aggregate functions are")
    return Translated(sql, tuple(sorted(set(tables))))
