"""The console in a real browser (headless system Chromium, Playwright) against a live `portal-authz serve`: one
story per portal in the documents' words, each followed by /v1/authorize agreeing with the screen; CSRF; a
keyboard-only sign-in; axe-core on every page visited (no serious or critical violation); the three hostile
comments of the Arkansas document shown as text with no dialog. Each story's main page is photographed
into docs/images/console-<portal>.png for docs/console.md.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from service.domain import passwords
from service.kernel.catalog import PATH_ACTIONS
from tests.fixtures.browser import axe_violations
from tests.fixtures.servers import ROOT
from tests.fixtures.world import PASSWORD, World

pytestmark = [pytest.mark.slow]

HOSTILE = ("<script>alert(1)</script>", ";alert(1)//", "</xmp><script>alert(1)</script>")
IMAGES = ROOT / "docs" / "images"


@pytest.fixture(autouse=True, scope="module")
def _cheap():
    """The people written below are hashed at the live QA server's cost, in this module only."""
    from argon2 import PasswordHasher

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "_hasher", PasswordHasher(**passwords.CHEAP))
        yield


@pytest.fixture
def people(console_live):
    """Write people into the live server's database: `people("ahw", lambda world: ...)`."""
    def write(portal: str, build) -> None:
        with console_live.database.transaction() as session:
            build(World(session, portal, datetime.now(timezone.utc)))
    return write


class Screen:
    """One person's browser tab: every page it reaches is checked with axe-core and for script dialogs."""

    def __init__(self, page, console_live, axe_source, portal):
        self.page, self.console_live, self.axe, self.portal = page, console_live, axe_source, portal
        self.dialogs: list[str] = []
        self.csp_reports: list[str] = []
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("console", lambda message: self.csp_reports.append(message.text)
                if "Content Security Policy" in message.text else None)

    def open(self, path: str = ""):
        self.page.goto(f"{self.console_live.base}/console/{self.portal}/{path}")
        return self.checked()

    def checked(self):
        self.page.wait_for_load_state()
        violations = axe_violations(self.page, self.axe)
        assert not violations, f"{self.page.url}: {violations}"
        assert not self.csp_reports, self.csp_reports
        return self

    def button(self, name: str):
        return self.page.get_by_role("button", name=name, exact=True)

    def link(self, name, exact=True):
        return self.page.get_by_role("link", name=name, exact=exact)

    def press(self, name: str):
        self.button(name).click()
        return self.checked()

    def follow(self, name, exact=True):
        self.link(name, exact).click()
        return self.checked()

    def sign_in(self, username: str, password: str = PASSWORD):
        self.open()
        self.page.get_by_label("Username", exact=True).fill(username)
        self.page.get_by_label("Password", exact=True).fill(password)
        return self.press("Sign In")

    def shown_actions(self) -> set[str]:
        """The admin actions the page offers, by the `value` of its buttons."""
        return {value for value in self.page.locator("button[name=action]").evaluate_all(
            "buttons => buttons.map(b => b.value)") if value in PATH_ACTIONS}

    def confirmation(self) -> str:
        return self.page.get_by_role("status").filter(has_text="Confirmation").inner_text()

    def photograph(self):
        IMAGES.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(IMAGES / f"console-{self.portal}.png"), full_page=True)


@pytest.fixture
def screen(chromium, console_live, axe_source):
    contexts = []

    def open_screen(portal: str) -> Screen:
        context = chromium.new_context(viewport={"width": 1100, "height": 900})
        contexts.append(context)
        return Screen(context.new_page(), console_live, axe_source, portal)

    yield open_screen
    for context in contexts:
        context.close()


