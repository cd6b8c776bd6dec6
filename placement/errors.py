"""The one error placement raises, carrying every problem it found at once.

A user fixing a file wants the whole list, not one problem per attempt, so checks collect
`Problem`s and raise them together. Each problem may carry a path inside the Application's
`spec` (e.g. `("workflow", "steps", 2, "dependsOn", 0)`) so the hub can point at the field;
placement never formats the file name, which it does not know.

`PlacementError` is a `ValueError` so that pydantic validators may raise it and the hub's CLI
may catch plain `ValueError` from helpers such as `parse_labels`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PathPart = str | int
"""A field name or a list index."""


@dataclass(frozen=True)
class Problem:
    message: str
    path: tuple[PathPart, ...] = ()


class PlacementError(ValueError):
    def __init__(self, problems: str | Iterable[Problem]) -> None:
        self.problems = (Problem(problems),) if isinstance(problems, str) else tuple(problems)
        super().__init__("\n".join(problem.message for problem in self.problems))
