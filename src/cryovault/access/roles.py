"""Roles of ADM-2 and what each implies."""

from __future__ import annotations

from cryovault.errors import Forbidden, Invalid

WORKFLOW_ADMIN = "workflow-admin"
USER_MANAGER = "user-manager"
LICENSE_MANAGER = "license-manager"
CUSTOMER_ROLE_MANAGER = "customer-role-manager"
CUSTOMER_ADMIN = "customer-admin"

ROLES = (WORKFLOW_ADMIN, USER_MANAGER, LICENSE_MANAGER, CUSTOMER_ROLE_MANAGER, CUSTOMER_ADMIN)

# customer-admin holds the four other roles.
_IMPLIED = {CUSTOMER_ADMIN: set(ROLES)}


def effective_roles(assigned: set[str]) -> frozenset[str]:
    roles = set(assigned)
    for role in assigned:
        roles |= _IMPLIED.get(role, set())
    return frozenset(roles)


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


# --- administration rights (SPEC ADM-2, ADM-3) -----------------------------------------------
# Each administrative action and the roles that allow it; customer-admin holds every role, so
# it is allowed everything. workflow-admin has no user administration at all.
ADMIN_ROLES = (USER_MANAGER, LICENSE_MANAGER, CUSTOMER_ROLE_MANAGER, CUSTOMER_ADMIN)

VIEW_USERS = "see users, their roles and licences"
EDIT_USERS = "create, edit and deactivate users"
ASSIGN_ROLES = "assign and unassign roles"
ASSIGN_CUSTOMER_ADMIN = "give or take the customer-admin role"
VIEW_LICENSES = "see the licences"
MANAGE_LICENSES = "install licences and assign or unassign seats"
EDIT_PLATFORM_PREFERENCES = "change platform preferences"

RIGHTS: dict[str, frozenset[str]] = {
    VIEW_USERS: frozenset(ADMIN_ROLES),
    EDIT_USERS: frozenset({USER_MANAGER, CUSTOMER_ADMIN}),
    ASSIGN_ROLES: frozenset({CUSTOMER_ROLE_MANAGER, CUSTOMER_ADMIN}),
    ASSIGN_CUSTOMER_ADMIN: frozenset({CUSTOMER_ADMIN}),
    VIEW_LICENSES: frozenset(ADMIN_ROLES),
    MANAGE_LICENSES: frozenset({LICENSE_MANAGER, CUSTOMER_ADMIN}),
    EDIT_PLATFORM_PREFERENCES: frozenset({CUSTOMER_ADMIN}),
}


def may(roles: frozenset[str], right: str) -> bool:
    return bool(RIGHTS[right] & roles)


def require(roles: frozenset[str], right: str) -> None:
    """Raise Forbidden unless one of `roles` (effective roles) grants `right`."""
    if not may(roles, right):
        holders = " or ".join(r for r in ROLES if r in RIGHTS[right])
        raise Forbidden(f"only a {holders} may {right}")
