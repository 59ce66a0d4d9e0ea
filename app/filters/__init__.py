"""SCIM filters (RFC 7644 §3.4.2.2): text → our own immutable AST → in-memory evaluation.

Pipeline. `parse()` (`parser`) scans the text once itself for string, number and bare-word
literals (`literals`), hands the rest to scim2-filter-parser 0.7.0's lexer and parser, and walks
*their* AST into ours (`tree`) while resolving every attribute against the schema documents
(`build`). Nothing else of that package is used: its transpilers look names up case-sensitively,
silently drop unknown attributes, ignore `caseExact` and do not escape `%`/`_`. The database
layer compiles the same AST into SQL (`app.store.filter_sql`); `matches()` (`evaluate`) is the
reference both are tested against, and `render()` (`render`) turns an AST back into text.
"""

from app.datetimes import parse as parse_datetime
from app.filters.evaluate import matches, matches_element
from app.filters.parser import parse, parse_across, parse_value_filter
from app.filters.render import render
from app.filters.tree import (
    And,
    AttrRef,
    Compare,
    Expr,
    Leaf,
    Not,
    Or,
    Present,
    Value,
    ValuePath,
    fold_logic,
)

__all__ = [
    "And",
    "AttrRef",
    "Compare",
    "Expr",
    "Leaf",
    "Not",
    "Or",
    "Present",
    "Value",
    "ValuePath",
    "fold_logic",
    "matches",
    "matches_element",
    "parse",
    "parse_across",
    "parse_datetime",
    "parse_value_filter",
    "render",
]
