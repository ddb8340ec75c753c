"""The User aggregate and the record that keeps e-mail addresses unique."""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.errors import UserDeactivated


def normalize_email(email: str) -> str:
    return email.strip().lower()


class User(Aggregate):
    @event("Registered")
    def __init__(  # noqa: PLR0913
        self,
        *,
        id: UUID,  # noqa: A002 - the library takes the aggregate id from this name
        email: str,
        full_name: str | None,
        role: str,
        password_hash: str | None,
        actor_id: UUID | None,
    ) -> None:
        self.email = email
        self.full_name = full_name
        self.role = role
        self.password_hash = password_hash
        self.active = True
        self.last_login: datetime | None = None

    def check_active(self) -> None:
        if not self.active:
            raise UserDeactivated

    @event("RoleChanged")
    def change_role(self, role: str, actor_id: UUID | None) -> None:
        self.role = role

    @event("PasswordChanged")
    def change_password(self, password_hash: str, actor_id: UUID | None) -> None:
        self.password_hash = password_hash

    @event("Deactivated")
    def deactivate(self, actor_id: UUID | None) -> None:
        self.active = False

    def log_in(self) -> datetime | None:
        """Records a successful login; returns the previous one, which clients display."""
        self.check_active()
        previous = self.last_login
        self.trigger_event(self.LoggedIn, actor_id=self.id)
        return previous

    class LoggedIn(Aggregate.Event):
        actor_id: UUID | None

        def apply(self, aggregate: User) -> None:
            # The login's own time: inside an @event body, `modified_on` is still the
            # time of the previous event.
            aggregate.last_login = self.timestamp


class UserEmail(Aggregate):
    """One per normalized e-mail address, so a second registration collides on insert."""

    @staticmethod
    def create_id(email: str) -> UUID:
        return UserEmail.id_for(email)

    @staticmethod
    def id_for(email: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"flowviz:user-email:{normalize_email(email)}")

    @event("Claimed")
    def __init__(self, email: str, user_id: UUID, actor_id: UUID | None) -> None:
        self.email = normalize_email(email)
        self.user_id = user_id