def test_the_ahcccs_master_approves_and_upgrades(people, screen, console_live):
    people("ahcccs", lambda w: (
        w.account("mara", memberships={"P-100": {"role": "admin"}}),
        w.account("pat", status="pending_approval", memberships={"P-100": {}}),
        w.account("ian", memberships={"P-100": {}})))
    me = screen("ahcccs").sign_in("mara")
    me.follow(re.compile(r"^Admin"), exact=False)
    me.photograph()
    me.page.get_by_label("Active Users").select_option("pat")
    me.press("Select")
    assert me.shown_actions() == console_live.authorized_actions(
        "ahcccs", "mara", {"type": "account", "id": "pat", "organization": "P-100"}) & set(PATH_ACTIONS)
    assert not me.button("Upgrade to Master Account").count()  # pending: the policy offers no upgrade yet
    before = console_live.authorize("ahcccs", "pat", "upgrade", {"type": "account", "id": "ian", "organization": "P-100"})
    assert not before["allowed"]

    me.press("Approve User")
    assert "Approve User: done for pat" in me.confirmation()
    assert me.page.locator("#account-status").inner_text() == "Active"
    me.press("Upgrade to Master Account")
    assert "Upgrade to Master Account: done for pat" in me.confirmation()
    assert "P-100: Master Account Holder" in me.page.get_by_role("definition").all_inner_texts()
    me.follow("Close")

    # The service agrees with the screen: pat is a master now, and acts as one.
    after = console_live.authorize("ahcccs", "pat", "upgrade", {"type": "account", "id": "ian", "organization": "P-100"})
    assert after["allowed"], after
    assert me.shown_actions() == console_live.authorized_actions(
        "ahcccs", "mara", {"type": "account", "id": "pat", "organization": "P-100"}) & set(PATH_ACTIONS)


def test_the_arkansas_account_manager_verifies_enables_grants_claims_and_comments(people, screen, console_live):
    people("ahw", lambda w: (
        w.account("kmcweeney", memberships={"TIN-1": {"role": "admin"}}),
        w.account("jehuang2", status="pending_approval", memberships={"TIN-1": {}}),
        w.account("other", memberships={"TIN-1": {}})))
    me = screen("ahw").sign_in("kmcweeney")
    me.follow(re.compile(r"^User Management"), exact=False)
    me.page.get_by_label("Verification Pending").check()
    me.press("Search")
    assert me.page.get_by_role("cell", name="other@example.org").count() == 0
    me.photograph()
    me.follow("Verify Account jehuang2")
    assert me.page.get_by_role("heading", level=1).inner_text().startswith("Update User Status and Permissions")

    me.press("Enable User")
    assert "Enable User: done for jehuang2" in me.confirmation()
    assert me.page.locator("#account-status").inner_text() == "Unverified"  # R12: until registration completes

    me.page.get_by_label("Claims", exact=True).check()
    me.press("Update User")
    assert "Update User: done for jehuang2" in me.confirmation()
    assert me.page.locator("#held-permissions").inner_text() == "Claims"

    for text in HOSTILE:
        box = me.page.get_by_label("Comments", exact=True)
        box.fill(text)
        box.press("End")  # the count follows what is typed (console.js)
        assert me.page.locator("#comment-count").inner_text() == f"{200 - len(text)} characters left"
        me.press("Update User")
    history = me.page.locator("table.comments td.comment-text").all_inner_texts()
    assert history == list(HOSTILE)
    assert me.dialogs == [] and me.page.evaluate("() => document.querySelectorAll('main script').length") == 0

    # The service agrees: Claims is held, and the status the screen shows still stops its use.
    answer = console_live.authorize("ahw", "jehuang2", "claims", {"type": "organization", "id": "TIN-1"})
    assert not answer["allowed"] and [r["code"] for r in answer["reasons"]] == ["actor_inactive"]
    revoke = console_live.authorize("ahw", "kmcweeney", "revoke", {"type": "account", "id": "jehuang2", "organization": "TIN-1"},
                            permission="claims")
    assert revoke["allowed"]
    assert me.shown_actions() == console_live.authorized_actions(
        "ahw", "kmcweeney", {"type": "account", "id": "jehuang2", "organization": "TIN-1"}) & set(PATH_ACTIONS)


