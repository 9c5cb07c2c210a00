"""The inventory as a CycloneDX 1.6 ML-BOM, validated strictly against the official schema.

cyclonedx-python-lib builds the document (components, licenses, external references, properties,
dependencies) and ships both the 1.6 JSON schema and its validator. It cannot yet express a
component's `modelCard` or `data`, so those are added to its JSON output, and the final document is
validated with the library's strict validator before anyone sees it.

Mapping: dataset → `data` (with `data[0].type` "dataset"), model → `machine-learning-model` (with a
`modelCard`), system → `application`, algorithm → `library`, infrastructure → `platform`, and
documentation → `data` (1.6 has no document type; `data[0].type` is "other" and the document's URL is
an external reference, also added to every asset it documents). Each component's bom-ref is the
asset's slug; lineage along dependency edges (everything but `documents`) becomes `dependencies`,
and a model's trained_on and tested_on datasets become `modelCard.modelParameters.datasets` refs.
Owners appear as data governance owners, and on every component as a `steward:owner` property.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from datetime import datetime
from importlib import metadata
from typing import Any

from cyclonedx.model import ExternalReference, ExternalReferenceType, Property, XsUri
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from sqlmodel import Session

from workflows.enums import DEPENDENCY_EDGES, AssetKind, AssetStatus, DocType, EdgeType
from workflows.errors import DomainError
from workflows.exports.inventory import InventoryItem, iter_inventory
from workflows.models import Asset

try:  # the factory's home since 11.x; the old path still works but warns
    from cyclonedx.contrib.license.factories import LicenseFactory
except ImportError:  # pragma: no cover - older 11.x releases
    from cyclonedx.factory.license import LicenseFactory

SCHEMA_VERSION = SchemaVersion.V1_6
COMPONENT_TYPES: dict[AssetKind, ComponentType] = {
    AssetKind.DATASET: ComponentType.DATA,
    AssetKind.MODEL: ComponentType.MACHINE_LEARNING_MODEL,
    AssetKind.SYSTEM: ComponentType.APPLICATION,
    AssetKind.ALGORITHM: ComponentType.LIBRARY,
    AssetKind.INFRASTRUCTURE: ComponentType.PLATFORM,
    AssetKind.DOCUMENTATION: ComponentType.DATA,
}
DOC_REFERENCE_TYPES: dict[DocType, ExternalReferenceType] = {
    DocType.MODEL_CARD: ExternalReferenceType.MODEL_CARD,
    DocType.RISK_ASSESSMENT: ExternalReferenceType.RISK_ASSESSMENT,
}
# The datasets a model card lists: "the datasets used to train and evaluate the model".
CARD_DATASET_EDGES = (EdgeType.TRAINED_ON, EdgeType.TESTED_ON)
# "AUC 0.91", "F1: 0.82", "precision=0.7 on holdout-2025", "accuracy 93%".
_METRIC = re.compile(r"^\s*(?P<name>[A-Za-z][\w .@/()+-]*?)\s*[:=]?\s*(?P<value>[-+]?\d+(?:\.\d+)?\s?%?)"
                     r"(?:\s+(?:on|for)\s+(?P<slice>.+?))?\s*$")


class BomInvalid(DomainError):
    """The CycloneDX document did not pass validation against the 1.6 schema."""


def build_bom(*, session: Session, now: datetime, serial_number: uuid.UUID | None = None) -> dict[str, Any]:
    """The whole inventory as a CycloneDX 1.6 JSON document, strictly validated; raises BomInvalid."""
    items = list(iter_inventory(session=session))
    by_slug = {item.asset.slug: item for item in items}
    bom = Bom(serial_number=serial_number or uuid.uuid4())
    bom.metadata.timestamp = now
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="steward",
                                                version=_steward_version(), bom_ref="steward-exporter"))
    documented = _documents_by_target(items)
    components = {item.asset.slug: _component(item, documented.get(item.asset.slug, [])) for item in items}
    for component in components.values():
        bom.components.add(component)
    for item in items:
        depends = [components[slug] for edge in DEPENDENCY_EDGES for slug in item.lineage.get(edge, [])
                   if slug in components]
        bom.register_dependency(components[item.asset.slug], depends)
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    upstream_systems = _systems_using(items)
    for entry in document.get("components", []):
        item = by_slug[entry["bom-ref"]]
        if item.asset.kind == AssetKind.MODEL:
            entry["modelCard"] = model_card(item, by_slug, upstream_systems.get(item.asset.slug, []))
        elif entry["type"] == ComponentType.DATA.value:
            entry["data"] = [component_data(item.asset)]
    problems = validation_errors(document)
    if problems:
        raise BomInvalid(f"the CycloneDX document does not pass the 1.6 schema: {problems[0]}")
    return document


def validation_errors(document: dict[str, Any], *, limit: int = 20) -> list[str]:
    """What is wrong with `document` under the strict CycloneDX 1.6 JSON schema (empty when it passes)."""
    errors = JsonStrictValidator(SCHEMA_VERSION).validate_str(json.dumps(document), all_errors=True)
    found = []
    for error in errors or ():
        detail = error.data
        where = "/".join(str(p) for p in getattr(detail, "absolute_path", [])) or "(document)"
        found.append(f"{where}: {getattr(detail, 'message', detail)}")
        if len(found) >= limit:
            break
    return found


# ---- components ----------------------------------------------------------------------------------


def _component(item: InventoryItem, documents: list[Asset]) -> Component:
    asset = item.asset
    return Component(
        type=COMPONENT_TYPES[asset.kind], bom_ref=asset.slug, name=asset.name, version=asset.version or None,
        description=asset.description or None, licenses=_licenses(asset.license),
        external_references=_references(asset, documents), properties=_properties(asset),
    )


def _licenses(text: str) -> list:
    # An SPDX id or expression when it is one, else a named license ("proprietary").
    return [LicenseFactory().make_from_string(text.strip())] if text.strip() else []


def _references(asset: Asset, documents: list[Asset]) -> list[ExternalReference]:
    refs = []
    if asset.location_uri:
        refs.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(asset.location_uri),
                                      comment="location"))
    if asset.kind == AssetKind.DOCUMENTATION and asset.details.get("url"):
        refs.append(_doc_reference(asset))
    refs += [_doc_reference(doc) for doc in documents if doc.details.get("url")]
    return refs


def _doc_reference(doc: Asset) -> ExternalReference:
    doc_type = DocType(doc.details["doc_type"]) if doc.details.get("doc_type") in set(DocType) else None
    kind = DOC_REFERENCE_TYPES.get(doc_type, ExternalReferenceType.DOCUMENTATION) if doc_type else \
        ExternalReferenceType.DOCUMENTATION
    label = doc_type.label if doc_type else "Documentation"
    return ExternalReference(type=kind, url=XsUri(doc.details["url"]), comment=f"{label}: {doc.slug}")


def _properties(asset: Asset) -> list[Property]:
    values = {
        "steward:kind": asset.kind.value,
        "steward:owner": asset.owner_id,
        "steward:team": asset.team,
        "steward:status": asset.status.value,
        "steward:sensitivity": asset.sensitivity.value,
        "steward:contains_personal_data": "true" if asset.contains_personal_data else "false",
        "steward:risk_tier": asset.risk_tier.value if asset.risk_tier else "",
        "steward:effective_tier": asset.effective_tier.value if asset.effective_tier else "",
    }
    values |= {f"steward:details.{key}": str(value) for key, value in sorted(asset.details.items())
               if value not in (None, "")}
    return [Property(name=name, value=value) for name, value in values.items() if value]


# ---- modelCard and data (added to the library's JSON) --------------------------------------------


def model_card(item: InventoryItem, by_slug: dict[str, InventoryItem], systems: list[Asset]) -> dict[str, Any]:
    """A model's `modelCard`: parameters with dataset refs, metrics parsed from its text, considerations."""
    details = item.asset.details
    datasets = list(dict.fromkeys(slug for edge in CARD_DATASET_EDGES for slug in item.lineage.get(edge, [])
                                  if slug in by_slug))
    parameters = _compact({
        "task": details.get("task"),
        "architectureFamily": details.get("architecture"),
        "modelArchitecture": details.get("base_model"),
        "datasets": [{"ref": slug} for slug in datasets],
    })
    metrics = parse_metrics(details.get("metrics") or "")
    limitations = [f"{slug}: {by_slug[slug].asset.details['known_bias']}" for slug in datasets
                   if by_slug[slug].asset.details.get("known_bias")]
    ethics = [{"name": f"{s.slug} affects: {s.details['affected_people']}"} for s in systems
              if s.details.get("affected_people")]
    if item.asset.effective_tier:
        ethics.append({"name": f"Part of a {item.asset.effective_tier.value}-risk AI system (EU AI Act)"})
    considerations = _compact({
        "useCases": [f"{s.slug}: {s.details['intended_purpose']}" for s in systems
                     if s.details.get("intended_purpose")],
        "technicalLimitations": limitations,
        "ethicalConsiderations": ethics,
    })
    return _compact({
        "modelParameters": parameters,
        "quantitativeAnalysis": {"performanceMetrics": metrics} if metrics else None,
        "considerations": considerations,
    })


