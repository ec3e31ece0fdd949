"""The target menu shown when the login names no target (pure: bytes in, bytes out)."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_ANSWER = 16


def render(user: str, targets: list[str]) -> bytes:
    lines = [f"bastion: {user}, you may reach these targets now:"]
    lines += [f"  {n}) {name}" for n, name in enumerate(targets, start=1)]
    lines.append(f"Choose a target [1-{len(targets)}], or q to quit: ")
    return "\r\n".join(lines).encode()


@dataclass
class Menu:
    """Reads a choice typed at the menu; feed it the engineer's keystrokes."""

    targets: list[str]
    typed: str = ""
    done: bool = False
    choice: str | None = None
    echo: list[bytes] = field(default_factory=list)

    def feed(self, data: bytes) -> bytes:
        """Consume keystrokes; returns what to echo back."""
        out = bytearray()
        for char in data.decode("utf-8", "replace"):
            if self.done:
                break
            out += self._key(char)
        return bytes(out)

    def _key(self, char: str) -> bytes:
        if char in "\r\n":
            self.done = True
            self.choice = self._pick(self.typed.strip())
            return b"\r\n"
        if char in "\x03\x04":
            self.done = True
            return b"\r\n"
        if char in "\x7f\x08":
            if self.typed:
                self.typed = self.typed[:-1]
                return b"\x08 \x08"
            return b""
        if char.isprintable() and len(self.typed) < MAX_ANSWER:
            self.typed += char
            return char.encode()
        return b""

    def _pick(self, answer: str) -> str | None:
        if answer.isdigit() and 1 <= int(answer) <= len(self.targets):
            return self.targets[int(answer) - 1]
        return answer if answer in self.targets else None
