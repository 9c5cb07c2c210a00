"""The demo's story: four colleagues register, classify, request, deny, approve, and time moves on.

Each step does what a person would do in Slack, through `SlackDriver`, then waits for the stack to answer
and prints what everyone was shown. Nothing is faked past Slack itself: a step waits for the real bot,
worker and scheduler to do their part, and fails loudly if they do not.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.ids import AccessBlock, Action, ReviewVerb
from steward.demo.stack import DemoStack
from steward.demo.transcript import Person, Transcript
from steward.sandbox.driver import buttons

MAYA = Person("U0MAYA001", "maya", "Maya", "ML engineer")
DAN = Person("U0DAN0001", "dan", "Dan", "data scientist")
PRIYA = Person("U0PRIYA01", "priya", "Priya", "dataset owner")
SAM = Person("U0SAM0001", "sam", "Sam", "security lead")
CAST = (MAYA, DAN, PRIYA, SAM)
CHANNELS = {"C0SECURIT": "security", "C0GOVERNA": "ai-governance", "C0AUDIT01": "ai-audit"}
GROUPS = {"security": [SAM.user_id], "governance": [SAM.user_id], "admins": []}
POLICY_CHANNELS = {"security": "C0SECURIT", "governance": "C0GOVERNA", "audit": "C0AUDIT01"}
APPROVERS = (MAYA, SAM, PRIYA)  # the high tier's steps: the owner, security, the data's owner
STEP_TIMEOUT = 30.0


def sandbox_people() -> list[dict[str, Any]]:
    """The cast as the sandbox's users.info knows them."""
    return [{"user_id": p.user_id, "name": p.handle, "real_name": p.name, "tz": "Europe/London"} for p in CAST]


