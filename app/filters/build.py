"""Walk scim2-filter-parser's AST into ours, resolving every attribute against the schemas.

Only their lexer and parser are used: their transpilers look attribute names up
case-sensitively, silently drop comparisons on attributes they cannot map (a filter then
matches *more*), ignore `caseExact` and do not escape `%`/`_` in `co`/`sw`/`ew`. Here an
unknown attribute is 400 `invalidFilter`, never ignored.

Worked around in scim2-filter-parser 0.7.0: its operator table gives `and` and `or` the same
precedence, so `a or b and c` comes out as `(a or b) and c`. We flatten each parenthesis level
back into its operand/operator sequence (their AST marks parentheses with an extra `Filter`
wrapper) and rebuild it with `and` binding tighter than `or`, as RFC 7644 §3.4.2.2 requires.

Leniency: `emails[type eq "work"].value eq "x"` (a value path followed by a sub-attribute, sent
by Entra ID) becomes `ValuePath(emails, type eq "work" and value eq "x")`, so both conditions
bind to the same e-mail.

Normalisation (so the evaluator and the database compiler have fewer cases):

* A comparison on a complex attribute that has a `value` sub-attribute compares that
  sub-attribute (`emails co "x"` ≡ `emails.value co "x"`, `members eq "<id>"`, RFC 7644 §3.4.2.2).
* `x eq null` becomes `not (x pr)` and `x ne null` becomes `x pr`: unassigned, null and empty
  are the same state (RFC 7643 §2.5). `Compare.value` is therefore never None; other operators
  with `null` are refused.
* dateTime literals become timezone-aware `datetime` objects.

Attributes that are never returned (`password`) cannot be filtered on at all: a filter would
let a client test guesses.

Across resource types (`POST /.search` at the root, `others` set): an attribute this type lacks
but another one defines has no value here (RFC 7644 §3.4.2.1), so its condition is a constant
(`absent`) that the surrounding `and`/`or`/`not` fold away (`join`). The result (`Built`) is
then an expression, or True (every resource of this type matches) or False (none does).
"""

from __future__ import annotations

from functools import reduce
from typing import Any, TypeVar

from scim2_filter_parser import ast as their

from app.datetimes import parse as parse_datetime
from app.errors import InvalidFilter
from app.filters.literals import Literal, Prepared
from app.filters.tree import (
    COMPARE_OPS,
    ORDER_OPS,
    STRING_TYPES,
    SUBSTRING_OPS,
    And,
    AttrRef,
    Compare,
    Expr,
    Not,
    Or,
    Present,
    Value,
    ValuePath,
)
from scim_schemas import Attribute, ResourceType

_INT64 = 2**63
T = TypeVar("T")


def _sequence(node: Any) -> list[Any]:
    """The operands and `and`/`or` operators of one parenthesis level, in text order.

    Iterative, so a long `a or b or c …` chain cannot exhaust the stack.
    """
    out: list[Any] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if (
            isinstance(item, their.Filter)
            and isinstance(item.expr, their.LogExpr)
            and not item.negated
            and item.namespace is None
        ):
            log = item.expr
            stack.extend((log.expr2, str(log.op).lower(), log.expr1))
        else:
            out.append(item)
    return out


def _unexpected() -> InvalidFilter:
    return InvalidFilter("The filter could not be parsed.")


class _Absent(Exception):
    """An attribute this resource type lacks and another one searched with it defines."""


Built = Expr | bool
"""What a parenthesis level builds to: an expression, or a constant when it depends only on
attributes absent from this resource type (see the module docstring)."""


