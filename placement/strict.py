"""The pydantic base every model read from a user's file shares.

A KubeVela file that Flotilla half-understands is worse than one it refuses, so nothing is
coerced and nothing unknown passes: `strict` refuses `"5"` for an integer and `yes` for a
boolean, `extra="forbid"` refuses a misspelt field instead of dropping it. Fields are written
in Python style and read in the file's camelCase.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )
