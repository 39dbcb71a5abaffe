"""Every table of the back-office.

Money columns hold integer minor units (cents) of the row's ISO 4217 currency. Times
are timezone-aware UTC; dates are calendar dates in UTC. Invariants that must hold
under concurrency are backed by constraints here, not only by domain code.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .clock import utcnow
from .extensions import db


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always returned timezone-aware.

    SQLite keeps no offset, so values are normalised to naive UTC on the way in and
    marked UTC on the way out; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        # Naive values (typed into list filters) are read as UTC.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def str_enum(enum_class: type[enum.Enum], name: str) -> Enum:
    """A portable enum column: VARCHAR plus a named CHECK constraint, values stored."""
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


Money = BigInteger  # signed integer minor units


def money(nullable: bool = False, default: int | None = 0) -> Any:
    """A money column: integer minor units."""
    kwargs: dict[str, Any] = {"nullable": nullable}
    if default is not None:
        kwargs["default"] = default
        kwargs["server_default"] = text(str(default))
    return mapped_column(Money, **kwargs)


def created_at_column() -> Any:
    """A non-null creation timestamp filled from Python's UTC clock."""
    return mapped_column(UTCDateTime, nullable=False, default=utcnow)


def fk(target: str, *, nullable: bool = False, ondelete: str | None = None,
       index: bool = True) -> Any:
    """A foreign key column, indexed unless a composite index leads with it (``index=False``)."""
    return mapped_column(ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


#: ``Index.info`` of an index that exists on PostgreSQL only (see :func:`trigram_index`)
POSTGRESQL_ONLY = "postgresql_only"


def trigram_index(name: str, column: str) -> Index:
    """A pg_trgm GIN index, so ``ILIKE '%fragment%'`` on ``column`` is an index search.

    PostgreSQL only: migration 0006 creates the extension and these indexes there and
    skips them on SQLite, where searches stay plain LIKE scans; :func:`in_schema_of`
    leaves them out of SQLite's schema comparison.
    """
    index = Index(name, column, postgresql_using="gin",
                  postgresql_ops={column: "gin_trgm_ops"}, info={POSTGRESQL_ONLY: True})
    return index.ddl_if(dialect="postgresql")


def in_schema_of(dialect_name: str):
    """An Alembic ``include_object`` hook: the models' schema as built on ``dialect_name``
    (PostgreSQL-only indexes are not expected elsewhere)."""

    def include_object(obj, _name, type_, reflected, _compare_to) -> bool:
        if type_ == "index" and not reflected and obj.info.get(POSTGRESQL_ONLY):
            return dialect_name == "postgresql"
        return True

    return include_object


# --------------------------------------------------------------------------- enums


class StaffRole(enum.StrEnum):
    SUPPORT = "support"
    FINANCE = "finance"
    ADMIN = "admin"


class OrgRole(enum.StrEnum):
    MAIN = "main"
    SECONDARY = "secondary"


class RequestStatus(enum.StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    REJECTED = "rejected"


class OrderStatus(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    CANCELLED = "cancelled"


class PaymentMethod(enum.StrEnum):
    CARD = "card"
    PREPAID_CREDIT = "prepaid_credit"


class CertificateKind(enum.StrEnum):
    TRADITIONAL = "traditional"
    CAAS = "caas"


class CreditKind(enum.StrEnum):
    TOP_UP = "top_up"
    ORDER_PAYMENT = "order_payment"
    LEGACY_TRANSFER = "legacy_transfer"
    ADJUSTMENT = "adjustment"
    REFUND = "refund"


class InvoiceKind(enum.StrEnum):
    ORDER = "order"
    MONTHLY = "monthly"


class ResellerStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class AdminResponsibility(enum.StrEnum):
    PARTNER = "partner"
    CUSTOMER = "customer"


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"


class TransactionKind(enum.StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


class TransactionReason(enum.StrEnum):
    NEW_SUBSCRIPTION = "new_subscription"
    INVENTORY_ADDED = "inventory_added"
    RENEWAL = "renewal"
    REFUND = "refund"


class JobStatus(enum.StrEnum):
    #: asked for (Run now) and waiting for a job runner to pick it up
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: its process stopped before it finished; another runner took the job over
    ABANDONED = "abandoned"


# --------------------------------------------------------------------------- staff


class StaffUser(db.Model):
    """A member of staff who signs in to the console."""

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Lower-cased login address.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    #: werkzeug scrypt hash; never the password.
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[StaffRole] = mapped_column(str_enum(StaffRole, "staff_role"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    #: Base32 TOTP secret, set while enrolling and kept once two-factor sign-in is on.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    #: when two-factor sign-in was confirmed with a first code; None while not enrolled
    totp_enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the TOTP time step of the last code accepted, so no code is used twice
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Flask-Login protocol
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    def __str__(self) -> str:
        return self.email


class StaffSession(db.Model):
    """One signed-in browser session of a staff member, checked on every request.

    The session cookie carries only ``key``; ending the row (sign-out, password change,
    deactivation, role change, 2FA reset, or an admin) ends the session at once.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 of the random key the cookie carries (the key itself is never stored)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = fk("staff_user.id")
    created_at: Mapped[datetime] = created_at_column()
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    #: the client address and browser it was opened from
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(256), default="")
    #: False between the password and the second factor
    second_factor_done: Mapped[bool] = mapped_column(Boolean, default=False,
                                                     server_default=text("false"))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: why it ended: "sign-out", "password", "deactivated", "role", "2fa-reset", "admin", ...
    end_reason: Mapped[str] = mapped_column(String(32), default="")

    user: Mapped[StaffUser] = relationship()

    __table_args__ = (Index("ix_staff_session_open", "user_id", "ended_at"),)


class RecoveryCode(db.Model):
    """A one-time two-factor recovery code, stored hashed."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = fk("staff_user.id")
    code_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_at_column()
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PasswordResetToken(db.Model):
    """A one-time password-reset link an admin made; valid for an hour, stored hashed."""

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 of the token in the link
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = fk("staff_user.id")
    created_by_id: Mapped[int | None] = fk("staff_user.id", nullable=True)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[StaffUser] = relationship(foreign_keys=[user_id])


# --------------------------------------------------------------------------- catalog


product_certificate_type = Table(
    "product_certificate_type",
    db.metadata,
    Column("product_id", ForeignKey("subscription_product.id"), primary_key=True),
    Column("certificate_type_id", ForeignKey("certificate_type.id"), primary_key=True, index=True),
)


class CertificateType(db.Model):
    """One product of the catalog, sold in retail orders and in partner subscriptions.

    The yearly price is the same number of minor units in every currency we sell in.
    """

    __table_args__ = (CheckConstraint("yearly_price >= 0", name="yearly_price_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[CertificateKind] = mapped_column(str_enum(CertificateKind, "certificate_kind"))
    #: price of one certificate for twelve months, minor units
    yearly_price: Mapped[int] = money()
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = created_at_column()

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class SubscriptionProduct(db.Model):
    """A bundle of certificate types sold to partner customers for a term."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: allowed term lengths in months, e.g. [12, 24, 36]
    terms_months: Mapped[list[int]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = created_at_column()

    certificate_types: Mapped[list[CertificateType]] = relationship(
        secondary=product_certificate_type, order_by="CertificateType.code"
    )

    def __str__(self) -> str:
        return self.name


# --------------------------------------------------------------------------- retail side


class Organization(db.Model):
    """A corporate (master ordering) account grouping storefront profiles."""

    __table_args__ = (trigram_index("ix_organization_name_trgm", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    #: free text: financial conditions agreed with the organization
    financial_terms: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = created_at_column()

    members: Mapped[list[Profile]] = relationship(
        back_populates="organization", order_by="Profile.id"
    )
    #: the main contact as a read-only relationship, so a list loads it for a whole page
    #: in one query (``main_contact`` reads ``members``, which may be many)
    main_profile: Mapped[Profile | None] = relationship(
        primaryjoin="and_(Profile.organization_id == Organization.id, "
                    "Profile.org_role == 'main')",
        viewonly=True, uselist=False)

    @property
    def main_contact(self) -> Profile | None:
        """The member whose role is main (derived, never stored twice)."""
        return next((p for p in self.members if p.org_role == OrgRole.MAIN), None)

    def __str__(self) -> str:
        return self.name


class Profile(db.Model):
    """A storefront user account; individual unless it belongs to an organization."""

    __table_args__ = (
        CheckConstraint("credit_balance >= 0", name="credit_balance_not_negative"),
        CheckConstraint(
            "(organization_id IS NULL) = (org_role IS NULL)", name="org_role_iff_organization"
        ),
        # An organization has at most one main contact.
        Index(
            "uq_profile_main_contact",
            "organization_id",
            unique=True,
            sqlite_where=text("org_role = 'main'"),
            postgresql_where=text("org_role = 'main'"),
        ),
        # the list's sorts (keyset: sort key, then id)
        Index("ix_profile_name", "name", "id"),
        Index("ix_profile_created_at", "created_at", "id"),
        trigram_index("ix_profile_email_trgm", "email"),
        trigram_index("ix_profile_name_trgm", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: lower-cased; the storefront login
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    organization_id: Mapped[int | None] = fk("organization.id", nullable=True)
    org_role: Mapped[OrgRole | None] = mapped_column(str_enum(OrgRole, "org_role"))
    #: prepaid credit, minor units; always the sum of this profile's ledger entries
    credit_balance: Mapped[int] = money()
    created_at: Mapped[datetime] = created_at_column()
    linked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization | None] = relationship(back_populates="members")
    credit_entries: Mapped[list[CreditEntry]] = relationship(
        back_populates="profile", order_by="CreditEntry.id"
    )

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class CorporateRequest(db.Model):
    """A customer's request to turn accounts into one corporate account."""

    __table_args__ = (Index("ix_corporate_request_created_at", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_name: Mapped[str] = mapped_column(String(200))
    main_contact_email: Mapped[str] = mapped_column(String(254), index=True)
    #: lower-cased addresses of the profiles to link as secondary users
    secondary_emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[RequestStatus] = mapped_column(
        str_enum(RequestStatus, "request_status"), default=RequestStatus.OPEN, index=True
    )
    created_at: Mapped[datetime] = created_at_column()
    processed_by_id: Mapped[int | None] = fk("staff_user.id", nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: what happened: linked profiles, unknown emails, or the rejection reason
    outcome: Mapped[str] = mapped_column(Text, default="", server_default="")
    organization_id: Mapped[int | None] = fk("organization.id", nullable=True)

    processed_by: Mapped[StaffUser | None] = relationship()
    organization: Mapped[Organization | None] = relationship()

    def __str__(self) -> str:
        return f"Request #{self.id} ({self.organization_name})"


class Order(db.Model):
    """A storefront purchase; self-contained, with its own invoice."""

    __tablename__ = "order"
    __table_args__ = (
        CheckConstraint("total >= 0", name="total_not_negative"),
        CheckConstraint(
            "(status = 'paid') = (paid_by_id IS NOT NULL AND paid_at IS NOT NULL"
            " AND payment_method IS NOT NULL)",
            name="paid_iff_payer",
        ),
        Index("ix_order_created_at", "created_at", "id"),
        # the orders a profile sees: placed by or paid by it, newest first, each on its own
        Index("ix_order_placed_by_created", "placed_by_id", "created_at", "id"),
        Index("ix_order_paid_by_created", "paid_by_id", "created_at", "id"),
        trigram_index("ix_order_number_trgm", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    placed_by_id: Mapped[int] = fk("profile.id", index=False)
    #: who paid: the placer, or whoever a "Make Payment Later" link was forwarded to
    paid_by_id: Mapped[int | None] = fk("profile.id", nullable=True, index=False)
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, "order_status"), default=OrderStatus.AWAITING_PAYMENT
    )
    payment_method: Mapped[PaymentMethod | None] = mapped_column(
        str_enum(PaymentMethod, "payment_method")
    )
    #: secret token of the forwardable payment link
    payment_token: Mapped[str] = mapped_column(String(64), unique=True)
    #: billing details exactly as entered with the order
    billing: Mapped[dict] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = money()
    created_at: Mapped[datetime] = created_at_column()
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    placed_by: Mapped[Profile] = relationship(foreign_keys=[placed_by_id])
    paid_by: Mapped[Profile | None] = relationship(foreign_keys=[paid_by_id])
    items: Mapped[list[OrderItem]] = relationship(back_populates="order", order_by="OrderItem.id")
    invoice: Mapped[Invoice | None] = relationship(back_populates="order", uselist=False)

    def __str__(self) -> str:
        return self.number


class OrderItem(db.Model):
    """One certificate type bought in an order."""

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount = unit_price * quantity", name="amount_is_price_times_quantity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = fk("order.id")
    certificate_type_id: Mapped[int] = fk("certificate_type.id")
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = money(default=None)
    amount: Mapped[int] = money(default=None)

    order: Mapped[Order] = relationship(back_populates="items")
    certificate_type: Mapped[CertificateType] = relationship()
    licenses: Mapped[list[License]] = relationship(back_populates="order_item")


class License(db.Model):
    """One licence bought: what the CA tracks under its CA Reference."""

    __table_args__ = (trigram_index("ix_license_ca_reference_trgm", "ca_reference"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_item_id: Mapped[int] = fk("order_item.id")
    ca_reference: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[CertificateKind] = mapped_column(str_enum(CertificateKind, "license_kind"))
    #: CaaS only: where the customer's ACME client points
    acme_directory_url: Mapped[str | None] = mapped_column(String(500))
    #: CaaS only: external account binding key id (the HMAC secret is never stored)
    eab_key_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_at_column()

    order_item: Mapped[OrderItem] = relationship(back_populates="licenses")

    def __str__(self) -> str:
        return self.ca_reference


class Invoice(db.Model):
    """An issued invoice: for one retail order, or a partner customer's month. Never changes."""

    __table_args__ = (
        CheckConstraint(
            "(kind = 'order' AND order_id IS NOT NULL AND customer_id IS NULL)"
            " OR (kind = 'monthly' AND customer_id IS NOT NULL AND period_start IS NOT NULL)",
            name="order_or_monthly",
        ),
        UniqueConstraint("customer_id", "period_start"),
        Index("ix_invoice_issued_at", "issued_at", "id"),
        trigram_index("ix_invoice_number_trgm", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: sequential, never reused
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[InvoiceKind] = mapped_column(str_enum(InvoiceKind, "invoice_kind"))
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("order.id"), unique=True, nullable=True
    )
    customer_id: Mapped[int | None] = fk("customer.id", nullable=True)
    #: first day of the invoiced month (monthly invoices)
    period_start: Mapped[date | None] = mapped_column(Date)
    #: name and address the invoice is made out to, as they were when issued
    billing: Mapped[dict] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3))
    #: signed: refunds can outweigh charges on a monthly invoice
    total: Mapped[int] = money()
    issued_at: Mapped[datetime] = created_at_column()

    order: Mapped[Order | None] = relationship(back_populates="invoice")
    customer: Mapped[Customer | None] = relationship()
    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position"
    )

    def __str__(self) -> str:
        return self.number


class InvoiceLine(db.Model):
    """One line of an invoice."""

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = fk("invoice.id")
    position: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[int] = mapped_column(Integer)
    #: signed minor units; negative for refunds
    amount: Mapped[int] = money(default=None)
    transaction_id: Mapped[int | None] = fk("transaction.id", nullable=True)
    order_item_id: Mapped[int | None] = fk("order_item.id", nullable=True)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class LegacyAccount(db.Model):
    """An account on the legacy platform, whose prepaid credit can move once."""

    __table_args__ = (
        CheckConstraint("credit_balance >= 0", name="credit_balance_not_negative"),
        CheckConstraint(
            "(transferred_at IS NULL) = (transferred_to_id IS NULL)", name="transfer_complete"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the legacy platform's account number
    legacy_number: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    credit_balance: Mapped[int] = money()
    transferred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    transferred_by_id: Mapped[int | None] = fk("staff_user.id", nullable=True)
    transferred_to_id: Mapped[int | None] = fk("profile.id", nullable=True)
    #: how much moved, minor units
    transferred_amount: Mapped[int | None] = mapped_column(Money)

    transferred_by: Mapped[StaffUser | None] = relationship()
    transferred_to: Mapped[Profile | None] = relationship()

    def __str__(self) -> str:
        return f"{self.legacy_number} <{self.email}>"


class CreditEntry(db.Model):
    """One append-only movement of a profile's prepaid credit."""

    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        # a profile's ledger, newest first
        Index("ix_credit_entry_profile_created", "profile_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = fk("profile.id", index=False)
    #: signed minor units: positive adds credit
    amount: Mapped[int] = money(default=None)
    #: the profile's balance right after this entry
    balance_after: Mapped[int] = money(default=None)
    kind: Mapped[CreditKind] = mapped_column(str_enum(CreditKind, "credit_kind"))
    order_id: Mapped[int | None] = fk("order.id", nullable=True)
    #: at most one entry per legacy account: a legacy balance moves once
    legacy_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("legacy_account.id"), unique=True, nullable=True
    )
    #: the entry this one corrects, if any
    reverses_id: Mapped[int | None] = fk("credit_entry.id", nullable=True)
    actor_id: Mapped[int | None] = fk("staff_user.id", nullable=True)
    memo: Mapped[str] = mapped_column(String(500), default="", server_default="")
    created_at: Mapped[datetime] = created_at_column()

    profile: Mapped[Profile] = relationship(back_populates="credit_entries")
    order: Mapped[Order | None] = relationship()
    legacy_account: Mapped[LegacyAccount | None] = relationship()
    actor: Mapped[StaffUser | None] = relationship()


# --------------------------------------------------------------------------- partner side


class AddressMixin:
    """A company's name and postal address, as resellers and customers have them."""

    company_name: Mapped[str] = mapped_column(String(200), index=True)
    address1: Mapped[str] = mapped_column(String(200))
    address2: Mapped[str] = mapped_column(String(200), default="", server_default="")
    address3: Mapped[str] = mapped_column(String(200), default="", server_default="")
    city: Mapped[str] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(100), default="", server_default="")
    #: ISO 3166-1 alpha-2
    country: Mapped[str] = mapped_column(String(2))


class Reseller(AddressMixin, db.Model):
    """A partner that manages customers on the partner platform."""

    __table_args__ = (trigram_index("ix_reseller_company_name_trgm", "company_name"),
                      trigram_index("ix_reseller_city_trgm", "city"))

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[ResellerStatus] = mapped_column(
        str_enum(ResellerStatus, "reseller_status"), default=ResellerStatus.ACTIVE
    )
    status_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_changed_by_id: Mapped[int | None] = fk("staff_user.id", nullable=True)
    created_at: Mapped[datetime] = created_at_column()

    status_changed_by: Mapped[StaffUser | None] = relationship()
    customers: Mapped[list[Customer]] = relationship(
        back_populates="reseller", order_by="Customer.company_name"
    )

    def __str__(self) -> str:
        return self.company_name


class Customer(AddressMixin, db.Model):
    """A customer on the partner platform, managed by a reseller or directly."""

    __table_args__ = (
        CheckConstraint(
            "administrative_responsibility = 'partner' OR customer_admin_email IS NOT NULL",
            name="customer_admin_email_required",
        ),
        # what the customer list searches
        trigram_index("ix_customer_company_name_trgm", "company_name"),
        trigram_index("ix_customer_customer_admin_email_trgm", "customer_admin_email"),
        trigram_index("ix_customer_city_trgm", "city"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the "partner management"; None means a direct customer
    reseller_id: Mapped[int | None] = fk("reseller.id", nullable=True)
    #: who administers the account; fixed at creation
    administrative_responsibility: Mapped[AdminResponsibility] = mapped_column(
        str_enum(AdminResponsibility, "administrative_responsibility")
    )
    customer_admin_email: Mapped[str | None] = mapped_column(String(254))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    created_at: Mapped[datetime] = created_at_column()

    reseller: Mapped[Reseller | None] = relationship(back_populates="customers")
    admins: Mapped[list[CustomerAdmin]] = relationship(back_populates="customer")
    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="customer", order_by="Subscription.id"
    )

    def __str__(self) -> str:
        return self.company_name


class CustomerAdmin(db.Model):
    """An administrator of a customer-administered customer."""

    __table_args__ = (UniqueConstraint("customer_id", "email"),
                      trigram_index("ix_customer_admin_email_trgm", "email"))

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = fk("customer.id")
    email: Mapped[str] = mapped_column(String(254), index=True)
    created_at: Mapped[datetime] = created_at_column()

    customer: Mapped[Customer] = relationship(back_populates="admins")

    def __str__(self) -> str:
        return self.email


class Subscription(db.Model):
    """A customer's subscription to a product, term after term."""

    __table_args__ = (
        CheckConstraint("term_months > 0", name="term_positive"),
        CheckConstraint("end_date > start_date", name="end_after_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = fk("customer.id")
    product_id: Mapped[int] = fk("subscription_product.id")
    term_months: Mapped[int] = mapped_column(Integer)
    #: first day of the current term (inclusive)
    start_date: Mapped[date] = mapped_column(Date)
    #: end of the current term (exclusive): start_date + term_months
    end_date: Mapped[date] = mapped_column(Date, index=True)
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    status: Mapped[SubscriptionStatus] = mapped_column(
        str_enum(SubscriptionStatus, "subscription_status"),
        default=SubscriptionStatus.ACTIVE,
        index=True,
    )
    created_at: Mapped[datetime] = created_at_column()

    customer: Mapped[Customer] = relationship(back_populates="subscriptions")
    product: Mapped[SubscriptionProduct] = relationship()
    inventory: Mapped[list[Inventory]] = relationship(
        back_populates="subscription", order_by="Inventory.id"
    )
    terms: Mapped[list[SubscriptionTerm]] = relationship(
        back_populates="subscription", order_by="SubscriptionTerm.start_date"
    )

    def __str__(self) -> str:
        return f"#{self.id} {self.product.name if self.product else ''}".strip()


class Inventory(db.Model):
    """How many certificates of one type a subscription holds now and at renewal."""

    __table_args__ = (
        UniqueConstraint("subscription_id", "certificate_type_id"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        CheckConstraint("renewal_quantity >= 0", name="renewal_quantity_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = fk("subscription.id")
    certificate_type_id: Mapped[int] = fk("certificate_type.id")
    #: current inventory
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    #: what the next term will hold
    renewal_quantity: Mapped[int] = mapped_column(Integer, default=0)

    subscription: Mapped[Subscription] = relationship(back_populates="inventory")
    certificate_type: Mapped[CertificateType] = relationship()


class SubscriptionTerm(db.Model):
    """One term a subscription has had; unique per start, which makes renewal idempotent."""

    __table_args__ = (
        UniqueConstraint("subscription_id", "start_date"),
        CheckConstraint("end_date > start_date", name="end_after_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = fk("subscription.id")
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = created_at_column()

    subscription: Mapped[Subscription] = relationship(back_populates="terms")


class Transaction(db.Model):
    """A charge or a refund on a partner customer's account."""

    __table_args__ = (
        CheckConstraint(
            "(kind = 'charge' AND amount >= 0 AND refunded_transaction_id IS NULL"
            " AND reason <> 'refund')"
            " OR (kind = 'refund' AND amount <= 0 AND refunded_transaction_id IS NOT NULL"
            " AND reason = 'refund')",
            name="charge_or_refund",
        ),
        # newest first: the list, a customer's and a subscription's transactions
        Index("ix_transaction_created_at", "created_at", "id"),
        Index("ix_transaction_customer_created", "customer_id", "created_at", "id"),
        Index("ix_transaction_subscription_created", "subscription_id", "created_at", "id"),
        # partial indexes for the dashboard: charges by date (refund windows closing),
        # refunds by date (this month's refunds) and what is not invoiced yet by date
        # (the months not summarized yet), the last two holding what their sums read
        # (PostgreSQL) so they read no table rows
        Index("ix_transaction_charge_created", "created_at", "id",
              postgresql_where=text("kind = 'charge'"), sqlite_where=text("kind = 'charge'")),
        Index("ix_transaction_refund_created", "created_at",
              postgresql_include=["currency", "amount"],
              postgresql_where=text("kind = 'refund'"), sqlite_where=text("kind = 'refund'")),
        Index("ix_transaction_uninvoiced_created", "created_at",
              postgresql_include=["customer_id", "currency", "amount"],
              postgresql_where=text("invoice_id IS NULL"),
              sqlite_where=text("invoice_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = fk("customer.id", index=False)
    subscription_id: Mapped[int] = fk("subscription.id", index=False)
    kind: Mapped[TransactionKind] = mapped_column(str_enum(TransactionKind, "transaction_kind"))
    reason: Mapped[TransactionReason] = mapped_column(
        str_enum(TransactionReason, "transaction_reason")
    )
    #: for refunds: the charge refunded
    refunded_transaction_id: Mapped[int | None] = fk("transaction.id", nullable=True)
    #: signed minor units: charges positive, refunds negative
    amount: Mapped[int] = money(default=None)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = created_at_column()
    #: the monthly invoice that carries it; None until invoiced
    invoice_id: Mapped[int | None] = fk("invoice.id", nullable=True)
    actor_id: Mapped[int | None] = fk("staff_user.id", nullable=True)

    customer: Mapped[Customer] = relationship()
    subscription: Mapped[Subscription] = relationship()
    refunded_transaction: Mapped[Transaction | None] = relationship(remote_side=[id])
    invoice: Mapped[Invoice | None] = relationship()
    actor: Mapped[StaffUser | None] = relationship()
    lines: Mapped[list[TransactionLine]] = relationship(
        back_populates="transaction", order_by="TransactionLine.id"
    )

    def __str__(self) -> str:
        return f"T{self.id}"


class TransactionLine(db.Model):
    """One certificate type within a transaction."""

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity",
            name="refunded_quantity_within_quantity",
        ),
        CheckConstraint(
            "refunded_amount >= 0 AND (amount < 0 OR refunded_amount <= amount)",
            name="refunded_amount_within_amount",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = fk("transaction.id")
    certificate_type_id: Mapped[int] = fk("certificate_type.id")
    quantity: Mapped[int] = mapped_column(Integer)
    #: signed minor units, as charged (prorated) or refunded
    amount: Mapped[int] = money(default=None)
    #: full-term price before proration, minor units
    full_amount: Mapped[int] = money(default=None)
    #: proration: days charged out of the days in the term (equal when not prorated)
    days_charged: Mapped[int] = mapped_column(Integer)
    days_in_term: Mapped[int] = mapped_column(Integer)
    #: charge lines: how much of this line has been refunded so far
    refunded_quantity: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    refunded_amount: Mapped[int] = money()
    #: refund lines: the charge line refunded
    refunded_line_id: Mapped[int | None] = fk("transaction_line.id", nullable=True)

    transaction: Mapped[Transaction] = relationship(back_populates="lines")
    certificate_type: Mapped[CertificateType] = relationship()


class MonthlyTotal(db.Model):
    """A UTC month's transactions of one currency and kind, summed: what the dashboard's
    charts and the transaction report's totals read instead of the month's rows.

    Summed day by day, up to the summaries' mark (``SummaryMark``), by
    ``summaries.summarize_finished_days``: a finished day's transactions are added once,
    and a finished month's row never changes after (transactions keep their amount and
    are dated when made, so a finished day gains none).
    """

    #: the first day of the month
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    kind: Mapped[TransactionKind] = mapped_column(
        str_enum(TransactionKind, "transaction_kind"), primary_key=True)
    #: signed minor units, the sum of the month's amounts (refunds negative)
    amount: Mapped[int] = money(default=None)
    #: how many of them were renewal charges
    renewals: Mapped[int] = mapped_column(Integer)
    #: how many transactions
    transactions: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class CustomerMonthTotal(db.Model):
    """A UTC month's transactions of one partner customer in one currency, summed, apart
    by the invoice that carries them: what the Monthly invoices page, the review of a
    month and the dashboard read instead of the month's rows.

    Summed day by day up to the summaries' mark, like ``MonthlyTotal``. Issuing an invoice
    sets ``invoice_id`` on the rows it carries (``summaries.mark_invoiced``), in the same
    transaction as it sets it on the transactions, so the rows without one are exactly
    what is still to invoice.
    """

    __table_args__ = (
        # one row per customer, month, currency and invoice; the rows still to invoice
        # hold what their sums read (PostgreSQL)
        Index("uq_customer_month_total_uninvoiced", "customer_id", "month", "currency",
              unique=True, postgresql_include=["transactions", "amount"],
              postgresql_where=text("invoice_id IS NULL"),
              sqlite_where=text("invoice_id IS NULL")),
        Index("uq_customer_month_total_invoiced", "customer_id", "month", "currency",
              "invoice_id", unique=True,
              postgresql_where=text("invoice_id IS NOT NULL"),
              sqlite_where=text("invoice_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = fk("customer.id", index=False)
    #: the first day of the month
    month: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    #: the invoice carrying these transactions; none while they are still to invoice
    invoice_id: Mapped[int | None] = fk("invoice.id", nullable=True, index=False)
    #: how many transactions
    transactions: Mapped[int] = mapped_column(Integer)
    #: signed minor units, the sum of their amounts (refunds negative)
    amount: Mapped[int] = money(default=None)


class SummaryMark(db.Model):
    """How far the summaries go: every transaction made before ``until`` is in the
    ``MonthlyTotal`` and ``CustomerMonthTotal`` rows, and none made since. One row
    (id 1), locked by each summary run and each chunk of invoices."""

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: midnight UTC; none before the first run
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --------------------------------------------------------------------------- cross-cutting


class Counter(db.Model):
    """A named gap-free counter (order numbers, invoice numbers, the audit sequence).

    Taking the next value locks the row until the transaction ends, which is what keeps
    numbers sequential and the audit chain linear under concurrent writers.
    """

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEvent(db.Model):
    """An append-only record of a change, chained to the one before it by hash."""

    id: Mapped[int] = mapped_column(primary_key=True)
    #: position in the chain: 1, 2, 3... without gaps
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[datetime] = created_at_column()
    actor_id: Mapped[int | None] = fk("staff_user.id", nullable=True)
    #: who acted, as shown ("job:renewals" for scheduled jobs)
    actor_label: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    actor: Mapped[StaffUser | None] = relationship()

    __table_args__ = (Index("ix_audit_event_target", "target_type", "target_id"),
                      Index("ix_audit_event_created_at", "created_at", "id"))


class AuditCheckpoint(db.Model):
    """The audit chain's head as the nightly check found it: a later check compares the
    chain against it, so a removed tail or a rewritten chain is found."""

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class JobRun(db.Model):
    """One run of a scheduled job: queued (Run now), running, then finished or abandoned."""

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(64), index=True)
    #: "schedule", "manual" (Run now), "cli" or "recovery" (after an abandoned run)
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")
    #: when it was queued; None for a run that started at once
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_by_id: Mapped[int | None] = fk("staff_user.id", nullable=True)
    #: None while queued
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the last time its runner said it was alive (renewing the lease)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[JobStatus] = mapped_column(
        str_enum(JobStatus, "job_status"), default=JobStatus.RUNNING
    )
    processed: Mapped[int] = mapped_column(Integer, default=0)
    #: what the run was asked for beyond the job's own default, passed to its body as
    #: keyword arguments (the monthly invoicing's {"month": "2026-11"}); {} for most runs
    arguments: Mapped[dict] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    #: counts and anomalies reported by the job
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: host:pid:thread of the process that ran it
    holder: Mapped[str] = mapped_column(String(128), default="")
    #: for an abandoned run: the holder that took the job over
    taken_over_by: Mapped[str] = mapped_column(String(128), default="", server_default="")

    requested_by: Mapped[StaffUser | None] = relationship()

    __table_args__ = (Index("ix_job_run_status", "status", "job"),
                      Index("ix_job_run_started_at", "started_at", "id"))


class JobLock(db.Model):
    """A lease: the process that holds it may run the job until ``lease_until``.

    The runner renews it every few seconds while the job runs (a heartbeat), so a live
    long run keeps it and a dead one loses it within a lease length.
    """

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRunner(db.Model):
    """A job runner process (``flask jobs run`` or the scheduler inside ``make run``),
    seen alive at ``seen_at``; the Jobs page says when none is."""

    holder: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime] = created_at_column()
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class OutboxEmail(db.Model):
    """An email queued in the same transaction as the change it reports."""

    __table_args__ = (Index("ix_outbox_email_pending", "sent_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    to: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")


class AppliedOperation(db.Model):
    """A reviewed operation that was applied, by its idempotency key.

    The row is written in the same transaction as the operation's effect, under a UNIQUE
    key, so a second Confirm of the same review (a double-click, a retry, a replay) can
    never apply it again: it finds this row and lands on ``result_url``.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = fk("staff_user.id")
    #: what was applied, e.g. "subscription.add", and to what, e.g. "customer:12"
    operation: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    #: the page that shows the result (where a repeated Confirm lands)
    result_url: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = created_at_column()

    staff: Mapped[StaffUser] = relationship()

    __table_args__ = (Index("ix_applied_operation_created_at", "created_at"),)
