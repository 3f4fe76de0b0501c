"""Steps shared by every feature: the portals' own words, driven through the HTTP contract only.

Import into a test module with `from tests.steps.portal_steps import *` (pytest-bdd finds
step definitions as fixtures of the module that binds the scenarios).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then, when

from tests.steps.client import Api, InProcess, Live, live_target
from tests.steps.console_story import console_api, console_story  # noqa: F401 - @console
from tests.steps.story import (
    BUTTONS,
    PASSWORD,
    PORTALS,
    STATUS_WORDS,
    Story,
    function_id,
    parse_instant,
    split_list,
)

Q = r'"(?P<{}>[^"]*)"'  # a quoted argument


def q(name: str) -> str:
    return Q.format(name)


def re_(pattern: str):
    return parsers.re(pattern)


# --- Fixtures: where the steps go -----------------------------------------------------------------

@pytest.fixture(scope="session")
def bdd_api(tmp_path_factory, config, policy):
    """The contract, in-process on an app with a settable clock, or a live server (PORTAL_AUTHZ_URL)."""
    target = live_target()
    if target is not None:
        url, key = target
        transport = Live(url)
        yield Api(transport, key)
        transport.close()
        return
    from service.app import create_app
    from tests.conftest import make_key, prepared_database

    settable = config.model_copy(update={"testing": config.testing.model_copy(update={"clock": "settable"})})
    database = prepared_database(f"sqlite:///{tmp_path_factory.mktemp('bdd') / 'bdd.db'}", settable)
    app = create_app(settable, database=database, policy=policy)
    # The one thing not done over HTTP: the client key, as `portal-authz clients add` would make it.
    key = make_key(database, ("authorize", "manage", "enroll"), datetime.now(timezone.utc))
    yield Api(InProcess(app), key)
    database.dispose()


@pytest.fixture
def story(bdd_api, monkeypatch, request) -> Story:
    if request.node.get_closest_marker("console"):  # the same steps, the clicks made in a real browser
        return request.getfixturevalue("console_story")
    if live_target() is None:
        # In-process only: argon2id at test strength (the service's own parameters cost ~0.3 s per hash
        # here, and a scenario hashes a few dozen secrets). Hashes stay argon2id and verify the same way.
        from argon2 import PasswordHasher

        from service.domain import passwords

        monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    return Story(bdd_api)


@pytest.fixture(scope="session", autouse=True)
def cucumber_report_directory(request):
    """`--cucumberjson=reports/cucumber.json` works even when reports/ does not exist yet."""
    path = getattr(request.config.option, "cucumber_json_path", None)
    if path:
        Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


# --- The portal and its organizations --------------------------------------------------------------

@given(parsers.parse('the portal is the "{name}"'))
def the_portal(story, name):
    assert name in PORTALS, f"unknown portal {name!r}; one of {sorted(PORTALS)}"
    story.portal = PORTALS[name]


@given(re_(rf'the (?:provider|practice with TIN) {q("org")} is enrolled(?P<how> with its correspondence address on file| with no address on file)?'))
@when(re_(rf'the (?:provider|practice with TIN) {q("org")} is enrolled(?P<how> with its correspondence address on file| with no address on file)?'))
def enrolled(story, org, how):
    story.enroll(org, address=bool(how) and "correspondence" in how)


@given(re_(rf'the {q("bt")} organization {q("org")} of the {q("region")} region is enrolled with its correspondence address on file'))
def enrolled_qm(story, bt, org, region):
    story.enroll(org, address=True, business_type=bt, region=region)


# --- People ------------------------------------------------------------------------------------------

@given(re_(rf'{q("user")} is (?:the|an) (?:active )?(?:master account holder|Account Manager|Primary User) of {q("org")}'))
def an_admin(story, user, org):
    story.make_admin(user, org)
    assert story.account(user)["status"] == "active"


@given(re_(rf'{q("user")} is an active (?:individual account|User) of {q("org")}'))
def a_member(story, user, org):
    story.make_member(user, org)
    assert story.account(user)["status"] == "active"


@given(re_(rf'{q("user")} is a subordinate of {q("org")} assigned {q("services")}'))
def a_subordinate(story, user, org, services):
    story.make_member(user, org, [function_id(s) for s in split_list(services)])
    assert story.account(user)["status"] == "active"


# --- Registration and activation (R6-R13) -------------------------------------------------------------

REGISTERS = rf'{q("user")} (?:has registered|registers) with {q("org")}'


@given(re_(REGISTERS + r'(?: choosing the correspondence address on file)?'))
def has_registered(story, user, org):
    story.expect(story.register(user, org), 201)


@when(re_(REGISTERS + r'(?P<choosing> choosing the correspondence address on file)?'))
def registers(story, user, org, choosing):
    story.register(user, org)


@when(re_(REGISTERS + ' without accepting the terms of use'))
def registers_without_terms(story, user, org):
    story.register(user, org, accepted_terms=False)


@when(re_(REGISTERS + rf' as business type {q("bt")} in region {q("region")}'))
def registers_with_business_type(story, user, org, bt, region):
    story.register(user, org, business_type=bt, region=region)


@when(re_(REGISTERS + rf' choosing the password {q("password")}'))
def registers_with_password(story, user, org, password):
    story.register(user, org, password=password)


@given(re_(REGISTERS + rf' as "(?P<first>[^" ]+) (?P<last>[^"]+)" with the email {q("email")}'))
@when(re_(REGISTERS + rf' as "(?P<first>[^" ]+) (?P<last>[^"]+)" with the email {q("email")}'))
def registers_as(story, user, org, first, last, email):
    person = story.new_person(user, org, email=story.email(email), first=first, last=last)
    story.people[user] = person
    reply = story.register(user, org)
    if reply.status != 201:
        del story.people[user]


@when(re_(rf'a co-worker registers with {q("org")} as {q("name")} in capitals'))
def coworker_same_name(story, org, name):
    taken = story.username(name.lower())
    person = story.new_person("coworker", org)
    person.username = taken.upper()
    story.people["coworker"] = person
    story.register("coworker", org)


@then(re_(rf'{q("user")} is registered as (?:the master account holder|an individual account|a User), (?P<state>awaiting activation|awaiting approval)'))
def registered_as(story, user, state):
    reply = story.expect(story.last, 201)
    role = "admin" if state == "awaiting activation" else "member"
    assert (reply.body["role"], reply.body["status"]) == (role, STATUS_WORDS[state]), reply
    assert reply.body["username"].lower() == story.username(user).lower()


@then(re_(rf'the registration answers {q("answer")}'))
def registration_answers(story, answer):
    reply = story.last
    if answer in STATUS_WORDS.values():
        assert reply.status == 201 and reply.body["status"] == answer, reply
    else:
        assert reply.status in (409, 422) and (reply.code == answer or answer in reply.error_codes), reply


@then(re_(rf'an activation letter with a temporary password and authentication code is mailed to the correspondence address of {q("org")} for {q("user")}'))
@then(re_(rf'a new activation letter for {q("user")} is mailed to the correspondence address of {q("org")}'))
def letter_mailed(story, org, user):
    letter = story.letter_for(user)
    assert letter["to"] == story.orgs[org].address
    assert letter["payload"]["activation_code"] and letter["payload"]["temporary_password"]
    story.letters = getattr(story, "letters", []) + [letter]
    if len(story.letters) > 1:
        assert story.letters[-1]["payload"]["activation_code"] != story.letters[-2]["payload"]["activation_code"]


@then("no email carries the activation code")
def no_email_carries_code(story):
    looked = 0
    for name, person in story.people.items():
        for note in story.outbox(person.email):
            looked += 1
            assert note["channel"] == "email", note
            assert "activation_code" not in note["payload"] and "temporary_password" not in note["payload"], note
    for org in story.orgs.values():
        if org.address:
            assert all(n["channel"] == "letter" for n in story.outbox(org.address))
    assert looked or story.people, "nothing to look at"


@when(re_(rf'{q("user")} enters the authentication code exactly as shown in the activation letter and changes the temporary password'))
def enters_code(story, user):
    story.activate(user)


@when(re_(rf'{q("user")} enters the authentication code with its letters in the wrong case'))
def enters_code_wrong_case(story, user):
    code = story.letter_for(user)["payload"]["activation_code"]
    assert code.swapcase() != code
    story.activate(user, code=code.swapcase())


@then(re_(rf'the activation answers {q("answer")}'))
def activation_answers(story, answer):
    if answer == "activated":
        assert story.last.status == 200 and story.last.body["status"] == "active", story.last
    else:
        assert story.last.status == 422 and story.last.code == answer, story.last


@when(re_(rf'support staff issue a new authentication code for {q("user")} of {q("org")}'))
def reissue(story, user, org):
    reply = story.call("POST", f"/organizations/{story.org_key(org)}/activation-codes",
                       {"username": story.username(user)}, token=story.support_token(fresh=True))
    story.expect(reply, 201)


@when(re_(rf'support staff designate {q("user")} as a new master account holder of {q("org")}'))
def support_designates(story, user, org):
    story.designate_admin(user, org)
    story.orgs[org].admins.append(user)


@when(re_(rf'Arkansas Health & Wellness sets up {q("user")} as the Account Manager of {q("org")}'))
def payer_sets_up(story, user, org):
    story.designate_admin(user, org)
    story.orgs[org].admins.append(user)


@when(re_(rf'MassHealth sets up {q("user")} as the Primary User of {q("org")} without agreeing to the terms'))
def primary_without_terms(story, user, org):
    story.designate_admin(user, org, accepted_terms=False)


@when(re_(rf'{q("user")} completes the registration with the code from the email'))
def completes_registration(story, user):
    story.expect(story.confirm_registration(user), 200)


@when(re_(rf'{q("user")} completes the registration with the code {q("code")}'))
def completes_registration_with(story, user, code):
    story.confirm_registration(user, code)


@then(re_(rf'{q("admin")} is emailed that the account of {q("user")} (?:needs to be activated|awaits approval)'))
def admin_emailed(story, admin, user):
    mails = [m for m in story.emails_to(admin) if m["payload"].get("username") == story.username(user)]
    assert mails, f"no email to {admin} about {user}"
    assert "activation_code" not in mails[-1]["payload"]


@then("the confirmation lists the master account holders with name, email and phone")
def confirmation_lists_masters(story):
    reply = story.expect(story.last, 201)
    masters = [story.person(name) for name in story.orgs[story.person(_only_member(story)).org].admins]
    expected = [{"name": f"{p.first_name} {p.last_name}", "email": p.email, "phone": "602-555-0101"} for p in masters]
    assert reply.body["admins"] == expected, reply


def _only_member(story) -> str:
    reply = story.last
    return next(n for n, p in story.people.items() if p.username.lower() == reply.body["username"].lower())


# --- Time ---------------------------------------------------------------------------------------------

@given(parsers.parse("{n:d} days have passed"))
@when(parsers.parse("{n:d} days pass"))
def days_pass(story, n):
    story.advance(timedelta(days=n))


@when(parsers.parse("{n:d} minutes pass"))
def minutes_pass(story, n):
    story.advance(timedelta(minutes=n))


# --- Sign-in (R16, R18, R19) ---------------------------------------------------------------------------

@when(re_(rf'{q("user")} signs in(?: with the right password)?'))
def signs_in(story, user):
    story.sign_in(user)


@given(re_(rf'{q("user")} signs in on day (?P<day>\d+)'))
def signs_in_on_day(story, user, day):
    story.to_day(int(day))
    story.expect(story.sign_in(user), 201)


@when(re_(rf'{q("user")} signs in with the password in the wrong case'))
def signs_in_wrong_case(story, user):
    story.sign_in(user, story.person(user).password.swapcase())


WRONG = rf'{q("user")} (?:has signed|signs) in with a wrong password (?P<n>\d+) (?P<more>more )?times?, (?P<gap>\d+) minutes? apart'


@given(re_(WRONG))
@when(re_(WRONG))
def signs_in_wrongly(story, user, n, more, gap):
    for attempt in range(int(n)):
        if attempt or more:
            story.advance(timedelta(minutes=int(gap)))
        reply = story.sign_in(user, "Wrong#Guess1234")
        assert reply.status == 401, reply


@then("the sign-in succeeds")
def sign_in_succeeds(story):
    assert story.last.status == 201 and story.last.body["token"], story.last


@then(re_(rf'the sign-in is refused(?: as {q("code")})?'))
def sign_in_refused(story, code):
    assert story.last.status == 401, story.last
    if code:
        assert story.last.code == code, story.last


@then(re_(rf'{q("user")} can sign in(?: with the password {q("password")})?'))
def can_sign_in(story, user, password):
    reply = story.sign_in(user, password)
    assert reply.status == 201, reply
    if password:
        story.person(user).password = password


@then(re_(rf'{q("user")} cannot sign in'))
def cannot_sign_in(story, user):
    if user not in story.people:  # never registered: the portal does not know the name at all
        reply = story.api.portal(story.portal, "POST", "/sessions",
                                 {"username": story.username(user), "password": PASSWORD})
    else:
        reply = story.sign_in(user)
    assert reply.status == 401, reply


# --- Admin actions (R1-R5, R15, R25) --------------------------------------------------------------------

CLICK = rf'{q("actor")} (?:clicks|has clicked) {q("button")} for {q("target")}(?: at {q("org")})?'


def _click(story, actor, button, target, org=None, comment=None):
    assert button in BUTTONS, f"unknown button {button!r}"
    return story.act(actor, BUTTONS[button], target, org, comment, label=button)


@given(re_(CLICK))
def has_clicked(story, actor, button, target, org):
    story.expect(_click(story, actor, button, target, org), 200)


@when(re_(CLICK))
def clicks(story, actor, button, target, org):
    _click(story, actor, button, target, org)


@when(re_(CLICK + r' with the comment "(?P<comment>.*)"'))
def clicks_with_comment(story, actor, button, target, org, comment):
    _click(story, actor, button, target, org, comment)


@when(re_(CLICK + r' with a comment of (?P<length>\d+) characters'))
def clicks_with_long_comment(story, actor, button, target, org, length):
    story.comment = ("Update User Roles; " * 20)[: int(length)]
    assert len(story.comment) == int(length)
    _click(story, actor, button, target, org, story.comment)


@then("the change is accepted")
def change_accepted(story):
    assert story.last.status in (200, 201), story.last


@then(re_(rf'the change is refused because of {q("codes")}'))
def change_refused(story, codes):
    reply = story.last
    wanted = split_list(codes)
    if wanted == ["last_admin"]:
        # R3: a policy denial (403, reason last_admin) or an invariant conflict (409, code last_admin).
        assert reply.status in (403, 409) and ("last_admin" in reply.reasons or reply.code == "last_admin"), reply
        return
    assert reply.status == 403 and reply.code == "forbidden", reply
    # Over the API a problem; at the console (@console) the button not offered, its reasons /v1/authorize's.
    assert reply.content_type in ("application/problem+json", "text/html"), reply
    for code in wanted:
        assert code in reply.reasons, f"{code} not among the reasons: {reply}"


@then(re_(rf'the request is refused with {q("code")}'))
def request_refused(story, code):
    reply = story.last
    assert 400 <= reply.status < 500 and reply.status != 404, reply
    assert reply.code == code or code in reply.error_codes, reply


@then("the request is accepted for processing")
def accepted_for_processing(story):
    assert story.last.status == 202, story.last


@then(re_(rf'the account {q("user")} has the status {q("status")}'))
def has_status(story, user, status):
    account = story.account(user)
    assert account["status"] == STATUS_WORDS.get(status, status), (f"day {story.day_of(story.now.isoformat())}", account)


@then(re_(rf'{q("user")} is (?P<negation>not )?a master account holder of {q("org")}'))
def is_master(story, user, negation, org):
    memberships = {m["organization"]: m for m in story.account(user)["memberships"]}
    role = memberships[story.org_key(org)]["role"]
    assert role == ("member" if negation else "admin"), memberships


@then(re_(rf'{q("org")} lists the (?:master account holders|Account Managers) {q("users")}'))
def lists_admins(story, org, users):
    admins = [a["username"] for a in story.organization(org)["admins"]]
    assert sorted(admins) == sorted(story.username(u) for u in split_list(users)), admins


@then(re_(rf'{q("org")} has no (?:master account holder|Account Manager)'))
def has_no_admin(story, org):
    assert story.organization(org)["admins"] == []


@then(re_(rf'{q("org")} is warned that it has a single (?:master account holder|Primary User|Account Manager)'))
def warned_single_admin(story, org):
    assert "single_admin" in story.organization(org)["warnings"]


@then(re_(rf'{q("org")} has no warning'))
def no_warning(story, org):
    assert story.organization(org)["warnings"] == []


@then(re_(rf'{q("admin")} can approve and grant access for new users of {q("org")}'))
def admin_can_work(story, admin, org):
    story.expect(story.register("newbie", org), 201)
    story.expect(story.act(admin, "approve", "newbie"), 200)
    story.expect(story.set_permissions(admin, "newbie", ["claims"]), 200)
    assert story.authorize("newbie", "claims", {"type": "organization", "id": story.org_key(org)})["allowed"]


# --- Permissions (R14-R16) --------------------------------------------------------------------------------

ACCESS = rf'{q("actor")} (?:sets|has set) the access of {q("user")} to {q("labels")}'
SERVICES = (rf'{q("actor")} moves the services of {q("user")}(?: at {q("org")})? so that the Assigned Services '
            rf'are {q("labels")}')


@given(re_(ACCESS))
def has_set_access(story, actor, user, labels):
    story.expect(story.set_permissions(actor, user, [function_id(x) for x in split_list(labels)]), 200)


@when(re_(ACCESS))
def sets_access(story, actor, user, labels):
    wanted = [function_id(x) for x in split_list(labels)]
    reply = story.set_permissions(actor, user, wanted)
    if reply.status == 200:
        held = next(m["permissions"] for m in reply.body["memberships"] if m["status"] != "removed")
        assert sorted(held) == sorted(wanted), reply


@when(re_(SERVICES))
def moves_services(story, actor, user, org, labels):
    wanted = [function_id(x) for x in split_list(labels)]
    reply = story.set_permissions(actor, user, wanted, org)
    if reply.status == 200:
        key = story.org_key(org) if org else None
        held = [m["permissions"] for m in reply.body["memberships"] if key in (None, m["organization"])]
        assert sorted(held[0]) == sorted(wanted), reply


@then(re_(rf'{q("user")} asking to use {q("label")} for {q("org")} gets {q("answer")}'))
def asking_to_use(story, user, label, org, answer):
    decision = story.authorize(user, function_id(label), {"type": "organization", "id": story.org_key(org)})
    if answer == "allowed":
        assert decision["allowed"] is True and decision["reasons"] == [], decision
    else:
        assert decision["allowed"] is False, decision
        assert answer in [r["code"] for r in decision["reasons"]], decision


@then(re_(rf'{q("user")} asking to use {q("label")} for {q("org")} through AuthZEN gets {q("answer")}'))
def asking_through_authzen(story, user, label, org, answer):
    """The same question as an OpenID AuthZEN Access Evaluation, the same decision and reasons."""
    decision = story.authzen("evaluation", {
        "subject": {"type": "account", "id": story.username(user)}, "action": {"name": function_id(label)},
        "resource": {"type": "organization", "id": story.org_key(org)}})
    v1 = story.authorize(user, function_id(label), {"type": "organization", "id": story.org_key(org)})
    assert decision == {"decision": v1["allowed"],
                        "context": {"reasons": v1["reasons"], "policy_version": v1["policy_version"]}}, decision
    if answer == "allowed":
        assert decision["decision"] is True, decision
    else:
        assert decision["decision"] is False, decision
        assert answer in [r["code"] for r in decision["context"]["reasons"]], decision


@then(re_(rf'AuthZEN finds {q("users")} among those who may use {q("label")} for {q("org")}'))
def authzen_subject_search(story, users, label, org):
    found = story.authzen("search/subject", {
        "subject": {"type": "account"}, "action": {"name": function_id(label)},
        "resource": {"type": "organization", "id": story.org_key(org)}})
    names = {r["id"] for r in found["results"]}
    assert {story.username(u) for u in split_list(users)} <= names, found


# --- Who to contact: remedies and access requests ------------------------------------------------------------

@then(re_(rf'{q("user")} asking to use {q("label")} for {q("org")} is told to contact {q("admins")}'))
def told_whom_to_contact(story, user, label, org, admins):
    """The denial names who in the organization may grant the function (delegates, then admins) and support."""
    decision = story.authorize(user, function_id(label), {"type": "organization", "id": story.org_key(org)},
                               remedies=True)
    assert decision["allowed"] is False, decision
    assert decision["remedies"] == [{
        "code": "permission_not_granted",
        "change": {"action": "grant", "account": story.username(user), "organization": story.org_key(org),
                   "permission": function_id(label)},
        "by": [story.username(a) for a in split_list(admins)], "support": True}], decision


@when(re_(rf'{q("user")} asks for access to {q("label")} for {q("org")}'))
def asks_for_access(story, user, label, org):
    reply = story.expect(story.call("POST", f"/organizations/{story.org_key(org)}/access-requests",
                                    {"permission": function_id(label)}, token=story.token(user)), 201)
    assert reply.body["status"] == "open", reply
    story.person(user).access_request = reply.body["id"]


@then(re_(rf'{q("admin")} is emailed that {q("user")} asks for access to {q("label")}'))
def emailed_access_request(story, admin, user, label):
    asked = [n["payload"] for n in story.emails_to(admin) if n["template"] == "access_requested"]
    assert any(p["requester"] == story.username(user) and p["permission"] == function_id(label) for p in asked), asked


@when(re_(rf'{q("admin")} approves the access request of {q("user")}'))
def approves_access_request(story, admin, user):
    person = story.person(user)
    story.call("POST", f"/organizations/{story.org_key(person.org)}/access-requests/{person.access_request}/approve",
               token=story.token(admin))


@then(re_(rf'the approval is held back as {q("code")} and the request left open'))
def approval_held_back(story, code):
    """An approval of a request its requester could no longer make grants nothing (409) and keeps the request."""
    reply = story.last
    assert reply.status == 409 and reply.code == code, reply
    assert reply.content_type == "application/problem+json", reply


# --- Profile (R21) ------------------------------------------------------------------------------------------

@when(re_(rf'{q("actor")} changes the (?P<field>phone|email) of {q("user")} to {q("value")}(?: at {q("org")})?'))
def changes_profile(story, actor, field, user, value, org):
    if field == "email":
        value = story.email(value)
    body = {field: value, **({"organization": story.org_key(org)} if org else {})}
    story.call("PATCH", f"/accounts/{story.username(user)}", body, token=story.token(actor))
    if story.last.status == 200:
        assert story.last.body[field] == value, story.last


@then(re_(rf'no email with a security code is sent to {q("address")}'))
def no_recovery_email_to(story, address):
    """A recovery code never reaches an inbox set by someone without authority over the account."""
    mails = [m for m in story.outbox(story.email(address)) if "security_code" in m["payload"]]
    assert not mails, mails


@then(re_(rf'the email of {q("user")} is still its own'))
def email_unchanged(story, user):
    reply = story.expect(story.api.portal(story.portal, "GET", f"/accounts/{story.username(user)}"), 200)
    assert reply.body["email"] == story.person(user).email, reply.body


@when(re_(rf'{q("actor")} views the account of {q("user")}'))
def views_account(story, actor, user):
    story.call("GET", f"/accounts/{story.username(user)}", token=story.token(actor))


# --- masshealth roster (R13) ---------------------------------------------------------------------------------

@when(re_(rf'{q("actor")} creates the subordinate {q("user")} for {q("org")} with the services {q("labels")}'))
def creates_subordinate(story, actor, user, org, labels):
    reply = story.create_subordinate(actor, user, org, [function_id(x) for x in split_list(labels)])
    if reply.status == 201:
        assert reply.body["status"] == "active", reply


LINK = rf'{q("actor")} (?:links|has linked) the account of {q("user")} to {q("org")}'


@given(re_(LINK))
@when(re_(LINK))
def links(story, actor, user, org):
    reply = story.call("POST", f"/organizations/{story.org_key(org)}/links", {"username": story.username(user)},
                       token=story.token(actor))
    story.expect(reply, 201)
    assert story.org_key(org) in {m["organization"] for m in reply.body["memberships"]}


# --- Roster listing (R24) -------------------------------------------------------------------------------------

def _list(story, actor, org, **query):
    from urllib.parse import urlencode

    path = f"/organizations/{story.org_key(org)}/accounts"
    if query:
        path += "?" + urlencode(query)
    story.expect(story.call("GET", path, token=story.token(actor)), 200)


@when(re_(rf'{q("actor")} views the list of all users in {q("org")}'))
def views_list(story, actor, org):
    _list(story, actor, org)


@when(re_(rf'{q("actor")} searches the users of {q("org")} for the name {q("name")}'))
def searches_name(story, actor, org, name):
    _list(story, actor, org, q=name)


@when(re_(rf'{q("actor")} searches the users of {q("org")} for the email of {q("user")}'))
def searches_email(story, actor, org, user):
    _list(story, actor, org, q=story.person(user).email)


@when(re_(rf'{q("actor")} selects the {q("box")} box for {q("org")}'))
def selects_box(story, actor, org, box):
    _list(story, actor, org, status=STATUS_WORDS[box])


@then(re_(rf'the list shows {q("users")}'))
def list_shows(story, users):
    shown = sorted(a["username"] for a in story.last.body["accounts"])
    assert shown == sorted(story.username(u) for u in split_list(users)), shown


# --- Comments (R25) ---------------------------------------------------------------------------------------------

@then(re_(rf'the comments history of {q("user")} shows {q("actor")} did {q("action")} with exactly the text "(?P<text>.*)"'))
def comments_history(story, user, actor, action, text):
    reply = story.call("GET", f"/accounts/{story.username(user)}/comments", token=story.token(actor))
    story.expect(reply, 200)
    assert reply.content_type == "application/json", reply  # data, never a page that renders markup
    latest = reply.body[-1]
    assert (latest["action"], latest["actor"], latest["text"]) == (action, story.username(actor), text), latest
    assert story.day_of(latest["date"]) == story.day_of(story.now.isoformat())


@then(re_(rf'the comment answers {q("answer")}'))
def comment_answers(story, answer):
    reply = story.last
    if answer == "accepted":
        assert reply.status == 200, reply
        target = reply.body["username"]
        history = story.call("GET", f"/accounts/{target}/comments", token=story.support_token()).body
        assert history[-1]["text"] == story.comment
    else:
        assert reply.status == 422 and answer in reply.error_codes, reply
        assert [e["field"] for e in reply.body["errors"]] == ["comment"], reply


# --- Account view (R26) -------------------------------------------------------------------------------------------

@then(re_(rf'the account of {q("user")} shows the status {q("status")} and the last sign-in time as now'))
def shows_last_login_now(story, user, status):
    story.expect(story.last, 201)
    account = story.account(user)
    assert account["status"] == status
    assert parse_instant(account["last_login_at"]) == story.now, account


@then(re_(rf'{q("actor")} sees the status {q("status")} and the last sign-in time of day (?P<day>\d+) for {q("user")}'))
def admin_sees_status(story, actor, status, day, user):
    reply = story.expect(story.call("GET", f"/accounts/{story.username(user)}", token=story.token(actor)), 200)
    assert reply.body["status"] == STATUS_WORDS.get(status, status), reply
    assert parse_instant(reply.body["last_login_at"]) == story.t0 + timedelta(days=int(day)), reply


# --- Audit (R27) ----------------------------------------------------------------------------------------------------

@then(re_(rf'the audit trail shows {q("actor")} did {q("action")} to {q("target")} in {q("org")} with the outcome {q("outcome")}'))
def audit_shows(story, actor, action, target, org, outcome):
    reply = story.expect(story.call("GET", f"/audit?account={story.username(target)}"), 200)
    records = [(r["actor"], r["action"], r["target"], r["organization"], r["outcome"]) for r in reply.body["records"]]
    wanted = (story.username(actor), action, story.username(target), story.org_key(org), outcome)
    assert wanted in records, records
    record = next(r for r in reply.body["records"] if (r["actor"], r["action"], r["outcome"]) == wanted[:2] + (outcome,))
    assert parse_instant(record["occurred_at"]) == story.now
    assert (outcome == "denied") == bool(record["reasons"]), record


# --- Passwords and recovery (R17, R18, R20) ------------------------------------------------------------------------

@when(re_(rf'{q("user")} changes the password to (?:the current one|{q("password")})'))
def changes_password(story, user, password):
    person = story.person(user)
    new = password or person.password
    signed = story.sign_in(user)
    token = signed.body["token"] if signed.status == 201 else None
    reply = story.call("PUT", f"/accounts/{person.username}/password",
                       {"current_password": person.password, "new_password": new}, token=token)
    if reply.status == 200:
        person.password, person.token = new, None


@then(re_(rf'the password is refused for {q("codes")}'))
def password_refused(story, codes):
    reply = story.last
    assert reply.status == 422 and reply.code == "password_policy", reply
    assert sorted(set(reply.error_codes)) == sorted(split_list(codes)), reply


@when(re_(rf'{q("user")} answers the security questions with {q("first")} and {q("second")}'))
def answers_questions(story, user, first, second):
    story.recovering = user
    story.call("POST", "/password-recoveries", {"username": story.username(user), "answers": [first, second]})


@then(re_(rf'an email with a security code and a URL is sent to {q("user")}'))
def recovery_email(story, user):
    mails = [m for m in story.emails_to(user) if "security_code" in m["payload"]]
    assert mails, f"no recovery email to {user}"
    payload = mails[-1]["payload"]
    assert payload["security_code"] and payload.get("link"), payload
    assert "activation_code" not in payload
    assert parse_instant(mails[-1]["created_at"]) == story.now


@when(re_(rf'{q("user")} enters the security code from the email with the new password {q("password")}'))
def confirms_recovery(story, user, password):
    mails = [m for m in story.emails_to(user) if "security_code" in m["payload"]]
    assert mails, f"no recovery email to {user}"
    reply = story.call("POST", "/password-recoveries/confirm", {
        "username": story.username(user), "code": mails[-1]["payload"]["security_code"], "new_password": password})
    if reply.status == 200:
        story.person(user).password, story.person(user).token = password, None


@when(re_(rf'{q("actor")} enters the security code sent to {q("address")} for {q("user")} with the new password {q("password")}'))
def confirms_recovery_from(story, actor, address, user, password):
    """The code of a recovery someone sent to an inbox they set: whoever holds that inbox holds the code."""
    mails = [m for m in story.outbox(story.email(address)) if "security_code" in m["payload"]]
    assert mails, f"no security code was sent to {address}"
    story.call("POST", "/password-recoveries/confirm", {
        "username": story.username(user), "code": mails[-1]["payload"]["security_code"], "new_password": password})


@then(re_(rf'the recovery answers {q("answer")}'))
def recovery_answers(story, answer):
    reply = story.last
    if answer == "completed":
        assert reply.status == 200, reply
    elif answer == "accepted":
        assert reply.status == 202, reply
        assert _recovery_mails(story, story.recovering), "the answers matched but no security code was emailed"
    elif answer == "recovery_invalid" and reply.status == 202 and reply.path.endswith("/password-recoveries"):
        # The service may answer alike whether or not the answers match (no probing of answers);
        # then the proof of refusal is that no security code is emailed.
        assert not _recovery_mails(story, story.recovering), "a security code was emailed for wrong answers"
    else:
        assert reply.status in (401, 403, 422) and reply.code == answer, reply


def _recovery_mails(story, user):
    return [m for m in story.emails_to(user) if "security_code" in m["payload"]]


# --- Inactivity sweep (R22, R23) --------------------------------------------------------------------------------------

def _sweep_on(story, day: int) -> None:
    story.to_day(day)
    story.sweep()
    statuses = getattr(story, "statuses", {})
    for name, person in list(story.people.items()):
        if name.startswith("support") or name == "support staff":
            continue
        reply = story.call("GET", f"/accounts/{person.username}", token=story.support_token(fresh=True))
        statuses.setdefault(day, {})[name] = "deleted" if reply.status == 404 else reply.body["status"]
    story.statuses = statuses


@when(parsers.parse("the nightly sweep runs every day from day {first:d} to day {last:d}"))
def sweeps_daily(story, first, last):
    story.first_sweep_day = first
    for day in range(first, last + 1):
        _sweep_on(story, day)


@when(parsers.parse("the nightly sweep runs on day {day:d}"))
def sweeps_on(story, day):
    _sweep_on(story, day)


@when(parsers.parse("the nightly sweep runs again on day {day:d}"))
def sweeps_again(story, day):
    story.outbox_before = {n: len(story.outbox(p.email)) for n, p in story.people.items()}
    story.to_day(day)
    story.sweep()


@then("the sweep changes nothing and sends nothing twice")
def sweep_idempotent(story):
    assert story.sweeps[-1].body == {"warned": 0, "locked": 0, "disabled": 0, "deleted": 0}, story.sweeps[-1]
    after = {n: len(story.outbox(p.email)) for n, p in story.people.items()}
    assert after == story.outbox_before


@then(re_(rf'{q("user")} was (?P<what>locked|deleted) by the sweep on day (?P<day>\d+)'))
def swept_on(story, user, what, day):
    day = int(day)
    before, on = story.statuses[day - 1][user], story.statuses[day][user]
    if what == "locked":
        assert (before, on) == ("active", "locked"), (before, on)
    else:
        assert before == "locked" and on in ("deleted", "removed"), (before, on)
        signed = story.sign_in(user)
        assert signed.status == 401 and signed.code in ("account_removed", "invalid_credentials"), signed


@then(re_(rf'{q("user")} received an email notice on each of the 5 days before day (?P<day>\d+)'))
def notices_before(story, user, day):
    day = int(day)
    days = {story.day_of(m["created_at"]) for m in story.emails_to(user)}
    assert set(range(day - 5, day)) <= days, sorted(days)
    early = set(range(story.first_sweep_day + 1, day - 5))
    assert not (early & days), f"notices before the 5 days: {sorted(days)}"


# --- Identities that cannot be borrowed (R6) -----------------------------------------------------------------

FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyz0123456789-."}


@when(re_(rf'Arkansas Health & Wellness sets up {q("user")} as the Account Manager of {q("org")} '
          rf'under (?P<how>the|a look-alike of the) user ID of {q("other")}'))
def payer_sets_up_under_a_taken_name(story, user, org, how, other):
    """R6: a second person named with a user ID someone else holds (or a fullwidth twin of it)."""
    taken = story.username(other)
    if how != "the":
        taken = "".join(FULLWIDTH.get(c, c) for c in taken.lower())
    person = story.new_person(user, org)
    story.call("POST", f"/organizations/{story.org_key(org)}/admins",
               {"username": taken, "first_name": person.first_name, "last_name": person.last_name,
                "email": person.email, "password": person.password, "accepted_terms": True})


@then(re_(rf'{q("user")} is refused at sign-in with the password {q("actor")} chose, because of {q("code")}'))
def refused_with_chosen_password(story, user, actor, code):
    reply = story.sign_in(user, story.person(user).password, first_time=False)
    assert reply.status == 401 and reply.body["code"] == code, reply


@then(re_(rf'{q("user")} asking to use {q("label")} for {q("org")} before signing in gets {q("answer")}'))
def asking_before_signing_in(story, user, label, org, answer):
    decision = story.authorize(user, function_id(label), {"type": "organization", "id": story.org_key(org)},
                               first_sign_in=False)
    assert decision["allowed"] is False and answer in [r["code"] for r in decision["reasons"]], decision


@when(re_(rf'{q("user")} replaces the password {q("actor")} chose with one of their own'))
def replaces_password(story, user, actor):
    chosen = story.person(user).password
    story.expect(story.own_password(user), 200)
    story.people[user].__dict__["chosen_by_other"] = chosen


@then(re_(rf'{q("user")} is refused at sign-in without agreeing with the VG Terms and Conditions'))
def refused_without_terms(story, user):
    reply = story.sign_in(user, first_time=False)
    assert reply.status == 401 and reply.body["code"] == "terms_not_accepted", reply


@then(re_(rf'{q("user")} signs in agreeing with the VG Terms and Conditions'))
def signs_in_agreeing(story, user):
    assert story.person(user).terms_pending
    story.expect(story.sign_in(user), 201)


@then(re_(rf'the password {q("actor")} chose for {q("user")} no longer works'))
def chosen_password_no_longer_works(story, actor, user):
    person = story.person(user)
    reply = story.call("POST", "/sessions", {"username": person.username,
                                             "password": person.__dict__["chosen_by_other"]})
    assert reply.status == 401 and reply.body["code"] == "invalid_credentials", reply


# --- Orphaned organizations (R3, R4) -------------------------------------------------------------------------

@given("portal support staff are on duty")
def support_on_duty(story):
    story.support_token()
    story.on_duty = story.person("support staff")


@then(re_(rf'support staff are emailed that {q("org")} has no (?:Account Manager|master account holder|Primary User)'))
def support_told(story, org):
    notices = [n for n in story.outbox(story.on_duty.email) if n["template"] == "organization_without_admin"]
    assert [n["payload"]["organization"] for n in notices] == [story.org_key(org)], notices
