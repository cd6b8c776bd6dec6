"""Reading an Application file: YAML (duplicate keys refused), then the models, then the
checks across fields; every problem at once, each naming its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from hub.errors import InvalidInput
from hub.format.application import API_VERSION, Application
from hub.format.documents import ApplicationLoader
from hub.format.problems import format_location, semantic_problems, validation_problems
from placement.errors import Problem

# --- reading a file ------------------------------------------------------------------------------


class SpecError(InvalidInput):
    """An Application file was refused; `problems` lists each, the message one per line."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(
            "\n".join(
                f"{source}: {format_location(p.path)}: {p.message}"
                if p.path
                else f"{source}: {p.message}"
                for p in self.problems
            )
        )


def load_application(text: str, source: str) -> Application:
    """Parse and check an Application file; `source` names it in messages (a path, `-`)."""
    try:
        data = yaml.load(text, Loader=ApplicationLoader)
    except yaml.YAMLError as e:
        raise SpecError(source, [Problem(_yaml_message(e))]) from e
    if not isinstance(data, dict):
        raise SpecError(
            source,
            [Problem("expected an Application: a map with apiVersion, kind, metadata, spec")],
        )
    try:
        app = Application.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, validation_problems(e, Application)) from e
    problems = list(dict.fromkeys(semantic_problems(app)))
    if problems:
        raise SpecError(source, problems)
    return app


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file, for editors (`flotilla schema`)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Application.model_json_schema(by_alias=True),
        "title": f"Flotilla Application ({API_VERSION})",
    }


def _yaml_message(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = f"{error.context}, {error.problem}" if error.context else error.problem
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"not valid YAML: {error}"
