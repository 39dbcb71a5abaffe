"""Staff roles and what each may do: the one permission table (DESIGN.md, "Staff roles")."""

from __future__ import annotations

import enum

from .models import StaffRole


class Permission(enum.StrEnum):
    """What a staff member may do, named ``area:thing:verb``."""

    CONSOLE_READ = "console:page:read"
    CORPORATE_WRITE = "accounts:corporate:write"
    PROFILE_UNLINK = "accounts:profile:unlink"
    LEGACY_CREDIT_WRITE = "accounts:legacy_credit:write"
    CREDIT_ADJUST = "billing:credit:adjust"
    PARTNER_WRITE = "partners:customer:write"
    REFUND_WRITE = "billing:refund:write"
    INVOICE_WRITE = "billing:invoice:write"
    REPORT_EXPORT = "billing:report:export"
    RESELLER_WRITE = "partners:reseller:write"
    RESELLER_STATUS = "partners:reseller:status"
    CATALOG_WRITE = "catalog:product:write"
    STAFF_WRITE = "system:staff:write"
    JOB_RUN = "system:job:run"
    #: the raw tables (order items, transaction and invoice lines, inventory, terms,
    #: counters, job leases) under the Data menu
    DATA_READ = "system:data:read"


P = Permission

#: The one table that maps roles to permissions (DESIGN.md, "Staff roles and permissions").
ROLE_PERMISSIONS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.SUPPORT: frozenset(
        {P.CONSOLE_READ, P.CORPORATE_WRITE, P.LEGACY_CREDIT_WRITE, P.PARTNER_WRITE}
    ),
    StaffRole.FINANCE: frozenset(
        {P.CONSOLE_READ, P.CREDIT_ADJUST, P.REFUND_WRITE, P.INVOICE_WRITE, P.REPORT_EXPORT}
    ),
    StaffRole.ADMIN: frozenset(Permission),
}


def has_permission(user, permission: Permission) -> bool:
    """Whether ``user`` (a StaffUser, or Flask-Login's anonymous user) holds ``permission``."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return permission in ROLE_PERMISSIONS.get(user.role, frozenset())