def test_the_masshealth_primary_user_creates_assigns_resets_and_removes_a_subordinate(people, screen, console_live):
    people("masshealth", lambda w: w.account("mhughes", memberships={"1134135759-A": {"role": "admin"}}))
    me = screen("masshealth").sign_in("mhughes")
    me.follow(re.compile(r"^Manage Subordinate Accounts"), exact=False)
    me.press("Search")
    me.follow("New Subordinate")
    page = me.page
    page.get_by_label("Last Name").fill("DOE")
    page.get_by_label("First Name").fill("JOHN")
    page.get_by_label("Username").fill("jdoe11")
    page.get_by_label("Email Address").fill("john.doe@mass.net")
    page.get_by_label("Temporary Password").fill("Temporary#Pass1")
    page.get_by_label("View Provider Reports").check()
    me.press("Submit")
    assert "New Subordinate: jdoe11 is created" in me.confirmation()
    me.follow("Close")
    assert page.get_by_role("heading", level=1).inner_text() == "Update Subordinate for JOHN DOE"

    page.get_by_role("group", name="Available Services").get_by_label("Claims Submission and Status").check()
    me.press("Submit")
    assert "Submit: done for jdoe11" in me.confirmation()
    assigned = page.get_by_role("group", name="Assigned Services")
    assert assigned.get_by_label("Claims Submission and Status").is_checked()
    held = console_live.authorize("masshealth", "mhughes", "revoke",
                          {"type": "account", "id": "jdoe11", "organization": "1134135759-A"},
                          permission="claims_submission_and_status")
    assert held["allowed"], held
    me.follow("Return to Search Results")
    me.photograph()
    me.follow("JOHN DOE")

    me.press("Reset Password")
    assert "Reset Password: done for jdoe11" in me.confirmation()
    me.press("Remove")
    assert "Remove: done for jdoe11" in me.confirmation()
    assert page.get_by_role("heading", level=1).inner_text() == "Subordinates Search"
    gone = console_live.authorize("masshealth", "jdoe11", "claims_submission_and_status",
                          {"type": "organization", "id": "1134135759-A"})
    assert not gone["allowed"]


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(people, screen, console_live):
    people("qm", lambda w: (w.account("qmaster", memberships={"QM-1": {"role": "admin"}}),
                            w.account("qind", status="pending_approval", memberships={"QM-1": {}})))
    me = screen("qm").sign_in("qmaster")
    url = f"{console_live.base}/console/qm/accounts/qind"
    for form in ({"action": "approve", "organization": "QM-1"},
                 {"action": "approve", "organization": "QM-1", "csrf_token": "forged"}):
        answer = me.page.request.post(url, form=form)  # the signed-in tab's own cookie goes with it
        assert answer.status == 400, answer.status
    me.open("accounts/qind?organization=QM-1")
    assert me.page.locator("#account-status").inner_text() == "Pending Approval"
    assert console_live.authorize("qm", "qind", "view", {"type": "organization", "id": "QM-1"})["reasons"][0]["code"] \
        == "actor_inactive"


def test_a_person_signs_in_with_the_keyboard_alone(people, screen):
    people("ahcccs", lambda w: w.account("keys", memberships={"P-200": {}}))
    me = screen("ahcccs").open()
    keyboard = me.page.keyboard
    keyboard.press("Tab")  # the skip link
    keyboard.press("Tab")
    assert me.page.evaluate("() => document.activeElement.id") == "username"
    keyboard.type("keys")
    keyboard.press("Tab")
    keyboard.type(PASSWORD)
    keyboard.press("Tab")
    assert me.page.evaluate("() => document.activeElement.textContent") == "Sign In"
    keyboard.press("Enter")
    me.page.wait_for_url(re.compile(r"/console/ahcccs/home$"))
    me.checked()
    assert me.page.get_by_role("heading", level=1).inner_text() == "Welcome Keys Tester"
