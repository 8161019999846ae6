"""The status object: plain data that round-trips through JSON."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from runwatch._states import Phase, State

__all__ = ["Progress", "RunError", "RunStatus"]


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Progress(_Data):
    """How far a run has got, in whatever terms the remote gives."""

    percent: float | None = None
    items_done: int | None = None
    items_total: int | None = None
    message: str | None = None


class RunError(_Data):
    """One error the remote reported for a run."""

    code: str | None = None
    message: str
    retriable: bool = False
    category: Literal["infrastructure", "logic"] = "logic"


class RunStatus(_Data):
    """What is known of one run at one moment."""

    id: str
    status: State
    phase: Phase = Field(default=None, validate_default=False)  # type: ignore[assignment]
    raw_status: str | None = None
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    duration: float | None = None
    executor: str | None = None
    progress: Progress | None = None
    errors: tuple[RunError, ...] = ()
    output_ref: str | None = None
    heartbeat_at: AwareDatetime | None = None
    observed_at: AwareDatetime | None = None
    version: int | None = None
    etag: str | None = None
    url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        # The phase follows from the state; a result link is only shown once the run is terminal.
        if isinstance(data, dict) and "status" in data:
            state = data["status"] if isinstance(data["status"], State) else State.parse(str(data["status"]))
            data = {**data, "status": state, "phase": state.phase}
            if not state.is_terminal:
                data["output_ref"] = None
        return data

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def error_message(self) -> str | None:
        """Every error message, joined; None when there are none."""
        return "; ".join(e.message for e in self.errors) or None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (datetimes as ISO 8601 strings)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        return cls.model_validate(data)

    def observed(self) -> RunStatus:
        """A copy stamped with the time this client saw it."""
        return self.model_copy(update={"observed_at": datetime.now(timezone.utc)})
