"""The console in-process (Flask's test client): sign-in counts toward lockout as the API's does (R19), CSRF on
every form, the cookie's and the pages' security headers, hostile comments shown as text (R25), and every
action a page shows is one the policy's authorized actions name (the rest are absent).

The real-browser stories are tests/test_console_browser.py.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from service.app import create_app
from service.config import ConfigError, parse_config
from service.storage.models import AuditRecord, Comment
from tests.conftest import make_key
from tests.fixtures.world import PASSWORD, World

HOSTILE = ("<script>alert(1)</script>", ";alert(1)//", "</xmp><script>alert(1)</script>")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A person at the console: follows the pages' own forms, their CSRF tokens included."""

    def __init__(self, client, portal):
        self.client, self.portal = client, portal

    def url(self, path=""):
        return f"/console/{self.portal}/{path}"

    def get(self, path="", **kwargs):
        return self.client.get(self.url(path), **kwargs)

    def token(self, path=""):
        return CSRF.search(self.get(path).get_data(as_text=True)).group(1)

    def post(self, path, data, token_from=""):
        return self.client.post(self.url(path), data={"csrf_token": self.token(token_from), **data})

    def sign_in(self, username, password=PASSWORD, **extra):
        return self.post("sign-in", {"username": username, "password": password, **extra})


@pytest.fixture
def ahw(build):
    with build("ahw") as world:
        world.organization("TIN-1")
        world.account("manager", memberships={"TIN-1": {"role": "admin"}})
        world.account("jhuang", memberships={"TIN-1": {"permissions": ["claims"]}})
        world.account("newbie", status="pending_approval", memberships={"TIN-1": {}})
        world.account("outsider", memberships={"TIN-2": {"role": "admin"}})


def browser(app, portal="ahw"):
    return Browser(app.test_client(), portal)


def test_the_sign_in_form_speaks_the_documents_words(app):
    page = browser(app).get().get_data(as_text=True)
    assert '<label for="username">Username</label>' in page
    assert '<label for="password">Password</label>' in page
    assert '<button type="submit">Sign In</button>' in page
    assert "Forgot your password?" in page


