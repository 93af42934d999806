"""Roles of ADM-2 and what each implies."""

from __future__ import annotations

from cryovault.errors import Invalid

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