def component_data(asset: Asset) -> dict[str, Any]:
    """The `data` entry of a dataset or document: classification, contents and governance owners."""
    details = asset.details
    if asset.kind == AssetKind.DATASET:
        contents = _compact({
            "url": asset.location_uri or None,
            "properties": [{"name": key, "value": str(details[key])}
                           for key in ("size", "collection_process", "known_bias") if details.get(key)],
        })
        description = details.get("intended_use") or asset.description
        kind = "dataset"
    else:
        contents = _compact({"url": details.get("url") or asset.location_uri or None})
        doc_type = details.get("doc_type")
        description = asset.description or (DocType(doc_type).label if doc_type in set(DocType) else "")
        kind = "other"
    owners: list[dict[str, Any]] = [{"contact": {"name": asset.owner_id}}]
    if asset.team:
        owners.append({"organization": {"name": asset.team}})
    return _compact({
        "type": kind,
        "name": asset.name,
        "contents": contents,
        "classification": asset.sensitivity.value,
        "sensitiveData": ["personal data"] if asset.contains_personal_data else [],
        "description": description or None,
        "governance": {"owners": owners},
    })


def parse_metrics(text: str) -> list[dict[str, str]]:
    """`performanceMetrics` from free text of "name value" pairs, separated by commas, semicolons or lines."""
    metrics = []
    for part in re.split(r"[,;\n]", text):
        match = _METRIC.match(part)
        if match:
            metric = {"type": match["name"].strip(), "value": match["value"].replace(" ", "")}
            if match["slice"]:
                metric["slice"] = match["slice"].strip()
            metrics.append(metric)
    return metrics