def test_a_signed_in_person_reaches_home_and_the_cookie_is_the_consoles_own(app, ahw):
    person = browser(app)
    answer = person.sign_in("manager")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/console/ahw/home")
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("portal_authz_console=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert "Secure" in cookie  # on by default: this config's clock is the system's
    home = person.get("home").get_data(as_text=True)
    assert "User Management" in home


def test_the_cookie_is_not_secure_on_a_qa_server_or_when_configured_so(config, database, policy, clock, ahw):
    qa = config.model_copy(update={"testing": config.testing.model_copy(update={"clock": "settable"})})
    assert "Secure" not in browser(create_app(qa, database=database, policy=policy, clock=clock)).sign_in(
        "manager").headers["Set-Cookie"]
    plain = config.model_copy(update={"console": config.console.model_copy(update={"secure_cookie": False})})
    assert "Secure" not in browser(create_app(plain, database=database, policy=policy, clock=clock)).sign_in(
        "manager").headers["Set-Cookie"]


def test_an_api_request_never_gets_a_cookie(app, client, authorize_key):
    answer = client.post("/v1/authorize", json={"portal": "ahw", "actor": "x", "action": "view",
                                                 "resource": {"type": "organization", "id": "TIN-1"}},
                         headers={"Authorization": f"Bearer {authorize_key}"})
    assert "Set-Cookie" not in answer.headers


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(app, ahw, database, token):
    person = browser(app)
    person.sign_in("manager")
    data = {"action": "enable", "organization": "TIN-1"}
    if token is not None:
        data["csrf_token"] = token
    answer = person.client.post(person.url("accounts/newbie"), data=data)
    assert answer.status_code == 400
    assert "The form could not be verified" in answer.get_data(as_text=True)
    with database.sessions() as session:
        assert not session.scalars(select(AuditRecord).where(AuditRecord.action == "enable")).all()


def test_a_sign_in_form_without_its_csrf_token_counts_nothing(app, ahw, database):
    person = browser(app)
    answer = person.client.post(person.url("sign-in"), data={"username": "manager", "password": "wrong"})
    assert answer.status_code == 400
    with database.sessions() as session:
        assert not session.scalars(select(AuditRecord).where(AuditRecord.action == "sign_in")).all()


def test_wrong_passwords_at_the_console_lock_the_account_as_the_apis_do(app, ahw, client, database, clock):
    person = browser(app)
    for _ in range(2):
        assert person.sign_in("jhuang", "wrong").status_code == 401
    # The third failure counts as the API's would: the window holds the console's two.
    key = make_key(database, ("manage",), clock.now())
    answer = client.post("/v1/portals/ahw/sessions", json={"username": "jhuang", "password": "wrong"},
                         headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 401
    refused = person.sign_in("jhuang")
    assert refused.status_code == 401 and "Your account is locked" in refused.get_data(as_text=True)


def test_every_console_page_forbids_inline_script_and_framing_by_default(app, ahw):
    person = browser(app)
    policy = person.get().headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    person.sign_in("manager")
    for path in ("home", "admin?organization=TIN-1", "accounts/jhuang", "user-account"):
        answer = person.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["Content-Security-Policy"] == policy, path
        assert answer.headers["Cache-Control"] == "no-store"
        assert " style=" not in answer.get_data(as_text=True) and "<script>" not in answer.get_data(as_text=True)


def test_a_portal_names_who_may_frame_its_console(config, database, policy, clock):
    portals = config.model_dump()["portals"]
    portals["ahw"]["console"] = {"frame_ancestors": ["'self'", "https://portal.example.org"]}
    framed = config.model_copy(update={"portals": {**config.portals, "ahw": config.portals["ahw"].model_copy(
        update={"console": config.portals["ahw"].console.model_copy(
            update={"frame_ancestors": ("'self'", "https://portal.example.org")})})}})
    app = create_app(framed, database=database, policy=policy, clock=clock)
    assert "frame-ancestors 'self' https://portal.example.org" in \
        browser(app).get().headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in browser(app, "qm").get().headers["Content-Security-Policy"]
    with pytest.raises(ConfigError, match="frame ancestor"):
        parse_config({**config.model_dump(exclude={"base_dir", "config_name"}, mode="json"),
                      "portals": {"ahw": {**portals["ahw"], "console": {"frame_ancestors": ["*"]}}}})


def test_hostile_comments_are_stored_as_written_and_shown_as_text(app, ahw, database):
    person = browser(app)
    person.sign_in("manager")
    for text in HOSTILE:
        answer = person.post("accounts/jhuang", {"action": "permissions", "organization": "TIN-1",
                                                 "permission": "claims", "comment": text}, "accounts/jhuang")
        assert answer.status_code == 302
    page = person.get("accounts/jhuang").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "</xmp>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;/xmp&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert ";alert(1)//" in page
    with database.sessions() as session:
        assert [c.text for c in session.scalars(select(Comment).order_by(Comment.id))] == list(HOSTILE)


def _buttons(page: str) -> set[str]:
    return set(re.findall(r'<button type="submit" name="action" value="([a-z_]+)"', page))


def _actions(client, key, actor, username, organization="TIN-1"):
    answer = client.post("/v1/authorized-actions", json={
        "portal": "ahw", "actor": actor, "resource": {"type": "account", "id": username, "organization": organization}},
        headers={"Authorization": f"Bearer {key}"})
    return set(answer.get_json()["actions"])


@pytest.mark.parametrize("username", ["jhuang", "newbie"])
def test_the_account_page_offers_exactly_the_policys_actions(app, ahw, client, authorize_key, username):
    person = browser(app)
    person.sign_in("manager")
    page = person.get(f"accounts/{username}").get_data(as_text=True)
    allowed = _actions(client, authorize_key, "manager", username)
    from service.kernel.catalog import PATH_ACTIONS

    shown = _buttons(page)
    assert shown - {"permissions"} == allowed & set(PATH_ACTIONS)
    assert ("permissions" in shown) == bool({"grant", "revoke"} & allowed)


def test_the_user_list_shows_the_policys_actions_per_row_and_only_what_the_actor_administers(app, ahw, client,
                                                                                               authorize_key):
    person = browser(app)
    person.sign_in("manager")
    page = person.get("admin?organization=TIN-1").get_data(as_text=True)
    assert "jhuang" in page and "newbie" in page and "outsider" not in page
    assert "Verify Account" in page  # newbie awaits verification, and the policy lets the manager enable it
    filtered = person.get("admin?organization=TIN-1&pending=yes").get_data(as_text=True)
    assert "newbie" in filtered and "jhuang@example.org" not in filtered


def test_a_member_sees_no_admin_tools_and_cannot_open_another_account(app, ahw):
    person = browser(app)
    person.sign_in("jhuang")
    assert "User Management" not in person.get("home").get_data(as_text=True)
    denied = person.get("accounts/newbie")
    assert denied.status_code == 403
    assert "Only an admin of the organization may do this." in denied.get_data(as_text=True)  # not_admin
    outsider = browser(app)
    outsider.sign_in("outsider")
    assert outsider.get("accounts/jhuang?organization=TIN-1").status_code == 403


def test_an_action_posted_through_the_console_is_the_apis_change_audited_with_its_comment(app, ahw, database):
    person = browser(app)
    person.sign_in("manager")
    answer = person.post("accounts/newbie", {"action": "enable", "organization": "TIN-1", "comment": "welcome"},
                         "accounts/newbie")
    assert answer.status_code == 302
    page = person.client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Confirmation" in page and "Enable User: done for newbie" in page
    with database.sessions() as session:
        record = session.scalars(select(AuditRecord).where(AuditRecord.action == "enable")).one()
        assert (record.actor, record.target, record.outcome, record.client, record.comment) == (
            "manager", "newbie", "done", "console", "welcome")


def test_pages_need_a_session_and_signing_out_ends_it(app, ahw):
    person = browser(app)
    assert person.get("home").headers["Location"].endswith("/console/ahw/")
    person.sign_in("manager")
    assert person.get("home").status_code == 200
    person.post("sign-out", {}, "home")
    assert person.get("home").status_code == 302


def test_an_unknown_portal_is_a_plain_404(app):
    assert app.test_client().get("/console/nowhere/").status_code == 404


def test_user_account_changes_the_persons_own_information_but_not_their_email(app, ahw, database):
    person = browser(app)
    person.sign_in("jhuang")
    page = person.get("user-account").get_data(as_text=True)
    assert 'name="first_name"' in page and 'name="email"' not in page
    answer = person.post("accounts/jhuang", {"action": "profile", "organization": "TIN-1", "back": "user-account",
                                             "first_name": "Jeremy", "last_name": "Huang", "phone": "123"},
                         "user-account")
    assert answer.headers["Location"].endswith("/console/ahw/user-account")
    assert "Jeremy" in person.get("user-account").get_data(as_text=True)


def test_the_first_sign_in_asks_for_the_terms_then_signs_in(app, build):
    with build("masshealth") as world:
        account = world.account("sub", memberships={"PIDSL-1": {}})
        account.terms_accepted_at = None
    person = browser(app, "masshealth")
    refused = person.sign_in("sub")
    assert refused.status_code == 401 and "I Agree" in refused.get_data(as_text=True)
    assert person.sign_in("sub", accepted_terms="yes").status_code == 302


def test_every_console_page_but_sign_in_and_recovery_needs_a_session_and_every_form_a_csrf_token(app, ahw):
    """A new console route cannot forget either guard: each one is walked here."""
    open_pages = {"console.sign_in_form", "console.sign_in", "console.activation_form", "console.activate",
                  "console.password_form", "console.change_password", "console.recovery_form",
                  "console.request_recovery", "console.recovery_confirm_form", "console.confirm_recovery",
                  "console.sign_out"}
    client = app.test_client()
    walked = 0
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console."):
            continue
        path = rule.rule.replace("<portal>", "ahw").replace("<username>", "jhuang").replace(
            "<organization>", "TIN-1")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            answer = client.open(path, method=method, data={})
            if method == "POST":
                assert answer.status_code == 400, (rule.endpoint, answer.status_code)  # no CSRF token
            elif rule.endpoint not in open_pages:
                assert answer.status_code == 302 and answer.headers["Location"].endswith("/console/ahw/"), \
                    rule.endpoint
            walked += 1
    assert walked >= 20


def test_one_pass_over_a_page_answers_what_one_question_per_row_answers(any_database, config, policy, clock):
    """The user list's decision pass (`Decider.authorized_actions_each`) against POST /v1/authorized-actions's
    engine asked row by row, on SQLite and PostgreSQL: every status and role, and the organization itself."""
    from service.domain.decisions import Decider, Resource

    with any_database.transaction() as session:
        world = World(session, "ahw", clock.now())
        world.account("boss", memberships={"TIN-9": {"role": "admin"}})
        world.account("deputy", memberships={"TIN-9": {"permissions": ["manage_account", "claims"]}})
        for i, status in enumerate(("active", "locked", "disabled", "pending_approval", "unverified", "active")):
            world.account(f"user{i}", status=status, memberships={"TIN-9": {"permissions": ["claims"] * (i % 2)}})
        world.account("other-admin", memberships={"TIN-9": {"role": "admin"}, "TIN-8": {}})
    resources = [Resource("account", name, "TIN-9") for name in
                 ("boss", "deputy", "other-admin", *(f"user{i}" for i in range(6)))]
    resources.append(Resource("organization", "TIN-9"))
    profile = config.portal("ahw")
    for actor in ("boss", "deputy", "user0"):
        with any_database.sessions() as session:
            decider = Decider(session, profile, policy, "ahw", clock.now())
            each = decider.authorized_actions_each(actor, resources)
            one_by_one = [decider.authorized_actions(actor, r) for r in resources]
        assert each == one_by_one, actor


def test_the_services_offered_to_a_new_subordinate_are_those_its_creation_accepts(database, config, policy, clock):
    from service.domain import roster
    from service.domain.work import Context
    from service.storage.facts import find_account

    with database.transaction() as session:
        world = World(session, "masshealth", clock.now())
        world.account("primary", memberships={"PID-1": {"role": "admin"}})
        world.account("delegate", memberships={"PID-1": {"permissions": ["manage_subordinate_accounts",
                                                                          "manage_referrals"]}})
        world.account("plain", memberships={"PID-1": {}})
    catalog = list(config.portal("masshealth").catalog)
    for actor, expected in (("primary", catalog), ("delegate", ["manage_subordinate_accounts", "manage_referrals"]),
                            ("plain", [])):
        with database.transaction() as session:
            ctx = Context(session, config.portal("masshealth"), "masshealth", policy, None, clock.now(), None)
            offered = roster.grantable_on_creation(ctx, find_account(session, "masshealth", actor), "PID-1")
        assert sorted(offered) == sorted(expected), actor


def test_a_new_master_activates_at_the_console_with_the_letters_code_then_signs_in(app, api, database):
    """R10 at the console: the first sign-in sends a master awaiting activation to the activation form; the
    code and temporary password from the letter, then a new password (POST .../activations' domain function)."""
    from tests.fixtures.http import ADDRESS, outbox

    p = api("ahcccs")
    p.call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    p.register("mara", address_id="CORR")
    letter = outbox(database)[0].payload
    person = browser(app, "ahcccs")
    first = person.sign_in("mara", letter["temporary_password"])
    assert first.headers["Location"].endswith("/console/ahcccs/activate?username=mara")
    wrong = person.post("activate", {"username": "mara", "code": letter["activation_code"].lower(),
                                     "temporary_password": letter["temporary_password"],
                                     "new_password": "Fresh#Pass2026x"}, "activate")
    assert wrong.status_code == 422 and "not correct" in wrong.get_data(as_text=True)  # exactly as printed
    done = person.post("activate", {"username": "mara", "code": letter["activation_code"],
                                    "temporary_password": letter["temporary_password"],
                                    "new_password": "Fresh#Pass2026x"}, "activate")
    assert done.status_code == 302
    assert person.sign_in("mara", "Fresh#Pass2026x").headers["Location"].endswith("/console/ahcccs/home")


def test_a_temporary_password_is_replaced_at_the_first_sign_in(app, api, database, build):
    """A subordinate whose Primary User chose its password: the console asks for a new one, then the terms."""
    p = api("masshealth")
    p.call("POST", "/organizations", {"key": "PIDSL-1", "name": "Clinic"}, expect=201)
    from service.storage.models import Organization

    with build("masshealth") as world:
        world.organizations["PIDSL-1"] = world.session.scalar(select(Organization).where(Organization.key == "PIDSL-1"))
        world.member(world.account("primary"), "PIDSL-1", "admin")
    token = p.sign_in("primary", PASSWORD)
    p.call("POST", "/organizations/PIDSL-1/accounts", {"username": "jdoe11", "first_name": "John",
                                                       "last_name": "Doe", "email": "j@example.org",
                                                       "password": "Temporary#Pass1"}, token=token, expect=201)
    person = browser(app, "masshealth")
    first = person.sign_in("jdoe11", "Temporary#Pass1")
    assert first.headers["Location"].endswith("/console/masshealth/password?username=jdoe11")
    changed = person.post("password", {"username": "jdoe11", "current_password": "Temporary#Pass1",
                                       "new_password": "Own#Pass2026xy"}, "password")
    assert changed.status_code == 302
    terms = person.sign_in("jdoe11", "Own#Pass2026xy")
    assert terms.status_code == 401 and "I Agree" in terms.get_data(as_text=True)
    assert person.sign_in("jdoe11", "Own#Pass2026xy", accepted_terms="yes").headers["Location"].endswith("/home")


def test_link_subordinate_links_an_account_of_another_provider_and_is_offered_only_where_allowed(app, build,
                                                                                               database):
    with build("masshealth") as world:
        world.account("mhughes", memberships={"PIDSL-1": {"role": "admin"}})
        world.account("jdoe11", memberships={"PIDSL-1": {}})
        world.account("pat", memberships={"PIDSL-2": {"role": "admin"}})
        world.account("sub2", memberships={"PIDSL-2": {}})
    plain = browser(app, "masshealth")
    plain.sign_in("sub2")
    assert plain.get("organizations/PIDSL-2/link-subordinate").status_code == 404  # not offered: as absent
    person = browser(app, "masshealth")
    person.sign_in("pat")
    listing = person.get("admin?organization=PIDSL-2").get_data(as_text=True)
    assert ">Link Subordinate<" in listing and ">New Subordinate<" in listing
    answer = person.post("organizations/PIDSL-2/link-subordinate", {"username": "jdoe11"},
                         "organizations/PIDSL-2/link-subordinate")
    assert answer.status_code == 302
    page = person.client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Link Subordinate: jdoe11 now acts for PIDSL-2." in page
    with database.sessions() as session:
        record = session.scalars(select(AuditRecord).where(AuditRecord.action == "link_account")).one()
        assert (record.actor, record.target, record.organization, record.client) == ("pat", "jdoe11", "PIDSL-2",
                                                                                    "console")


def test_new_subordinate_refuses_a_bad_form_with_its_fields_named_and_creates_nothing(app, build, database):
    with build("masshealth") as world:
        world.account("mhughes", memberships={"PIDSL-1": {"role": "admin"}})
    person = browser(app, "masshealth")
    person.sign_in("mhughes")
    answer = person.post("organizations/PIDSL-1/new-subordinate", {
        "last_name": "DOE", "first_name": "JOHN", "username": "jdoe11", "email": "not-an-email",
        "password": "Temporary#Pass1"}, "organizations/PIDSL-1/new-subordinate")
    assert answer.status_code == 422 and "Email" in answer.get_data(as_text=True)
    assert 'value="jdoe11"' in answer.get_data(as_text=True)  # what was typed stays, but never the password
    assert "Temporary#Pass1" not in answer.get_data(as_text=True)
    with database.sessions() as session:
        assert not session.scalars(select(AuditRecord).where(AuditRecord.action == "create_account")).all()


def test_forgot_your_password_leads_to_recovery_by_the_security_answers(app, build, database):
    """R20 at the console: the answers (the same page whatever they were), then the emailed code."""
    from tests.fixtures.http import ANSWERS, give_answers, outbox

    with build("qm") as world:
        account = world.account("ioc", memberships={"QM-1": {}})
        give_answers(world, account)
    person = browser(app, "qm")
    assert 'href="/console/qm/recover">Forgot your password?</a>' in person.get().get_data(as_text=True)
    form = person.get("recover").get_data(as_text=True)
    assert "Security Answer #1" in form and "Security Answer #2" in form and "What is" not in form
    wrong = person.post("recover", {"username": "ioc", "answer1": "123 Oak Street", "answer2": ANSWERS[1]},
                        "recover")
    right = person.post("recover", {"username": "ioc", "answer1": ANSWERS[0], "answer2": ANSWERS[1]}, "recover")
    assert wrong.status_code == right.status_code == 302 and wrong.headers["Location"] == right.headers["Location"]
    (mail,) = [n for n in outbox(database, "ioc@example.org") if n.template == "password_recovery"]
    done = person.post("recover/confirm", {"username": "ioc", "code": mail.payload["security_code"],
                                           "new_password": "Fresh#Pass2026x"}, "recover/confirm")
    assert done.status_code == 302
    assert person.sign_in("ioc", "Fresh#Pass2026x").headers["Location"].endswith("/console/qm/home")


def test_recovery_says_plainly_where_a_portal_offers_none(app):
    page = browser(app, "ahw").get("recover").get_data(as_text=True)
    assert "does not offer self-service password recovery" in page and "Security Answer" not in page


# Access requests at the console: the member's Request Access, the decider's Access Requests page.

FORM_PERMISSIONS = re.compile(r'name="permission" value="([a-z_]+)"')


@pytest.fixture
def practice(any_database, config, policy, clock):
    """TIN-1 (ahw) on SQLite and PostgreSQL: the Account Manager, two plain members, one holding claims."""
    app = create_app(config, database=any_database, policy=policy, clock=clock)
    with any_database.transaction() as session:
        world = World(session, "ahw", clock.now())
        world.account("manager", memberships={"TIN-1": {"role": "admin"}})
        world.account("jhuang", memberships={"TIN-1": {}})
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
    app.key = make_key(any_database, ("authorize",), clock.now())
    app.database = any_database
    return app


def _authorize(app, actor, action, remedies=False, organization="TIN-1"):
    return app.test_client().post("/v1/authorize", json={
        "portal": "ahw", "actor": actor, "action": action, "resource": {"type": "organization", "id": organization},
        "remedies": remedies}, headers={"Authorization": f"Bearer {app.key}"}).get_json()


def _follow(person, answer):
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return person.client.get(answer.headers["Location"]).get_data(as_text=True)


def _requests(database):
    from service.storage.models import AccessRequest

    with database.sessions() as session:
        return [(r.account.username, r.permission, r.status) for r in
                session.scalars(select(AccessRequest).order_by(AccessRequest.id))]


def _request_id(database):
    from service.storage.models import AccessRequest

    with database.sessions() as session:
        return str(session.scalars(select(AccessRequest.id)).one())


def test_request_access_is_offered_for_what_the_member_lacks_and_names_whom_the_remedy_names(practice):
    person = browser(practice)
    person.sign_in("biller")
    home = person.get("home").get_data(as_text=True)
    # Offered exactly where /v1/authorize's only objection is that the function was not granted.
    expected = {p for p in practice.extensions["portal_authz"].config.portal("ahw").catalog
                if [r["code"] for r in _authorize(practice, "biller", p)["reasons"]] == ["permission_not_granted"]}
    assert "claims" not in expected and set(FORM_PERMISSIONS.findall(home)) == expected
    page = _follow(person, person.post("organizations/TIN-1/request-access",
                                       {"permission": "eligibility", "note": "I check coverage"}, "home"))
    (remedy,) = _authorize(practice, "biller", "eligibility", remedies=True)["remedies"]
    assert remedy["by"] == ["manager"]
    assert "your request for Eligibility in TIN-1 is sent" in page and "Sent to: manager." in page
    assert "open until" in page and "eligibility" not in FORM_PERMISSIONS.findall(page)
    assert _requests(practice.database) == [("biller", "eligibility", "open")]
    # Refusals in plain words: a request already open, a function already held; nothing more is stored.
    again = _follow(person, person.post("organizations/TIN-1/request-access", {"permission": "eligibility"}, "home"))
    assert "You have already asked for this function; that request is still open." in again
    held = _follow(person, person.post("organizations/TIN-1/request-access", {"permission": "claims"}, "home"))
    assert "You already have this function." in held
    assert _requests(practice.database) == [("biller", "eligibility", "open")]


def test_the_admin_approves_a_request_at_the_console_and_the_member_is_then_allowed(practice):
    member = browser(practice)
    member.sign_in("jhuang")
    member.post("organizations/TIN-1/request-access", {"permission": "claims"}, "home")
    assert _authorize(practice, "jhuang", "claims")["allowed"] is False
    # A member who may not decide it sees the page, without it and without any Approve.
    peer = browser(practice)
    peer.sign_in("biller")
    assert "Access Requests" not in peer.get("home").get_data(as_text=True)
    listing = peer.get("organizations/TIN-1/access-requests").get_data(as_text=True)
    assert "jhuang" not in listing and 'value="approve"' not in listing
    manager = browser(practice)
    manager.sign_in("manager")
    assert "/console/ahw/organizations/TIN-1/access-requests" in manager.get("home").get_data(as_text=True)
    listing = manager.get("organizations/TIN-1/access-requests").get_data(as_text=True)
    assert "jhuang" in listing and 'value="approve"' in listing and 'value="decline"' in listing
    (request_id,) = re.findall(r'name="request" value="(\d+)"', listing)
    page = _follow(manager, manager.post("organizations/TIN-1/access-requests",
                                         {"request": request_id, "action": "approve", "comment": "ok"},
                                         "organizations/TIN-1/access-requests"))
    assert f"Approve: done for request {request_id}." in page and "No open requests for you to decide." in page
    assert _authorize(practice, "jhuang", "claims")["allowed"] is True
    assert _requests(practice.database) == [("jhuang", "claims", "approved")]
    with practice.database.sessions() as session:
        grant = session.scalars(select(AuditRecord).where(AuditRecord.action == "set_permissions")).one()
        assert (grant.actor, grant.target, grant.client, grant.comment) == ("manager", "jhuang", "console", "ok")
    # Once decided it is closed: a second press is refused in plain words.
    again = _follow(manager, manager.post("organizations/TIN-1/access-requests",
                                          {"request": request_id, "action": "decline"},
                                          "organizations/TIN-1/access-requests"))
    assert "This request is no longer open" in again


def test_the_admin_declines_a_request_and_a_member_may_neither_approve_nor_decline_it(practice):
    member = browser(practice)
    member.sign_in("jhuang")
    member.post("organizations/TIN-1/request-access", {"permission": "claims"}, "home")
    request_id = _request_id(practice.database)
    peer = browser(practice)
    peer.sign_in("biller")
    for how in ("approve", "decline"):
        page = _follow(peer, peer.post("organizations/TIN-1/access-requests", {"request": request_id, "action": how},
                                       "home"))
        assert "Confirmation" not in page and "Only an admin of the organization may do this." in page
    assert _requests(practice.database) == [("jhuang", "claims", "open")]
    manager = browser(practice)
    manager.sign_in("manager")
    page = _follow(manager, manager.post("organizations/TIN-1/access-requests",
                                         {"request": request_id, "action": "decline"}, "home"))
    assert f"Decline: done for request {request_id}." in page
    assert _requests(practice.database) == [("jhuang", "claims", "declined")]
    assert _authorize(practice, "jhuang", "claims")["allowed"] is False
    with practice.database.sessions() as session:
        records = session.scalars(select(AuditRecord).where(AuditRecord.action == "access_request_declined")
                                  .order_by(AuditRecord.id)).all()
        # The member's refused decline is recorded as a denial, as every denial is; the manager's is done.
        assert [(r.actor, r.target, r.outcome, r.client) for r in records][-1] == (
            "manager", "jhuang", "done", "console")
        assert {(r.actor, r.outcome) for r in records[:-1]} == {("biller", "denied")}


def test_access_request_forms_without_their_csrf_token_are_refused_and_change_nothing(practice):
    member = browser(practice)
    member.sign_in("jhuang")
    answer = member.client.post(member.url("organizations/TIN-1/request-access"), data={"permission": "claims"})
    assert answer.status_code == 400 and "The form could not be verified" in answer.get_data(as_text=True)
    assert _requests(practice.database) == []
    member.post("organizations/TIN-1/request-access", {"permission": "claims"}, "home")
    manager = browser(practice)
    manager.sign_in("manager")
    for how in ("approve", "decline"):
        answer = manager.client.post(manager.url("organizations/TIN-1/access-requests"),
                                     data={"request": _request_id(practice.database), "action": how,
                                           "csrf_token": "not-the-token"})
        assert answer.status_code == 400
    assert _requests(practice.database) == [("jhuang", "claims", "open")]


def test_where_nobody_in_the_organization_can_grant_it_the_request_goes_to_support_unnamed(practice, clock):
    with practice.database.transaction() as session:
        world = World(session, "ahw", clock.now())
        world.account("gone", status="disabled", memberships={"TIN-7": {"role": "admin"}})
        world.account("alone", memberships={"TIN-7": {}})
        world.account("helpdesk", support=True)
    (remedy,) = _authorize(practice, "alone", "claims", remedies=True, organization="TIN-7")["remedies"]
    assert (remedy["by"], remedy["support"]) == ([], True)
    person = browser(practice)
    person.sign_in("alone")
    page = _follow(person, person.post("organizations/TIN-7/request-access", {"permission": "claims"}, "home"))
    assert "it is sent to support staff" in page and "helpdesk" not in page and "gone" not in page
