"""One scenario's world: who is who, which organizations exist, the scenario's clock.

Every username, email, organization key and address carries the scenario's suffix,
so scenarios never collide, even on a live server that keeps its data between runs.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tests.steps.client import Api, Reply

PASSWORD = "Valid#Pass2024x"  # meets R17 and shares no 3 characters with any persona's name
NEW_PASSWORD = "Other#Pass2025y"
# The password a person chooses at first sign-in when someone else chose the first one.
OWN_PASSWORD = "Jxv#Tfp2026!Ry"
ANSWERS = ("123 Oak St.", "Opal")
QUESTIONS = ("What is our address?", "What is your favorite gemstone?")
# None of these letters occur in the passwords of the features, so a suffix never creates
# (or hides) an R17 "three characters in common with the user name" overlap.
SUFFIX_ALPHABET = "bkmqwz"

PORTALS = {
    "AHCCCS Online Provider Portal": "ahcccs",
    "AHCCCS QM Portal": "qm",
    "Arkansas Health & Wellness Secure Portal": "ahw",
    "MassHealth Provider Online Service Center": "masshealth",
}

# The portal functions by the names the documents give them (R14); anything else is slugified,
# which is how a scenario names a function outside the catalog.
FUNCTIONS = {
    "Prior Authorizations": "prior_authorizations",
    "IAD Submit": "iad_submit", "IAD Return": "iad_return", "IAD Approve": "iad_approve",
    "IRF Submit": "irf_submit", "IAD-IRF Review": "iad_irf_review", "IAD-IRF Redact": "iad_irf_redact",
    "Quality of Care": "qoc", "QOC": "qoc", "Office of Human Rights": "ohr", "OHR": "ohr",
    "Independent Oversight Committee": "ioc", "IOC": "ioc",
    "Seclusion and Restraint": "seclusion_restraint", "Seclusion And Restraint": "seclusion_restraint",
    "Waitlist": "waitlist", "Out of State": "out_of_state", "Out Of State": "out_of_state",
    "Office of Individual and Family Affairs": "oifa", "OIFA": "oifa",
    "Health Record": "health_records", "Health Records": "health_records",
}

# The buttons of the documents, and the contract's action each one is (R5).
BUTTONS = {
    "Approve User": "approve", "Activate": "approve",
    "Set as Master Account": "upgrade", "Upgrade to Master Account": "upgrade",
    "Remove User": "remove", "Remove": "remove",
    "Enable User": "enable", "Disable User": "disable", "Disable user": "disable",
    "Send Registration Email": "send-registration-email",
    "Send Password Reset Email": "send-password-recovery", "Send Password Recover for User": "send-password-recovery",
    "Reset Password": "send-password-recovery",
    "Unlock": "unlock", "Unlock User": "unlock", "Downgrade": "downgrade",
}

STATUS_WORDS = {
    "active": "active", "Active": "active", "locked": "locked", "Locked": "locked", "disabled": "disabled",
    "Disabled": "disabled", "unverified": "unverified", "Unverified": "unverified", "removed": "removed",
    "awaiting approval": "pending_approval", "awaiting activation": "pending_activation",
    "Verification Pending": "pending_approval",
}


def function_id(label: str) -> str:
    label = label.strip()
    return FUNCTIONS.get(label) or re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def split_list(text: str) -> list[str]:
    text = text.strip()
    if text in ("", "nothing", "none"):
        return []
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Person:
    username: str
    org: str          # the logical organization the person was set up in
    email: str
    password: str = PASSWORD
    first_name: str = ""
    last_name: str = "Smith"
    token: str | None = None
    token_at: datetime | None = None
    # Set up by someone else (a payer- or support-designated admin, a subordinate): the password is
    # temporary and, where the set-up said nothing of them, the terms of use are still to be accepted.
    temporary_password: bool = False
    terms_pending: bool = False
    access_request: int | None = None  # the id of the person's last access request


@dataclass
class Org:
    key: str
    address: str | None = None  # the formatted correspondence address, as a letter's recipient
    business_type: str | None = None
    region: str | None = None
    admins: list[str] = field(default_factory=list)  # logical names, in the order they became admin


class Story:
    def __init__(self, api: Api):
        self.api = api
        self.suffix = "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(10))
        self.portal: str | None = None
        self.people: dict[str, Person] = {}
        self.orgs: dict[str, Org] = {}
        self.last: Reply | None = None
        self.sweeps: list[Reply] = []
        self._support: Person | None = None
        # Freeze the server's clock where it stands (moving it by zero): the scenario's day 0.
        self.t0 = self.move_clock({"advance": "PT0S"})
        self.now = self.t0

    # --- names --------------------------------------------------------------------------------
    def username(self, name: str) -> str:
        return self.people[name].username if name in self.people else f"{name}-{self.suffix}"

    def org_key(self, name: str) -> str:
        return self.orgs[name].key if name in self.orgs else f"{name}-{self.suffix}"

    def email(self, address: str) -> str:
        local, _, domain = address.partition("@")
        return f"{local}.{self.suffix}@{domain}"

    def person(self, name: str) -> Person:
        assert name in self.people, f"the scenario has not set up {name!r}"
        return self.people[name]

    # --- calls --------------------------------------------------------------------------------
    def call(self, method: str, path: str, body=None, token: str | None = None) -> Reply:
        assert self.portal, "name the portal first (Given the portal is the ...)"
        self.last = self.api.portal(self.portal, method, path, body, token)
        return self.last

    def expect(self, reply: Reply, *statuses: int) -> Reply:
        assert reply.status in statuses, f"expected {statuses}: {reply}"
        return reply

    def move_clock(self, body: dict) -> datetime:
        reply = self.api.clock(body)
        assert reply.status == 200, f"the server's clock cannot be moved (testing.clock must be settable): {reply}"
        self.now = parse_instant(reply.body["now"])
        return self.now

    def advance(self, delta: timedelta) -> None:
        seconds = int(delta.total_seconds())
        self.move_clock({"advance": f"PT{seconds}S"})

    def to_day(self, day: int) -> None:
        target = self.t0 + timedelta(days=day)
        assert target >= self.now, f"day {day} is already past"
        self.move_clock({"now": target.isoformat()})

    def day_of(self, instant: str) -> int:
        return (parse_instant(instant) - self.t0) // timedelta(days=1)

    # --- organizations ------------------------------------------------------------------------
    def enroll(self, name: str, *, address: bool, business_type: str | None = None,
               region: str | None = None) -> Org:
        key = self.org_key(name)
        if self.portal == "qm" and business_type is None:
            business_type, region = "Provider", "Central"
        body: dict = {"key": key, "name": f"{name} clinic"}
        org = Org(key, business_type=business_type, region=region)
        if address:
            line1 = f"801 E Jefferson St Suite {self.suffix}"
            body["addresses"] = [{"id": "CORR", "line1": line1, "city": "Phoenix", "state": "AZ", "zip": "85034"}]
            org.address = f"{line1}, Phoenix, AZ 85034"
        if business_type:
            body["business_type"], body["region"] = business_type, region
        self.expect(self.call("POST", "/organizations", body), 201)
        self.orgs[name] = org
        return org

    def organization(self, name: str) -> dict:
        return self.expect(self.call("GET", f"/organizations/{self.org_key(name)}"), 200).body

    # --- people -------------------------------------------------------------------------------
    def new_person(self, name: str, org: str, email: str | None = None, first: str | None = None,
                   last: str | None = None) -> Person:
        username = f"{name}-{self.suffix}"
        person = Person(username, org, email or f"{username}@example.org",
                        first_name=first or name.split("_")[0].title(), last_name=last or "Smith")
        return person

    def registration_body(self, person: Person, org: str, **extra) -> dict:
        body = {"organization": self.org_key(org), "username": person.username, "first_name": person.first_name,
                "last_name": person.last_name, "email": person.email, "phone": "602-555-0101",
                "password": person.password,
                "security_questions": [{"question": q, "answer": a} for q, a in zip(QUESTIONS, ANSWERS)],
                "accepted_terms": True}
        known = self.orgs.get(org)
        if known is not None and known.business_type:
            body["business_type"], body["region"] = known.business_type, known.region
        if known is not None and known.address and not known.admins:
            body["address_id"] = "CORR"
        body.update(extra)
        return {k: v for k, v in body.items() if v is not None}

    def register(self, name: str, org: str, **extra) -> Reply:
        person = self.people.get(name) or self.new_person(name, org)
        if "password" in extra:
            person.password = extra["password"]
        reply = self.call("POST", "/registrations", self.registration_body(person, org, **extra))
        if reply.status == 201:
            self.people[name] = person
        return reply

    def letter_for(self, name: str) -> dict:
        person = self.person(name)
        org = self.orgs[person.org]
        box = self.outbox(org.address)
        letters = [n for n in box if n["channel"] == "letter" and n["payload"].get("username") == person.username]
        assert letters, f"no activation letter for {name} at {org.address!r}: {box}"
        return letters[-1]

    def outbox(self, to: str) -> list[dict]:
        reply = self.expect(self.api.portal(self.portal, "GET", f"/outbox?to={_quote(to)}"), 200)
        return reply.body["notifications"]

    def emails_to(self, name: str) -> list[dict]:
        return [n for n in self.outbox(self.person(name).email) if n["channel"] == "email"]

    def activate(self, name: str, *, code: str | None = None, new_password: str = PASSWORD) -> Reply:
        letter = self.letter_for(name)["payload"]
        reply = self.call("POST", "/activations", {
            "username": self.username(name), "code": letter["activation_code"] if code is None else code,
            "temporary_password": letter["temporary_password"], "new_password": new_password})
        if reply.status == 200:
            self.person(name).password = new_password
        return reply

    def make_admin(self, name: str, org: str) -> Person:
        """The portal's own way to an active admin: letter activation, upgrade, or payer/support set-up."""
        known = self.orgs[org]
        if self.portal in ("ahcccs", "qm"):
            if not known.admins:
                self.expect(self.register(name, org), 201)
                self.expect(self.activate(name), 200)
            else:
                self.make_member(name, org)
                self.expect(self.act(known.admins[0], "upgrade", name), 200)
        else:
            self.designate_admin(name, org)
        known.admins.append(name)
        return self.person(name)

    def designate_admin(self, name: str, org: str, **extra) -> Reply:
        person = self.people.get(name) or self.new_person(name, org)
        body = {"username": person.username, "first_name": person.first_name, "last_name": person.last_name,
                "email": person.email, "password": person.password, "phone": "501-555-0100", **extra}
        reply = self.call("POST", f"/organizations/{self.org_key(org)}/admins", body)
        if reply.status == 201:
            self.people.setdefault(name, person)
            person.temporary_password = True
            person.terms_pending = extra.get("accepted_terms") is not True
        return self.expect(reply, 201) if not extra else reply

    def make_member(self, name: str, org: str, permissions: list[str] | None = None) -> Person:
        known = self.orgs[org]
        assert known.admins, f"{org} needs an admin before {name} can join"
        admin = known.admins[0]
        if self.portal == "masshealth":
            self.expect(self.create_subordinate(admin, name, org, permissions or []), 201)
            return self.person(name)
        self.expect(self.register(name, org), 201)
        if self.portal == "ahw":
            self.expect(self.act(admin, "enable", name), 200)
            self.expect(self.act(admin, "send-registration-email", name), 200)
            self.expect(self.confirm_registration(name), 200)
        else:
            self.expect(self.act(admin, "approve", name), 200)
        if permissions:
            self.expect(self.set_permissions(admin, name, permissions), 200)
        return self.person(name)

    def create_subordinate(self, actor: str, name: str, org: str, permissions: list[str]) -> Reply:
        person = self.people.get(name) or self.new_person(name, org, last="Doe")
        body = {"username": person.username, "first_name": person.first_name, "last_name": person.last_name,
                "email": person.email, "password": person.password, "permissions": permissions}
        reply = self.call("POST", f"/organizations/{self.org_key(org)}/accounts", body, token=self.token(actor))
        if reply.status == 201:
            self.people[name] = person
            person.temporary_password = person.terms_pending = True
        return reply

    def confirm_registration(self, name: str, code: str | None = None) -> Reply:
        if code is None:
            mails = [m for m in self.emails_to(name) if "registration_code" in m["payload"]]
            assert mails, f"no registration email to {name}"
            code = mails[-1]["payload"]["registration_code"]
        return self.call("POST", "/registrations/confirm", {"username": self.username(name), "code": code})

    # --- sessions and actions -----------------------------------------------------------------
    def own_password(self, name: str, new_password: str = OWN_PASSWORD) -> Reply:
        """The person replaces the password someone else chose for them (PUT .../password)."""
        person = self.person(name)
        reply = self.call("PUT", f"/accounts/{person.username}/password",
                          {"current_password": person.password, "new_password": new_password})
        if reply.status == 200:
            person.password, person.temporary_password = new_password, False
        return reply

    def sign_in(self, name: str, password: str | None = None, first_time: bool = True) -> Reply:
        """Sign in as the person would; at a first sign-in (`first_time`) it sets its own password if someone
        else chose it and accepts the terms of use if it has not yet (R7)."""
        person = self.person(name)
        if first_time and password is None and person.temporary_password:
            self.expect(self.own_password(name), 200)
        body = {"username": person.username, "password": person.password if password is None else password}
        if first_time and person.terms_pending:
            body["accepted_terms"] = True
        reply = self.call("POST", "/sessions", body)
        if reply.status == 201:
            person.token, person.token_at = reply.body["token"], self.now
            if first_time:
                person.terms_pending = False
        return reply

    def token(self, name: str) -> str:
        if name in ("support staff", "support"):
            return self.support_token()
        person = self.person(name)
        if person.token is None or self.now - person.token_at > timedelta(minutes=5):
            # Sessions expire: after the scenario's clock has moved, sign in again.
            reply = self.sign_in(name)
            assert reply.status == 201, f"{name} cannot sign in: {reply}"
        return person.token

    def support_token(self, fresh: bool = False) -> str:
        """Portal support staff (R1, R4): the only ones who act across organizations."""
        if self._support is None or fresh:
            name = f"support{len(self.people)}"
            person = self.new_person(name, "")
            reply = self.call("POST", "/support-staff", {"username": person.username, "first_name": "Pat",
                                                         "last_name": "Support", "email": person.email,
                                                         "password": person.password})
            self.expect(reply, 201)
            person.temporary_password = True  # the enroll client chose it: replaced at first sign-in
            self._support = person
            self.people[name] = person
            self.people["support staff"] = person
            self.expect(self.own_password(name), 200)
        support = self._support
        if support.token is None or self.now - support.token_at > timedelta(minutes=5):
            reply = self.call("POST", "/sessions", {"username": support.username, "password": support.password})
            if reply.status != 201:  # e.g. its password expired while the scenario's clock moved on
                return self.support_token(fresh=True)
            support.token, support.token_at = reply.body["token"], self.now
        return support.token

    def act(self, actor: str, action: str, target: str, org: str | None = None, comment: str | None = None,
            label: str | None = None) -> Reply:
        """The click of the button `label` (the documents' word for `action`), made over the contract."""
        body = {}
        if org:
            body["organization"] = self.org_key(org)
        if comment is not None:
            body["comment"] = comment
        return self.call("POST", f"/accounts/{self.username(target)}/{action}", body or None, token=self.token(actor))

    def set_permissions(self, actor: str, target: str, permissions: list[str], org: str | None = None) -> Reply:
        body: dict = {"permissions": permissions}
        if org:
            body["organization"] = self.org_key(org)
        return self.call("PUT", f"/accounts/{self.username(target)}/permissions", body, token=self.token(actor))

    def account(self, name: str) -> dict:
        """The account as support staff see it (fresh support staff if time has passed them by)."""
        path = f"/accounts/{self.username(name)}"
        home = self.people[name].org if name in self.people else ""
        if home in self.orgs:
            path += f"?organization={_quote(self.orgs[home].key)}"
        reply = self.call("GET", path, token=self.support_token())
        if reply.status in (401, 403):
            reply = self.call("GET", path, token=self.support_token(fresh=True))
        return self.expect(reply, 200).body

    def authorize(self, actor: str, action: str, resource: dict, context: dict | None = None,
                  first_sign_in: bool = True, remedies: bool = False) -> dict:
        """The decision for `actor`. A person uses the portal's functions after signing in, so one whose
        password someone else chose signs in first (and sets its own) unless `first_sign_in` is False."""
        person = self.people.get(actor)
        if first_sign_in and person is not None and person.temporary_password:
            self.expect(self.sign_in(actor), 201)
        body = {"portal": self.portal, "actor": self.username(actor), "action": action, "resource": resource}
        if context:
            body["context"] = context
        if remedies:
            body["remedies"] = True
        self.last = self.api.call("POST", "/v1/authorize", body)
        return self.expect(self.last, 200).body

    def authzen(self, endpoint: str, body: dict) -> dict:
        """Ask this portal's AuthZEN PDP (`evaluation`, `search/subject`, ...)."""
        self.last = self.api.call("POST", f"/authzen/{self.portal}/access/v1/{endpoint}", body)
        return self.expect(self.last, 200).body

    def sweep(self) -> Reply:
        reply = self.expect(self.call("POST", "/maintenance/sweep"), 200)
        self.sweeps.append(reply)
        return reply


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
