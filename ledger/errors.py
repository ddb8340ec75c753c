"""Named errors raised when a command would break an invariant."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class: the command was refused and nothing was recorded."""


class LotCodeAlreadyExists(LedgerError):
    def __init__(self, lot_code: str) -> None:
        super().__init__("Lot code already exists")
        self.lot_code = lot_code


class LotNotFound(LedgerError):
    def __init__(self, reference: str, *, as_input: bool = False) -> None:
        super().__init__(f"Input lot not found: {reference}" if as_input else "Lot not found")
        self.reference = reference


class LotNotConsumable(LedgerError):
    """The parent's latest QC decision is HOLD or FAIL."""

    def __init__(self, lot_code: str, decision: str) -> None:
        super().__init__(f"Input lot {lot_code} is on {decision} and cannot be consumed")
        self.lot_code = lot_code
        self.decision = decision


class InsufficientQuantity(LedgerError):
    def __init__(self, lot_code: str, requested: object, remaining: object) -> None:
        super().__init__(
            f"Input lot {lot_code} has {remaining} kg remaining; {requested} kg requested"
        )
        self.lot_code = lot_code


class InvalidQuantity(LedgerError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class SelfConsumption(LedgerError):
    def __init__(self) -> None:
        super().__init__("A lot cannot consume itself")


class DuplicateInput(LedgerError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"Input lot listed more than once: {reference}")


class NotesRequired(LedgerError):
    def __init__(self, decision: str, minimum: int) -> None:
        super().__init__(f"Notes of at least {minimum} characters are required for {decision}")


class EmailAlreadyRegistered(LedgerError):
    def __init__(self, email: str) -> None:
        super().__init__("Email already registered")
        self.email = email


class UserNotFound(LedgerError):
    def __init__(self) -> None:
        super().__init__("User not found")


class UserDeactivated(LedgerError):
    def __init__(self) -> None:
        super().__init__("User is deactivated")


class ConcurrencyConflict(LedgerError):
    """Other writers kept changing the same lots; the bounded retry gave up."""

    def __init__(self) -> None:
        super().__init__("The lots changed concurrently too often; please retry")
