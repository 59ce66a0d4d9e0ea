"""SCIM PATCH (RFC 7644 §3.5.2) as pure functions over canonical resource dicts.

`parse_patch_request` (`operations`) checks the PatchOp envelope and turns every operation's
`path` into a `Path` bound to the schema; `apply_operations` (`apply`) applies the operations,
in order, to a copy of a canonical resource dict (see `app.marshal`) and returns the copy.

Attribute names are case-insensitive everywhere (RFC 7643 §2.1), every value goes through
`app.marshal.coerce`, and mutability is enforced as RFC 7644 §3.5.2 asks. The dialects of the
two IdPs we serve (see the README's IdP notes) are accepted where they are handled and
commented there: Entra ID's capitalised ops, string booleans, bare manager ids, `path: manager`,
creating an element on `attr[type eq "x"].sub`, member removal by value array and dotted or
URN-qualified keys in a path-less value; Okta's own `id` inside a rename.

A group's members are never applied as a list (a group can have 100,000 of them):
`member_commands` (`members`) turns every `members` operation, in any of the RFC's, Okta's and
Entra ID's forms, into a command (`AddMembers`, `RemoveMembers`, `RemoveMatching`,
`RemoveAllMembers`, `ReplaceMembers`) that `app.store.memberships` executes as single-row
inserts and deletes, and `member_ids` reads the `members` of a POST or PUT body.
"""

from app.patch.apply import apply_operations
from app.patch.members import (
    AddMembers,
    MemberCommand,
    MemberWriter,
    RemoveAllMembers,
    RemoveMatching,
    RemoveMembers,
    ReplaceMembers,
    member_commands,
    member_ids,
    replace_members,
)
from app.patch.operations import (
    ADD,
    OPS,
    REMOVE,
    REPLACE,
    Operation,
    Path,
    expand_operations,
    parse_patch_request,
    parse_path,
)

__all__ = [
    "ADD",
    "OPS",
    "REMOVE",
    "REPLACE",
    "AddMembers",
    "MemberCommand",
    "MemberWriter",
    "Operation",
    "Path",
    "RemoveAllMembers",
    "RemoveMatching",
    "RemoveMembers",
    "ReplaceMembers",
    "apply_operations",
    "expand_operations",
    "member_commands",
    "member_ids",
    "parse_patch_request",
    "parse_path",
    "replace_members",
]