# ---- the graph -----------------------------------------------------------------------------------


def _documents_by_target(items: list[InventoryItem]) -> dict[str, list[Asset]]:
    found: dict[str, list[Asset]] = defaultdict(list)
    for item in items:
        for slug in item.lineage.get(EdgeType.DOCUMENTS, []):
            found[slug].append(item.asset)
    return found


def _systems_using(items: list[InventoryItem]) -> dict[str, list[Asset]]:
    # For each model, the running AI systems downstream of it along dependency edges, in slug order.
    users: dict[str, set[str]] = defaultdict(set)
    for item in items:
        for edge in DEPENDENCY_EDGES:
            for slug in item.lineage.get(edge, []):
                users[slug].add(item.asset.slug)
    by_slug = {item.asset.slug: item.asset for item in items}
    found: dict[str, list[Asset]] = {}
    for slug in (s for s, asset in by_slug.items() if asset.kind == AssetKind.MODEL):
        seen, stack = set(), list(users.get(slug, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(users.get(current, ()))
        found[slug] = [by_slug[s] for s in sorted(seen) if s in by_slug and by_slug[s].kind == AssetKind.SYSTEM
                       and by_slug[s].status != AssetStatus.RETIRED]
    return found


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "", [], {})}


def _steward_version() -> str:
    try:
        return metadata.version("steward")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"
