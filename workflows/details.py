"""Kind-specific fields, after CycloneDX 1.6 and the SPDX 3 AI and Dataset profiles."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workflows.enums import AssetKind, DocType, Environment
from workflows.errors import InvalidInput
from workflows.uris import uri_problem

SHORT = 200
LONG = 3000


class _Details(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DatasetDetails(_Details):
    """Datasheet essentials for a dataset."""

    intended_use: str = Field(default="", max_length=LONG)
    collection_process: str = Field(default="", max_length=LONG)
    known_bias: str = Field(default="", max_length=LONG)
    size: str = Field(default="", max_length=SHORT)


class ModelDetails(_Details):
    """Model card essentials."""

    task: str = Field(default="", max_length=SHORT)
    architecture: str = Field(default="", max_length=SHORT)
    base_model: str = Field(default="", max_length=SHORT)
    metrics: str = Field(default="", max_length=LONG)


class AlgorithmDetails(_Details):
    """Code: what it is written in and with."""

    language: str = Field(default="", max_length=SHORT)
    framework: str = Field(default="", max_length=SHORT)


class InfrastructureDetails(_Details):
    """Where compute or storage runs."""

    provider: str = Field(default="", max_length=SHORT)
    region: str = Field(default="", max_length=SHORT)
    environment: Environment | None = None


class DocumentationDetails(_Details):
    """A document about other assets."""

    doc_type: DocType
    url: str = Field(max_length=500)

    @field_validator("url")
    @classmethod
    def _url_is_web(cls, url: str) -> str:
        problem = uri_problem(url, schemes=("http", "https"))
        if problem:
            raise ValueError(problem)
        return url


class SystemDetails(_Details):
    """An AI system or use case that ties assets together."""

    intended_purpose: str = Field(min_length=1, max_length=LONG)
    affected_people: str = Field(default="", max_length=LONG)


DETAILS_BY_KIND: dict[AssetKind, type[_Details]] = {
    AssetKind.DATASET: DatasetDetails,
    AssetKind.MODEL: ModelDetails,
    AssetKind.ALGORITHM: AlgorithmDetails,
    AssetKind.INFRASTRUCTURE: InfrastructureDetails,
    AssetKind.DOCUMENTATION: DocumentationDetails,
    AssetKind.SYSTEM: SystemDetails,
}


def validate_details(kind: AssetKind, raw: dict[str, Any]) -> dict[str, Any]:
    """Validate the kind-specific fields; raise InvalidInput with one error per bad field."""
    try:
        model = DETAILS_BY_KIND[kind].model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput("Some details need fixing.", field_errors=field_errors(exc)) from exc
    return model.model_dump(mode="json", exclude_defaults=False)


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Turn a pydantic error into {field: friendly message}."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "__root__"
        errors.setdefault(field, _friendly(error))
    return errors


def _friendly(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return "This field is required."
    if kind == "string_too_long":
        return f"Keep this to {ctx['max_length']} characters or fewer."
    if kind == "enum":
        return f"Choose one of: {ctx.get('expected', '')}."
    if kind == "extra_forbidden":
        return "This field does not apply to this kind of asset."
    return error["msg"].removeprefix("Value error, ")
