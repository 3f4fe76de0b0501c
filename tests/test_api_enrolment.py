"""Organizations, support staff and designated admins (scope `enroll`; R3, R4, R6, R12)."""
from __future__ import annotations

import pytest

from tests.conftest import make_key

ADDRESS = {"id": "CORR", "line1": "801 E Jefferson St", "city": "Phoenix", "state": "AZ", "zip": "85034"}
STRONG = "Secure#Pass42x"


@pytest.fixture
def enroll(client, database, clock):
    key = make_key(database, ("enroll",), clock.now())

    def _call(method, path, body=None):
        return client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {key}"})

    return _call


def test_create_and_get_an_organization(enroll):
    created = enroll("POST", "/v1/portals/qm/organizations",
                     {"key": "PROV-1", "name": "Desert Clinic", "addresses": [ADDRESS],
                      "business_type": "IOC", "region": "Central"})
    assert created.status_code == 201
    body = enroll("GET", "/v1/portals/qm/organizations/PROV-1").get_json()
    assert body["addresses"] == [ADDRESS]
    assert body["admins"] == [] and body["warnings"] == ["no_active_admin"]
    assert (body["business_type"], body["region"]) == ("IOC", "Central")


def test_duplicate_organization_is_409(enroll):
    body = {"key": "TIN-9", "name": "A"}
    assert enroll("POST", "/v1/portals/ahw/organizations", body).status_code == 201
    again = enroll("POST", "/v1/portals/ahw/organizations", body)
    assert again.status_code == 409 and again.get_json()["code"] == "organization_exists"


def test_unknown_business_type_is_refused(enroll):
    response = enroll("POST", "/v1/portals/qm/organizations", {"key": "X", "name": "X", "business_type": "Bakery"})
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "business_type"


def test_unknown_portal_and_organization_are_404(enroll):
    assert enroll("POST", "/v1/portals/mars/organizations", {"key": "X", "name": "X"}).status_code == 404
    assert enroll("GET", "/v1/portals/ahw/organizations/NOPE").status_code == 404


def test_enrolment_needs_the_enroll_scope(client, database, clock):
    key = make_key(database, ("authorize", "manage"), clock.now())
    response = client.post("/v1/portals/ahw/organizations", json={"key": "X", "name": "X"},
                           headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403 and response.get_json()["code"] == "insufficient_scope"


def test_payer_verified_first_account_manager_and_single_admin_warning(enroll):
    """R12: the payer sets up the first Account Manager; R3: one admin draws a warning."""
    enroll("POST", "/v1/portals/ahw/organizations", {"key": "TIN-1", "name": "Practice"})
    made = enroll("POST", "/v1/portals/ahw/organizations/TIN-1/admins",
                  {"username": "kim", "first_name": "Kim", "last_name": "Lee", "email": "kim@example.org",
                   "password": STRONG, "accepted_terms": True})
    assert made.status_code == 201, made.get_json()
    assert made.get_json() == {"username": "kim", "organization": "TIN-1", "role": "admin", "status": "active"}
    body = enroll("GET", "/v1/portals/ahw/organizations/TIN-1").get_json()
    assert [a["username"] for a in body["admins"]] == ["kim"]
    assert body["warnings"] == ["single_admin"]
    second = enroll("POST", "/v1/portals/ahw/organizations/TIN-1/admins",
                    {"username": "lou", "first_name": "Lou", "last_name": "Ng", "email": "lou@example.org",
                     "password": STRONG})
    assert second.status_code == 201
    assert enroll("GET", "/v1/portals/ahw/organizations/TIN-1").get_json()["warnings"] == []


def test_designating_an_existing_username_is_refused_not_adopted(enroll):
    """R4, R6: a username that exists is 409, never silently made admin elsewhere."""
    enroll("POST", "/v1/portals/ahcccs/organizations", {"key": "P1", "name": "P"})
    enroll("POST", "/v1/portals/ahcccs/organizations", {"key": "P2", "name": "Q"})
    enroll("POST", "/v1/portals/ahcccs/organizations/P1/admins",
           {"username": "amy", "first_name": "Amy", "last_name": "Ray", "email": "amy@example.org",
            "password": STRONG})
    again = enroll("POST", "/v1/portals/ahcccs/organizations/P2/admins", {"username": "AMY"})
    assert again.status_code == 409 and again.get_json()["code"] == "username_taken"
    named = enroll("POST", "/v1/portals/ahcccs/organizations/P2/admins", {"username": "AMY", "existing_account": True})
    assert named.status_code == 409 and named.get_json()["code"] == "not_in_organization"
    assert enroll("GET", "/v1/portals/ahcccs/organizations/P2").get_json()["admins"] == []


def test_new_admin_needs_details_and_a_valid_password(enroll):
    enroll("POST", "/v1/portals/ahcccs/organizations", {"key": "P1", "name": "P"})
    missing = enroll("POST", "/v1/portals/ahcccs/organizations/P1/admins", {"username": "zed"})
    assert missing.status_code == 422
    assert {e["field"] for e in missing.get_json()["errors"]} == {"first_name", "last_name", "email", "password"}
    weak = enroll("POST", "/v1/portals/ahcccs/organizations/P1/admins",
                  {"username": "zed", "first_name": "Z", "last_name": "Z", "email": "z@example.org",
                   "password": "zedzedzed"})
    assert weak.status_code == 422 and weak.get_json()["code"] == "password_policy"
    codes = {e["code"] for e in weak.get_json()["errors"]}
    assert {"missing_uppercase", "missing_digit", "missing_special", "shares_username"} <= codes
    assert enroll("GET", "/v1/portals/ahcccs/organizations/P1").get_json()["admins"] == []


def test_support_staff_and_unique_usernames(enroll):
    """R6: usernames unique per portal, ignoring case; emails unique unless name and email match exactly."""
    body = {"username": "Help.Desk", "first_name": "Help", "last_name": "Desk", "email": "help@example.org",
            "password": STRONG}
    assert enroll("POST", "/v1/portals/qm/support-staff", body).status_code == 201
    taken = enroll("POST", "/v1/portals/qm/support-staff", {**body, "username": "help.desk"})
    assert taken.status_code == 409 and taken.get_json()["code"] == "username_taken"
    same_person = enroll("POST", "/v1/portals/qm/support-staff", {**body, "username": "help2"})
    assert same_person.status_code == 201
    other = enroll("POST", "/v1/portals/qm/support-staff", {**body, "username": "help3", "first_name": "Helen"})
    assert other.status_code == 409 and other.get_json()["code"] == "email_taken"
    assert enroll("POST", "/v1/portals/ahw/support-staff", {**body}).status_code == 201  # another portal
