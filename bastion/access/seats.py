"""How many database sessions may be open at once, through the door and per person (pure):
the cap an operator of a connection pooler expects, so one login cannot take every backend."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Seats:
    """Open sessions counted from the moment a proven login is admitted to its end.

    `take` before a session opens upstream (None: seated; else the one-line refusal) and
    `give_back` once for every seat taken, when the session ends or fails to open.
    """

    total: int
    per_user: int
    taken: int = 0
    by_user: dict[str, int] = field(default_factory=dict)

    def take(self, user: str) -> str | None:
        held = self.by_user.get(user, 0)
        if held >= self.per_user:
            return (f"{user} already has {held} database sessions open through the bastion"
                    f" (postgres.max_sessions_per_user); close one and connect again")  # fmt: skip
        if self.taken >= self.total:
            return (f"the bastion already has {self.taken} database sessions open"
                    " (postgres.max_sessions); try again when one has ended")  # fmt: skip
        self.taken += 1
        self.by_user[user] = held + 1
        return None

    def give_back(self, user: str) -> None:
        held = self.by_user.get(user, 0)
        if held <= 0:
            return
        self.taken -= 1
        if held == 1:
            del self.by_user[user]
        else:
            self.by_user[user] = held - 1
