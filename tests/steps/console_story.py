"""@console scenarios: the same steps, each person's clicks made at the console in a real browser.

A scenario tagged @console runs against a live `portal-authz serve` (the settable clock, cheap hashing): the
set-up and the checks speak the HTTP contract as in every scenario, and "X clicks B for Y" is X signed in
at /console/{portal}/, on Y's page, pressing the button named B (the documents' own word), with the comment
typed into "Comments". A button the page does not offer is the policy's denial: the reasons are then asked
of /v1/authorize, which must deny too (the screen and the service agree).
"""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

import pytest

from service.kernel.catalog import PATH_ACTIONS
from tests.fixtures.browser import axe_violations
from tests.steps.client import Api, Live, Reply
from tests.steps.story import Story


@pytest.fixture(scope="session")
def console_api(tmp_path_factory, config):
    """A live server for the @console scenarios, and the contract's client over HTTP to it."""
    from tests.conftest import make_key, prepared_database
    from tests.fixtures.servers import Server, server_config

    tmp = tmp_path_factory.mktemp("console-bdd")
    url = f"sqlite:///{tmp / 'console-bdd.db'}"
    database = prepared_database(url, config)
    key = make_key(database, ("authorize", "manage", "enroll"), datetime.now(timezone.utc))
    server = Server("console-bdd", server_config(tmp, testing={"clock": "settable", "hashing": "cheap"}), url, tmp,
                    workers=1)
    transport = None
    try:
        server.wait_ready()
        transport = Live(server.base)
        yield Api(transport, key), server.base
    finally:
        if transport is not None:
            transport.close()
        server.stop()
        database.dispose()


@pytest.fixture
def console_story(console_api, chromium, axe_source):
    api, base = console_api
    story = ConsoleStory(api, base, chromium, axe_source)
    yield story
    for page in story.pages.values():
        page.context.close()
    assert story.dialogs == [], f"a page ran script: {story.dialogs}"


class ConsoleStory(Story):
    def __init__(self, api: Api, base: str, browser, axe: str):
        super().__init__(api)
        self.base, self.browser, self.axe = base, browser, axe
        self.pages: dict[str, object] = {}
        self.dialogs: list[str] = []

    def url(self, path: str) -> str:
        return f"{self.base}/console/{self.portal}/{path}"

    def checked(self, page):
        page.wait_for_load_state()
        violations = axe_violations(page, self.axe)
        assert not violations, f"{page.url}: {violations}"
        return page

    def page_of(self, name: str):
        """The person's own tab, signed in at the console (a first sign-in sets its own password and accepts
        the terms, as the person would at the console's sign-in)."""
        page = self.pages.get(name)
        if page is None:  # a browser of its own: its own cookie
            page = self.pages[name] = self.browser.new_context().new_page()
            page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        return page

    def console_sign_in(self, name: str, page) -> None:
        person = self.person(name)
        if person.temporary_password:
            self.expect(self.own_password(name), 200)
        page.goto(self.url(""))
        for _ in range(2):
            page.get_by_label("Username", exact=True).fill(person.username)
            page.get_by_label("Password", exact=True).fill(person.password)
            agree = page.get_by_label("I Agree")
            if agree.count():
                agree.check()
            page.get_by_role("button", name="Sign In", exact=True).click()
            page.wait_for_load_state()
            if page.url.endswith("/home"):
                person.terms_pending = False
                return
        raise AssertionError(f"{name} cannot sign in at the console: {page.url}")

    def act(self, actor: str, action: str, target: str, org: str | None = None, comment: str | None = None,
            label: str | None = None) -> Reply:
        if label is None or actor in ("support staff", "support"):
            # A scenario's set-up (no button named), or support staff (their own tools): over the contract.
            return super().act(actor, action, target, org, comment)
        page = self.page_of(actor)
        path = f"accounts/{quote(self.username(target))}"
        if org:
            path += f"?organization={quote(self.org_key(org))}"
        page.goto(self.url(path))
        if page.url.rstrip("/").endswith(f"/console/{self.portal}"):  # not signed in, or the session ended
            self.console_sign_in(actor, page)
            page.goto(self.url(path))
        self.checked(page)
        button = page.get_by_role("button", name=label, exact=True)
        if not button.count():
            return self._not_offered(actor, action, target, org, page.url, page.locator("main").inner_text())
        if comment is not None:
            page.get_by_label("Comments", exact=True).fill(comment)
        button.click()
        self.checked(page)
        confirmed = page.get_by_role("status").filter(has_text="Confirmation")
        if not confirmed.count():
            errors = page.get_by_role("alert").all_inner_texts()
            self.last = Reply(422, {"code": "refused", "detail": " ".join(errors)}, "text/html", "POST", page.url)
            return self.last
        if comment is not None and page.locator("table.comments td.comment-text").count():
            shown = page.locator("table.comments td.comment-text").last.inner_text()
            assert shown == comment, f"the screen shows {shown!r}, not the comment as written"
        self.last = Reply(200, {"username": self.username(target)}, "text/html", "POST", page.url)
        return self.last

    def _not_offered(self, actor, action, target, org, url, shown="") -> Reply:
        """The page does not offer the button: the service must deny the same click, and says why."""
        resource = {"type": "account", "id": self.username(target)}
        if org:
            resource["organization"] = self.org_key(org)
        decision = self.authorize(actor, action.replace("-", "_"), resource, first_sign_in=False)
        assert action.replace("-", "_") in PATH_ACTIONS and not decision["allowed"], (
            f"the page {url} offers no such button, but the service allows it: {decision}\n{shown}")
        self.last = Reply(403, {"code": "forbidden", "reasons": decision["reasons"]}, "text/html", "POST", url)
        return self.last