class Story:
    """Plays the demo's scenes against a running stack, narrating as it goes."""

    def __init__(self, stack: DemoStack, transcript: Transcript) -> None:
        self.stack = stack
        self.slack = stack.driver
        self.say = transcript

    def play(self) -> None:
        """Every scene, in order."""
        self.say.skip_to_now()
        self.register()
        self.classify()
        first = self.request("Exploring the ranker", number=1, scene="3. Dan asks for access to the CV ranker")
        self.deny(first)
        second = self.request("Bias audit GOV-142: compare rankings across groups, read-only", number=2,
                              scene="5. Dan asks again, saying what for")
        self.approve(second)
        self.expiry_warning()
        self.review_nudge()
        self.evidence()

    # -- scenes -------------------------------------------------------------------------------------

    def register(self) -> None:
        """Priya registers HR's applications dataset; Maya registers a model trained on it, and a system."""
        self.say.scene("1. Register: a dataset with personal data, and a model trained on it")
        self.say.did(PRIYA.user_id, "types /steward register dataset, and fills in the form")
        self.slack.register("dataset", {"name": "Job applications 2025", "team": "People",
                                        "sensitivity": "restricted", "contains_personal_data": ["yes"]},
                            user=PRIYA.user_id)
        self.settle(PRIYA)
        self.say.did(MAYA.user_id, "types /steward register model: “CV ranker”, trained on job-applications-2025")
        self.slack.register("model", {"name": "CV ranker", "details.task": "ranking"}, user=MAYA.user_id,
                            lineage={"trained_on": "job-applications"})
        self.settle(MAYA)
        self.say.did(MAYA.user_id, "registers the AI system “Candidate screening”, which uses the CV ranker")
        self.slack.register("system", {"name": "Candidate screening",
                                       "details.intended_purpose": "Shortlist applicants for recruiters"},
                            user=MAYA.user_id, lineage={"uses": "cv-ranker"})
        self.settle(MAYA)

    def classify(self) -> None:
        """Maya answers the EU AI Act questionnaire: recruitment is an Annex III area, so the system is high risk."""
        self.say.scene("2. Classify: the EU AI Act questionnaire")
        self.say.did(MAYA.user_id, "types /steward classify candidate-screening")
        form = self.slack.open_modal("classify candidate-screening", user=MAYA.user_id)
        self.settle(MAYA)
        self.say.did(MAYA.user_id, "answers: used in employment and recruitment (Annex III), not a safety component")
        outcome = json.dumps(self.slack.save(form, {"annex_iii_areas": ["employment"],
                                                    "annex_i_safety_component": "no"}, user=MAYA.user_id))
        if "High" not in outcome:
            raise RuntimeError(f"the classification did not come out high: {outcome[:300]}")
        self.say.note("Steward answers in the modal: High risk. The model and the dataset it uses inherit the tier.")
        tiers = self.stack.sql("SELECT slug, effective_tier FROM asset ORDER BY id")
        self.say.note("   " + ", ".join(f"{slug}: {tier}" for slug, tier in tiers))
        self.settle(MAYA)

    def request(self, justification: str, *, number: int, scene: str) -> int:
        """Dan asks for a week's use of the CV ranker; each approver the policy names gets a DM."""
        self.say.scene(scene)
        self.say.did(DAN.user_id, "types /steward request cv-ranker")
        form = self.slack.open_modal("request cv-ranker", user=DAN.user_id)
        self.settle(DAN)
        self.say.did(DAN.user_id, f"asks for use access for 7 days: “{justification}”")
        self.slack.submit(form, {"level": "use", "duration_hours": str(7 * 24), "justification": justification},
                          user=DAN.user_id)
        for approver in APPROVERS:
            self.stack.wait(lambda a=approver: self.approval_dm(a, number), timeout=STEP_TIMEOUT,
                     what=f"{approver.name}'s DM about request #{number}")
        self.settle(DAN)
        return number

    def deny(self, number: int) -> None:
        """Sam, for security, denies the first request with a reason; Dan is told why."""
        self.say.scene("4. Security denies it, with a reason")
        self.say.did(SAM.user_id, f"clicks Deny on request #{number}")
        opened = len(self.slack.sandbox.views_opened())
        self.slack.click(self.approval_dm(SAM, number), Action.DENY_OPEN, user=SAM.user_id)
        # The form opens after the click's ack: wait for a new one, not the last form anyone opened.
        modal = self.stack.wait(lambda: self.slack.sandbox.views_opened()[opened:], what="the deny modal")[0]
        self.settle(SAM)
        reason = "Name the audit ticket, and say why read-only use is enough."
        self.say.did(SAM.user_id, f"gives the reason “{reason}” and clicks Deny")
        self.slack.submit(modal, {AccessBlock.REASON: reason}, user=SAM.user_id)
        self.stack.wait(lambda: self.request_status(number) == "denied", timeout=STEP_TIMEOUT, what="the denial")
        self.settle(SAM)

    def approve(self, number: int) -> None:
        """The owner, security and the data's owner approve in turn; Dan gets a grant for a week."""
        self.say.scene("6. Everyone approves; access is granted")
        for approver in APPROVERS:
            self.say.did(approver.user_id, f"clicks Approve on request #{number}")
            self.slack.click(self.approval_dm(approver, number), Action.APPROVE, user=approver.user_id)
            self.stack.wait(lambda a=approver: self.stack.sql(
                "SELECT 1 FROM decision WHERE request_id = :r AND approver_id = :a", r=number, a=a.user_id),
                timeout=STEP_TIMEOUT, what=f"{approver.name}'s approval")
            self.settle(approver)
        self.stack.wait(lambda: self.stack.sql("SELECT 1 FROM access_grant WHERE status = 'active'"),
                 timeout=STEP_TIMEOUT, what="the grant")
        self.settle(DAN)

    def expiry_warning(self) -> None:
        """Six days later Dan is warned his access ends tomorrow, with Extend."""
        self.say.scene("7. Six days later: the expiry warning")
        expires_at = self.stack.sql("SELECT expires_at FROM access_grant WHERE status = 'active'")[0][0]
        moment = self.stack.clock.set_to(_aware(expires_at) - timedelta(hours=20))
        self.say.note(f"⏩ the sandbox clock moves to {moment:%a %d %b %Y %H:%M} UTC; the scheduler's sweep "
                      "notices the grant ends within a day")
        self.stack.wait(lambda: [m for m in self.slack.dms(DAN.user_id) if Action.EXTEND_GRANT in buttons(m)],
                 timeout=STEP_TIMEOUT, what="Dan's expiry warning")
        self.settle(DAN)

    def review_nudge(self) -> None:
        """Months on, the owners get their batched review nudge at 09:00 on a weekday; Maya confirms one."""
        self.say.scene("8. Three months later: the review nudge")
        due = _aware(self.stack.sql("SELECT min(next_review_due) FROM asset")[0][0])
        moment = self.stack.clock.set_to(due - timedelta(days=1))
        self.say.note(f"⏩ the clock moves to {moment:%a %d %b %Y %H:%M} UTC: the grant has ended, and reviews "
                      "fall due tomorrow")
        nudge_at = self.stack.wait(lambda: self.stack.sql(
            "SELECT min(next_nudge_at) FROM review_nudge WHERE next_nudge_at IS NOT NULL")[0][0],
            timeout=STEP_TIMEOUT, what="the owners' nudges to be scheduled")
        self.settle(DAN)
        moment = self.stack.clock.set_to(_aware(nudge_at) + timedelta(minutes=1))
        self.say.note(f"⏩ the clock moves to {moment:%a %d %b %H:%M} UTC: 09:00 on a weekday where the owners are")
        nudge = self.stack.wait(lambda: self.review_dm(MAYA), timeout=STEP_TIMEOUT, what="Maya's review nudge")
        self.settle(MAYA)
        asset_id = self.stack.sql("SELECT id FROM asset WHERE slug = 'cv-ranker'")[0][0]
        self.say.did(MAYA.user_id, "picks “Still accurate” for the CV ranker")
        self.slack.click(nudge, Action.REVIEW_MENU, user=MAYA.user_id, option=f"{ReviewVerb.ACCURATE}:{asset_id}")
        self.stack.wait(lambda: self.stack.sql("SELECT 1 FROM decision_log WHERE action = 'asset.reviewed'"),
                 timeout=STEP_TIMEOUT, what="the review to be recorded")
        self.settle(MAYA)

    def evidence(self) -> None:
        """An auditor checks the hash chain and exports the inventory as a CycloneDX ML-BOM."""
        self.say.scene("9. Evidence: verify the decision log, export the inventory")
        self.say.note("$ steward audit verify")
        self.say.output(self.stack.run_cli("audit", "verify"))
        out = self.stack.home / "inventory.cdx.json"
        self.say.note(f"$ steward export inventory --format cyclonedx --out {out}")
        self.say.output(self.stack.run_cli("export", "inventory", "--format", "cyclonedx", "--out", str(out)))
        bom = json.loads(out.read_text(encoding="utf-8"))
        self.say.output(f"{len(bom.get('components', []))} components, {len(bom.get('dependencies', []))} "
                        f"dependency entries (CycloneDX {bom.get('specVersion')})")

    # -- looking at the sandbox -------------------------------------------------------------------------

    def settle(self, actor: Person) -> None:
        """Wait for the stack to finish what the last action set off, then print what people were shown."""
        self.stack.settle(timeout=STEP_TIMEOUT)
        self.say.show_new(actor=actor.user_id)

    def approval_dm(self, approver: Person, number: int) -> dict[str, Any] | None:
        """The approver's DM about request #number while it still offers Approve."""
        return next((m for m in self.slack.dms(approver.user_id) if m["text"].startswith(f"Access request #{number}:")
                     and Action.APPROVE in buttons(m)), None)

    def review_dm(self, owner: Person) -> dict[str, Any] | None:
        """The owner's review nudge, once delivered."""
        return next((m for m in self.slack.dms(owner.user_id)
                     if any(e.get("action_id") == Action.REVIEW_MENU for b in m.get("blocks", [])
                            for e in [b.get("accessory") or {}])), None)

    def request_status(self, number: int) -> str | None:
        """The request's status in the database."""
        rows = self.stack.sql("SELECT status FROM access_request WHERE id = :r", r=number)
        return rows[0][0] if rows else None


def _aware(value: datetime | str) -> datetime:
    # Raw SQL on SQLite hands back ISO text, on PostgreSQL datetimes; every time Steward stores is UTC.
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
