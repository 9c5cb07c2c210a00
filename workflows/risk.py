"""EU AI Act style risk classification: the questionnaire, its pure rules, and the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workflows.enums import RiskTier


class ProhibitedPractice(StrEnum):
    """Art. 5 practices."""

    MANIPULATION = "manipulation"
    EXPLOITING_VULNERABILITIES = "exploiting_vulnerabilities"
    SOCIAL_SCORING = "social_scoring"
    PREDICTIVE_POLICING = "predictive_policing"
    FACE_SCRAPING = "face_scraping"
    EMOTION_AT_WORK_OR_SCHOOL = "emotion_at_work_or_school"
    BIOMETRIC_CATEGORISATION = "biometric_categorisation"
    REALTIME_REMOTE_BIOMETRIC_ID = "realtime_remote_biometric_id"


class AnnexIIIArea(StrEnum):
    """Annex III high-risk areas."""

    BIOMETRICS = "biometrics"
    CRITICAL_INFRASTRUCTURE = "critical_infrastructure"
    EDUCATION = "education"
    EMPLOYMENT = "employment"
    ESSENTIAL_SERVICES = "essential_services"
    LAW_ENFORCEMENT = "law_enforcement"
    MIGRATION = "migration"
    JUSTICE = "justice"


class TransparencyDuty(StrEnum):
    """Art. 50 transparency duties."""

    INTERACTS_WITH_PEOPLE = "interacts_with_people"
    SYNTHETIC_CONTENT = "synthetic_content"
    EMOTION_OR_BIOMETRIC_CATEGORISATION = "emotion_or_biometric_categorisation"
    DEEPFAKE = "deepfake"
    PUBLIC_INTEREST_TEXT = "public_interest_text"


LABELS: dict[StrEnum, str] = {
    ProhibitedPractice.MANIPULATION: "Subliminal or manipulative techniques that distort behaviour",
    ProhibitedPractice.EXPLOITING_VULNERABILITIES: "Exploits age, disability or social or economic situation",
    ProhibitedPractice.SOCIAL_SCORING: "Social scoring leading to unjustified treatment",
    ProhibitedPractice.PREDICTIVE_POLICING: "Predicts crime from profiling or personality alone",
    ProhibitedPractice.FACE_SCRAPING: "Untargeted scraping of facial images",
    ProhibitedPractice.EMOTION_AT_WORK_OR_SCHOOL: "Infers emotions at work or in education",
    ProhibitedPractice.BIOMETRIC_CATEGORISATION: "Infers race, politics, religion or sexuality from biometrics",
    ProhibitedPractice.REALTIME_REMOTE_BIOMETRIC_ID: "Real-time remote biometric ID in public for policing",
    AnnexIIIArea.BIOMETRICS: "Biometrics (identification, categorisation, emotion recognition)",
    AnnexIIIArea.CRITICAL_INFRASTRUCTURE: "Critical infrastructure (safety of utilities, traffic)",
    AnnexIIIArea.EDUCATION: "Education and vocational training",
    AnnexIIIArea.EMPLOYMENT: "Employment and management of workers",
    AnnexIIIArea.ESSENTIAL_SERVICES: "Essential services (credit scoring, insurance, benefits)",
    AnnexIIIArea.LAW_ENFORCEMENT: "Law enforcement",
    AnnexIIIArea.MIGRATION: "Migration, asylum and border control",
    AnnexIIIArea.JUSTICE: "Administration of justice and democratic processes",
    TransparencyDuty.INTERACTS_WITH_PEOPLE: "Interacts directly with people (chatbot, voice agent)",
    TransparencyDuty.SYNTHETIC_CONTENT: "Generates synthetic audio, images, video or text",
    TransparencyDuty.EMOTION_OR_BIOMETRIC_CATEGORISATION: "Recognises emotions or categorises people biometrically",
    TransparencyDuty.DEEPFAKE: "Produces deep fakes",
    TransparencyDuty.PUBLIC_INTEREST_TEXT: "Publishes text to inform the public on matters of public interest",
}


class RiskAnswers(BaseModel):
    """The answered questionnaire, in EU AI Act order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prohibited_practices: list[ProhibitedPractice] = Field(default_factory=list)
    annex_i_safety_component: bool = False
    annex_iii_areas: list[AnnexIIIArea] = Field(default_factory=list)
    art_6_3_exemption: bool = False
    art_6_3_rationale: str = Field(default="", max_length=3000)
    transparency_duties: list[TransparencyDuty] = Field(default_factory=list)
    notes: str = Field(default="", max_length=3000)

    @model_validator(mode="after")
    def _exemption_is_written(self) -> RiskAnswers:
        if self.art_6_3_exemption and not self.art_6_3_rationale.strip():
            raise ValueError("art_6_3_rationale: An Art. 6(3) exemption must be written down.")
        return self


@dataclass(frozen=True)
class RiskOutcome:
    """The tier the answers lead to, and why."""

    tier: RiskTier
    reasons: list[str] = field(default_factory=list)
    transparency_flags: list[str] = field(default_factory=list)

    @property
    def rationale(self) -> str:
        """The reasons as one paragraph."""
        return " ".join(self.reasons)


def classify(answers: RiskAnswers) -> RiskOutcome:
    """Apply the questionnaire in order: Art. 5, Annex I, Annex III (less Art. 6(3)), Art. 50."""
    flags = [duty.value for duty in answers.transparency_duties]
    if answers.prohibited_practices:
        practices = "; ".join(LABELS[p] for p in answers.prohibited_practices)
        return RiskOutcome(RiskTier.PROHIBITED, [f"Prohibited practice under Art. 5: {practices}."], flags)
    if answers.annex_i_safety_component:
        return RiskOutcome(RiskTier.HIGH, ["Safety component of a product regulated under Annex I."], flags)
    reasons: list[str] = []
    if answers.annex_iii_areas:
        areas = "; ".join(LABELS[a] for a in answers.annex_iii_areas)
        if not answers.art_6_3_exemption:
            return RiskOutcome(RiskTier.HIGH, [f"Annex III use: {areas}."], flags)
        reasons.append(f"Annex III use ({areas}) exempted under Art. 6(3): {answers.art_6_3_rationale.strip()}")
    if flags:
        duties = "; ".join(LABELS[d] for d in answers.transparency_duties)
        return RiskOutcome(RiskTier.LIMITED, reasons + [f"Transparency duties under Art. 50: {duties}."], flags)
    return RiskOutcome(RiskTier.MINIMAL, reasons + ["No prohibited, high-risk or transparency criteria apply."])
