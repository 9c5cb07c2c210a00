"""Vocabularies of the inventory: kinds, sensitivity, status, tiers and lineage edge types."""

from __future__ import annotations

from enum import StrEnum


class AssetKind(StrEnum):
    """What an asset is."""

    DATASET = "dataset"
    MODEL = "model"
    ALGORITHM = "algorithm"
    INFRASTRUCTURE = "infrastructure"
    DOCUMENTATION = "documentation"
    SYSTEM = "system"

    @property
    def label(self) -> str:
        """A human label for menus."""
        return _KIND_LABELS[self]


_KIND_LABELS = {
    AssetKind.DATASET: "Dataset",
    AssetKind.MODEL: "Model",
    AssetKind.ALGORITHM: "Algorithm / code",
    AssetKind.INFRASTRUCTURE: "Infrastructure",
    AssetKind.DOCUMENTATION: "Documentation",
    AssetKind.SYSTEM: "AI system / use case",
}


class Sensitivity(StrEnum):
    """How carefully data or an artefact must be handled, lowest first."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


class AssetStatus(StrEnum):
    """Lifecycle of an asset."""

    ACTIVE = "active"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


class RiskTier(StrEnum):
    """EU AI Act risk tiers, in no particular order; use `rank` to compare."""

    MINIMAL = "minimal"
    LIMITED = "limited"
    HIGH = "high"
    PROHIBITED = "prohibited"

    @property
    def rank(self) -> int:
        """Severity: higher is stricter."""
        return _TIER_RANK[self]


_TIER_RANK = {RiskTier.MINIMAL: 0, RiskTier.LIMITED: 1, RiskTier.HIGH: 2, RiskTier.PROHIBITED: 3}


def highest_tier(tiers) -> RiskTier | None:
    """The strictest of `tiers`, or None when there are none."""
    tiers = [t for t in tiers if t is not None]
    return max(tiers, key=lambda t: t.rank) if tiers else None


class EdgeType(StrEnum):
    """Typed lineage from a source asset to a target asset ("model trained_on dataset")."""

    TRAINED_ON = "trained_on"
    TESTED_ON = "tested_on"
    DERIVED_FROM = "derived_from"
    USES = "uses"
    RUNS_ON = "runs_on"
    DOCUMENTS = "documents"

    @property
    def inverse_label(self) -> str:
        """How the edge reads from its target ("used to train")."""
        return _INVERSE_LABELS[self]

    @property
    def label(self) -> str:
        """How the edge reads from its source ("trained on")."""
        return self.value.replace("_", " ")


_INVERSE_LABELS = {
    EdgeType.TRAINED_ON: "used to train",
    EdgeType.TESTED_ON: "used to test",
    EdgeType.DERIVED_FROM: "source of",
    EdgeType.USES: "used by",
    EdgeType.RUNS_ON: "hosts",
    EdgeType.DOCUMENTS: "documented by",
}

# Edges along which risk flows from a system to what it depends on. A document is not a dependency.
DEPENDENCY_EDGES = frozenset(EdgeType) - {EdgeType.DOCUMENTS}


class DocType(StrEnum):
    """Kinds of documentation the policy can require."""

    MODEL_CARD = "model_card"
    DATASHEET = "datasheet"
    RISK_ASSESSMENT = "risk_assessment"
    TECHNICAL_DOCUMENTATION = "technical_documentation"
    INSTRUCTIONS_FOR_USE = "instructions_for_use"
    IMPACT_ASSESSMENT = "impact_assessment"

    @property
    def label(self) -> str:
        """A human label."""
        return self.value.replace("_", " ").capitalize()


class Environment(StrEnum):
    """Deployment environment of infrastructure."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class AccessLevel(StrEnum):
    """How much of an asset a grant allows, weakest first."""

    READ = "read"
    USE = "use"
    ADMIN = "admin"


class RequestStatus(StrEnum):
    """Where an access request is in its life (transitions in workflows/access.py)."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class GrantStatus(StrEnum):
    """Where a grant is in its life (transitions in workflows/access.py)."""

    PROVISIONING = "provisioning"  # approved, waiting for its connector to set the access up
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ConnectorType(StrEnum):
    """How a provisioning connector carries out a grant or a revoke (see workflows/provisioning.py)."""

    MANUAL = "manual"    # the asset's owner does it by hand and presses Done
    WEBHOOK = "webhook"  # Steward POSTs a signed JSON event and waits for a 2xx


class ProvisioningAction(StrEnum):
    """What a provisioning job asks its connector to do."""

    GRANT = "grant"
    REVOKE = "revoke"


class ProvisioningStatus(StrEnum):
    """Where a provisioning job is (transitions in workflows/provisioning.py)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"        # gave up after the retries; the owner was told
    CANCELLED = "cancelled"  # the access was revoked before it was set up