class Builder:
    """Walk scim2-filter-parser's AST into ours, validating against the schema as we go."""

    def __init__(
        self,
        resource_type: ResourceType,
        prepared: Prepared,
        max_nodes: int,
        others: tuple[ResourceType, ...] = (),
    ):
        self.resource_type = resource_type
        self.prepared = prepared
        self.max_nodes = max_nodes
        self.others = others
        self.count = 0
        self.used: set[int] = set()

    def add(self, node: T) -> T:
        """Count one node of the filter (`FILTER_MAX_NODES`), also one folded into a constant."""
        self.count += 1
        if self.count > self.max_nodes:
            raise InvalidFilter(
                f"The filter has more than the limit of {self.max_nodes} expressions."
            )
        return node

    def join(self, kind: type[And] | type[Or], left: Built, right: Built) -> Built:
        """`left and/or right`; a constant side decides the result or drops out."""
        self.add(None)
        decisive = kind is Or  # true decides an `or`, false an `and`
        for one, other in ((left, right), (right, left)):
            if isinstance(one, bool):
                return one if one is decisive else other
        return kind(left, right)

    def filter(self, node: Any, parent: Attribute | None) -> Built:
        """One parenthesis level; `and` binds tighter than `or` (RFC 7644 §3.4.2.2)."""
        items = _sequence(node)
        operands = [self.atom(item, parent) for item in items[0::2]]
        groups: list[list[Built]] = [[operands[0]]]
        for op, operand in zip(items[1::2], operands[1:], strict=True):
            if op == "and":
                groups[-1].append(operand)
            elif op == "or":
                groups.append([operand])
            else:
                raise _unexpected()
        conjunctions = [reduce(lambda a, b: self.join(And, a, b), group) for group in groups]
        return reduce(lambda a, b: self.join(Or, a, b), conjunctions)

    def atom(self, node: Any, parent: Attribute | None) -> Built:
        if not isinstance(node, their.Filter):
            raise _unexpected()
        if node.namespace is not None:
            return self.value_path(node.namespace, node.expr, parent)
        inner = node.expr
        if node.negated:
            negated = self.add(self.filter(inner, parent))
            return not negated if isinstance(negated, bool) else Not(negated)
        if isinstance(inner, their.Filter):  # parentheses
            return self.filter(inner, parent)
        if isinstance(inner, their.AttrExpr):
            return self.attr_exp(inner, parent)
        raise _unexpected()

    def value_path(self, namespace: Any, inner: Any, parent: Attribute | None) -> Built:
        try:
            attribute = self.value_path_attribute(namespace, parent)
        except _Absent:
            return self.add(False)  # no value here, so no value matching `[...]`
        if namespace.sub_attr is not None:
            raise InvalidFilter(
                f"'[...]' must follow a complex attribute, not a sub-attribute: write "
                f"'{attribute.name}[...]', not '{attribute.name}.{namespace.sub_attr.value}[...]'."
            )
        return self.add(ValuePath(AttrRef(attribute), self.element_filter(inner, attribute)))

    def element_filter(self, inner: Any, attribute: Attribute) -> Expr:
        """The filter inside `attribute[...]`: its names are sub-attributes, never absent."""
        built = self.filter(inner, attribute)
        if isinstance(built, bool):
            raise _unexpected()
        return built

    def value_path_attribute(self, namespace: Any, parent: Attribute | None) -> Attribute:
        if parent is not None:
            raise InvalidFilter(f"Filters in '[...]' cannot be nested inside '{parent.name}[...]'.")
        if not isinstance(namespace, their.AttrPath) or not isinstance(namespace.attr_name, str):
            raise InvalidFilter("Filters in '[...]' cannot be nested.")
        name = namespace.attr_name
        path = f"{namespace.uri}:{name}" if namespace.uri else name
        resolved = self.resource_type.resolve(path)
        if resolved is None:
            raise self.unknown(path)
        attribute = resolved.attribute
        if not attribute.is_complex:
            raise InvalidFilter(
                f"'{path}' is not a complex attribute, so it cannot be filtered with '[...]'."
            )
        return attribute

    def unknown(self, path: str) -> Exception:
        """An attribute this type lacks: absent if another type searched with it has it."""
        if any(other.resolve(path) is not None for other in self.others):
            return _Absent(path)
        return _unknown(path)

    def attr_exp(self, node: Any, parent: Attribute | None) -> Built:
        op = str(node.value).lower()
        path = node.attr_path
        if not isinstance(path, their.AttrPath):
            raise _unexpected()
        try:
            if isinstance(path.attr_name, their.Filter):
                return self.entra_value_path(path.attr_name, op, node.comp_value, parent)
        except _Absent:
            return self.add(False)  # no value here, so no value matching `[...]`
        try:
            ref = self.ref(path, parent)
        except _Absent:
            return self.add(self.absent(op, node.comp_value))
        return self.condition(ref, op, node.comp_value)

    def absent(self, op: str, comp_value: Any) -> bool:
        """`attr op value` on an attribute without a value (RFC 7644 §3.4.2.1, RFC 7643 §2.5):
        only `ne` a value and `eq null` hold, as in `app.filters.evaluate`."""
        if op == "pr":
            return False
        if op not in COMPARE_OPS:
            raise InvalidFilter(f"The operator '{op}' is not supported.")
        if self.literal(comp_value).kind != "null":
            return op == "ne"
        if op not in ("eq", "ne"):
            raise InvalidFilter(f"'{op} null' is not allowed; compare null with 'eq' or 'ne'.")
        return op == "eq"

    def entra_value_path(
        self, value_path: Any, op: str, comp_value: Any, parent: Attribute | None
    ) -> Expr:
        """`emails[type eq "work"].value eq "x"` → `emails[type eq "work" and value eq "x"]`.

        Not in the RFC grammar, but Entra ID sends it; the sub-attribute condition must hold
        for the same element as the bracketed filter.
        """
        namespace = value_path.namespace
        attribute = self.value_path_attribute(namespace, parent)
        if namespace.sub_attr is None:
            raise InvalidFilter(
                f"After '{attribute.name}[...]' name a sub-attribute to compare "
                f"(e.g. '{attribute.name}[...].value eq ...')."
            )
        sub = attribute.sub(str(namespace.sub_attr.value))
        if sub is None:
            raise _unknown(f"{attribute.name}.{namespace.sub_attr.value}")
        inner = self.element_filter(value_path.expr, attribute)
        condition = self.condition(AttrRef(attribute, sub), op, comp_value)
        return self.add(ValuePath(AttrRef(attribute), self.add(And(inner, condition))))

    def ref(self, path: Any, parent: Attribute | None) -> AttrRef:
        name, uri = path.attr_name, path.uri
        sub = str(path.sub_attr.value) if path.sub_attr is not None else None
        if not isinstance(name, str):
            raise _unexpected()
        if parent is not None:
            if uri is not None or sub is not None:
                written = f"{uri}:{name}" if uri else name
                written = f"{written}.{sub}" if sub else written
                raise InvalidFilter(
                    f"Inside '{parent.name}[...]' name a sub-attribute of '{parent.name}', "
                    f"not '{written}'."
                )
            target = parent.sub(name)
            if target is None:
                raise _unknown(f"{parent.name}.{name}")
            return AttrRef(parent, target)
        full = f"{uri}:{name}" if uri else name
        full = f"{full}.{sub}" if sub is not None else full
        resolved = self.resource_type.resolve(full)
        if resolved is None:
            raise self.unknown(full)
        return AttrRef(resolved.attribute, resolved.sub)

    def literal(self, comp_value: Any) -> Literal:
        raw = getattr(comp_value, "value", None)
        if isinstance(raw, str) and raw.startswith("#") and raw[1:].isascii() and raw[1:].isdigit():
            index = int(raw[1:])
            if index < len(self.prepared.literals) and index not in self.used:
                self.used.add(index)
                return self.prepared.literals[index]
        raise _unexpected()

    def condition(self, ref: AttrRef, op: str, comp_value: Any) -> Expr:
        if "never" in (ref.attribute.returned, ref.target.returned):
            # A filter on `password` would be an oracle for guessing it (RFC 7644 §7.8 asks
            # that passwords never be exposed; RFC 7643 §7 `returned: never`).
            raise InvalidFilter(f"'{ref.path}' cannot be used in a filter.")
        if op == "pr":
            return self.add(Present(ref))
        if op not in COMPARE_OPS:
            raise InvalidFilter(f"The operator '{op}' is not supported.")
        literal = self.literal(comp_value)
        if literal.kind == "null":
            # RFC 7643 §2.5: unassigned and null are the same state.
            if op == "eq":
                return self.add(Not(self.add(Present(ref))))
            if op == "ne":
                return self.add(Present(ref))
            raise InvalidFilter(f"'{op} null' is not allowed; compare null with 'eq' or 'ne'.")
        if ref.target.is_complex:
            value_sub = ref.target.sub("value")
            if value_sub is None:
                example = next(ref.target.subs()).name
                raise InvalidFilter(
                    f"'{ref.path}' is a complex attribute; compare one of its sub-attributes "
                    f"(e.g. '{ref.path}.{example}')."
                )
            ref = AttrRef(ref.attribute, value_sub)  # RFC 7644 §3.4.2.2: emails eq → emails.value
        return self.add(Compare(ref, op, self.value(ref, op, literal)))

    def value(self, ref: AttrRef, op: str, literal: Literal) -> Value:
        """Check the operator and value against the attribute type (RFC 7644 §3.4.2.2)."""
        target, path = ref.target, ref.path
        kind = target.type
        if op in ORDER_OPS and kind in ("boolean", "binary"):
            raise InvalidFilter(f"'{op}' cannot be used on the {kind} attribute '{path}'.")
        if op in SUBSTRING_OPS and kind not in STRING_TYPES:
            raise InvalidFilter(
                f"'{op}' only applies to string attributes; '{path}' is of type {kind}."
            )
        value = literal.value
        source = self.prepared.source(literal)
        if kind in STRING_TYPES and isinstance(value, str):
            return value
        if kind == "boolean" and isinstance(value, bool):
            return value
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            if not -_INT64 <= value < _INT64:
                raise InvalidFilter(f"The number {source} is out of range for '{path}'.")
            return value
        if kind == "decimal" and isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if kind == "dateTime" and isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is None:
                raise InvalidFilter(
                    f"'{path}' is a dateTime; {source} is not an xsd:dateTime "
                    f'(e.g. "2011-05-13T04:42:34Z").'
                )
            return parsed
        hint = "; put string values in double quotes" if kind in STRING_TYPES else ""
        raise InvalidFilter(f"'{path}' is of type {kind}; {source} is not a {kind} value{hint}.")


def _unknown(path: str) -> InvalidFilter:
    return InvalidFilter(f"Unknown attribute '{path}' in filter.")
