"""Storage on both backends (SQLite and PostgreSQL): schema, constraints, transactions, time, facts."""
from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from service.domain.decisions import Decider, Question, Resource
from service.kernel.facts import ActorFacts, MembershipFacts
from service.policy import Policy
from service.storage import facts
from service.storage.database import alembic_config
from service.storage.models import Account, Base, Grant, Membership, Organization, Portal
from tests.fixtures.world import World

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def world(session, portal: str = "ahcccs") -> World:
    return World(session, portal, NOW)


def count(database, model) -> int:
    with database.transaction() as session:
        return session.scalar(select(func.count()).select_from(model))


def current_revision(database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(database) -> str:
    return ScriptDirectory.from_config(alembic_config(database.engine)).get_current_head()


# --- Schema ----------------------------------------------------------------------------------


def test_migrations_reach_head_and_match_the_models(any_database):
    assert current_revision(any_database) == head_revision(any_database)
    with any_database.engine.connect() as connection, warnings.catch_warnings():
        # Alembic warns before `include_object` runs that SQLite cannot reflect an expression index;
        # the only one is PostgreSQL's, which SQLite never gets (migration 0009).
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index "
                                          "'ix_accounts_name_trgm'; dialect 'sqlite'")
        context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                               "include_object": _on_this_dialect(connection)})
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == []


def _on_this_dialect(connection):
    """Indexes a model declares for one dialect only (`.ddl_if(dialect=...)`, e.g. PostgreSQL's trigram
    indexes of migration 0009) are compared on that dialect only."""
    def include(obj, _name, type_, _reflected, _compare_to):
        only = getattr(obj, "_ddl_if", None) if type_ == "index" else None
        return only is None or only.dialect is None or only.dialect == connection.dialect.name
    return include


def test_upgrading_twice_is_harmless(any_database, config):
    with any_database.transaction() as session:
        world(session).account("alice", memberships={"ORG1": {"permissions": ["claims"]}})
    any_database.upgrade_schema()
    any_database.upgrade_schema()
    assert current_revision(any_database) == head_revision(any_database)
    assert count(any_database, Account) == 1
    assert count(any_database, Grant) == 1
    assert count(any_database, Portal) == len(config.portals)


def test_migration_0010_recomputes_both_skeletons_and_leaves_a_later_look_alike_none(any_database, caplog):
    """Accounts stored before the typed skeleton existed: the older keeps both skeletons, the later look-alike
    gets no skeleton where the older holds it (NULL, logged for support staff), and nobody is renamed."""
    from alembic import command
    from sqlalchemy import update

    from service.kernel import usernames

    with any_database.transaction() as session:
        w = world(session)
        for name in ("lola.bolt", "placeholder", "Ian"):
            w.account(name)
    command.downgrade(alembic_config(any_database.engine), "0009")
    accounts = Account.__table__
    with any_database.engine.begin() as connection:  # a look-alike 0008 let in, skeletons as 0008 stored them
        connection.execute(update(accounts).where(accounts.c.username == "placeholder")
                           .values(username="IoIa.boIt", username_key="ioia.boit"))
        connection.execute(update(accounts).values(username_skeleton=accounts.c.username_key))
    with caplog.at_level("WARNING", logger="alembic.runtime.migration"):
        any_database.upgrade_schema()
    with any_database.sessions() as session:
        rows = {a.username: (a.username_skeleton, a.username_skeleton_typed)
                for a in session.scalars(select(Account))}
    assert rows == {"lola.bolt": ("lola.bolt", "lola.bolt"), "IoIa.boIt": ("ioia.boit", None),
                    "Ian": ("ian", "lan")}
    assert rows["Ian"] == tuple(usernames.skeleton_columns("Ian").values())
    assert "'IoIa.boIt' (portal ahcccs) looks like the older 'lola.bolt'" in caplog.text


# --- Constraints and transactions --------------------------------------------------------------


def test_usernames_are_unique_per_portal_ignoring_case(any_database):
    with any_database.transaction() as session:
        world(session).account("Alice")
    with pytest.raises(IntegrityError):
        with any_database.transaction() as session:
            world(session).account("aLICE")
    with any_database.transaction() as session:
        world(session, "qm").account("ALICE")  # another portal: allowed
    with any_database.transaction() as session:
        rows = session.execute(select(Account.portal_id, Account.username).order_by(Account.id)).all()
    assert [tuple(r) for r in rows] == [("ahcccs", "Alice"), ("qm", "ALICE")]


def test_one_membership_per_account_and_organization(any_database):
    with any_database.transaction() as session:
        w = world(session)
        w.account("alice", memberships={"ORG1": {}})
    with pytest.raises(IntegrityError):
        with any_database.transaction() as session:
            w = world(session)
            alice = facts.find_account(session, "ahcccs", "alice")
            w.organizations["ORG1"] = facts.find_organization(session, "ahcccs", "ORG1")
            w.member(alice, "ORG1", role="admin")
    assert count(any_database, Membership) == 1


def test_one_grant_per_membership_and_permission(any_database):
    with any_database.transaction() as session:
        link = world(session).account("alice", memberships={"ORG1": {"permissions": ["claims"]}}).memberships[0]
        link_id = link.id
    with pytest.raises(IntegrityError):
        with any_database.transaction() as session:
            session.add(Grant(membership_id=link_id, permission="eligibility", granted_at=NOW))
            session.flush()
            session.add(Grant(membership_id=link_id, permission="claims", granted_at=NOW))
    with any_database.transaction() as session:
        permissions = session.scalars(select(Grant.permission).where(Grant.membership_id == link_id)).all()
    assert permissions == ["claims"]  # the eligibility grant of the failed transaction is gone too


def test_a_violated_constraint_leaves_nothing_half_written(any_database):
    with any_database.transaction() as session:
        world(session).account("alice", memberships={"ORG1": {"role": "admin"}})
    before = {model: count(any_database, model) for model in (Organization, Account, Membership, Grant)}
    with pytest.raises(IntegrityError):
        with any_database.transaction() as session:
            w = world(session)
            w.account("bob", memberships={"ORG2": {"permissions": ["claims", "eligibility"]}})
            w.account("ALICE")  # duplicate username: the whole unit of work must roll back
    after = {model: count(any_database, model) for model in (Organization, Account, Membership, Grant)}
    assert after == before
    with any_database.transaction() as session:
        assert facts.find_account(session, "ahcccs", "bob") is None
        assert facts.find_organization(session, "ahcccs", "ORG2") is None


def test_an_exception_in_a_transaction_rolls_back(any_database):
    with pytest.raises(RuntimeError):
        with any_database.transaction() as session:
            world(session).account("alice", memberships={"ORG1": {}})
            raise RuntimeError("boom")
    assert count(any_database, Account) == 0
    assert count(any_database, Organization) == 0


# --- Time ------------------------------------------------------------------------------------


def test_timestamps_come_back_timezone_aware_utc(any_database):
    with any_database.transaction() as session:
        alice = world(session).account("alice", password_age_days=3)
        alice.last_login_at = NOW + timedelta(microseconds=123456)
    with any_database.transaction() as session:
        alice = facts.find_account(session, "ahcccs", "alice")
        values = {"created_at": alice.created_at, "password_changed_at": alice.password_changed_at,
                  "last_login_at": alice.last_login_at, "terms_accepted_at": alice.terms_accepted_at}
    for name, value in values.items():
        assert value.tzinfo is not None, name
        assert value.utcoffset() == timedelta(0), name
    assert values["created_at"] == NOW
    assert values["password_changed_at"] == NOW - timedelta(days=3)
    assert values["last_login_at"] == NOW + timedelta(microseconds=123456)


def test_other_zones_are_stored_and_read_as_utc(any_database):
    """A -07:00 instant is the same instant in UTC, even when the database session speaks another zone."""
    from datetime import timezone as tz

    from sqlalchemy import text

    phoenix = tz(timedelta(hours=-7))
    with any_database.transaction() as session:
        session.add(Organization(portal_id="ahcccs", key="ZONED", name="z",
                                 created_at=datetime(2026, 1, 5, 2, 0, tzinfo=phoenix)))
    with any_database.transaction() as session:
        if any_database.engine.dialect.name == "postgresql":
            session.execute(text("SET LOCAL TIME ZONE 'America/Phoenix'"))
        created = session.query(Organization).filter_by(key="ZONED").one().created_at
    assert created.utcoffset() == timedelta(0)
    assert created == datetime(2026, 1, 5, 9, 0, tzinfo=tz.utc)


def test_naive_datetimes_are_refused(any_database):
    with pytest.raises(Exception, match="naive datetime"):
        with any_database.transaction() as session:
            session.add(Organization(portal_id="ahcccs", key="ORG1", name="x", created_at=datetime(2026, 1, 5)))
    assert count(any_database, Organization) == 0


# --- Facts -----------------------------------------------------------------------------------


def _decider(session, profile, config) -> Decider:
    """The one fact path: the Decider and its one-statement loader, as /v1/authorize reads facts."""
    return Decider(session, profile, Policy(config.policy_path), "ahcccs", NOW)


def test_actor_facts_load_memberships_and_grants(any_database, config):
    profile = config.portal("ahcccs")
    with any_database.transaction() as session:
        w = world(session)
        w.account("alice", memberships={"ORG1": {"role": "admin"},
                                        "ORG2": {"permissions": ["eligibility", "claims"]},
                                        "ORG3": {"status": "removed", "permissions": ["claims"]}})
        w.account("old", password_age_days=46, status="locked", support=True)
    with any_database.transaction() as session:
        decider = _decider(session, profile, config)
        alice, old, nobody = decider.actor("ALICE "), decider.actor("old"), decider.actor("nobody")
    assert (alice.username, alice.exists, alice.status, alice.password_current, alice.support) == \
        ("alice", True, "active", True, False)
    assert sorted(alice.memberships, key=lambda m: m.organization) == [
        MembershipFacts("ORG1", "admin", True, ()),
        MembershipFacts("ORG2", "member", True, ("claims", "eligibility")),
        MembershipFacts("ORG3", "member", False, ("claims",)),
    ]
    assert (old.status, old.password_current, old.support, old.memberships) == ("locked", False, True, ())
    assert nobody == ActorFacts.unknown("nobody")


def test_organization_facts_count_only_active_memberships_of_active_accounts(any_database, config):
    profile = config.portal("ahcccs")
    with any_database.transaction() as session:
        w = world(session)
        w.organization("ORG1")
        w.organization("EMPTY")
        w.account("admin1", memberships={"ORG1": {"role": "admin"}})
        w.account("admin2", memberships={"ORG1": {"role": "admin"}})
        w.account("admin_locked", status="locked", memberships={"ORG1": {"role": "admin"}})
        w.account("admin_removed", memberships={"ORG1": {"role": "admin", "status": "removed"}})
        w.account("member1", memberships={"ORG1": {}, "ORG2": {"role": "admin"}})
        w.account("member_disabled", status="disabled", memberships={"ORG1": {}})
        w.account("member_pending", status="pending_activation", memberships={"ORG1": {}})
        w.account("member_removed", memberships={"ORG1": {"status": "removed"}})
        w.account("elsewhere", memberships={"ORG2": {}})
    with any_database.transaction() as session:
        decider = _decider(session, profile, config)
        org1, empty, org2 = decider.organization("ORG1"), decider.organization("EMPTY"), decider.organization("ORG2")
    assert (org1.key, org1.active_admins, org1.has_active_members) == ("ORG1", 2, True)
    assert (empty.active_admins, empty.has_active_members) == (0, False)
    assert (org2.active_admins, org2.has_active_members) == (1, True)
    assert org1.catalog == profile.catalog == ("claims", "prior_authorizations", "eligibility")
    assert org1.delegate_permission is None


def test_target_facts_read_a_removed_link_as_removed(any_database, config):
    profile = config.portal("ahcccs")
    with any_database.transaction() as session:
        world(session).account("bob", status="locked", memberships={"ORG1": {}, "ORG2": {"status": "removed"}})
    with any_database.transaction() as session:
        decider = _decider(session, profile, config)
        in_org1 = decider.resource(Question("grant", Resource("account", "bob", "ORG1"), {"permission": "claims"}))
        in_org2 = decider.resource(Question("view", Resource("account", "bob", "ORG2")))
    assert (in_org1.username, in_org1.role, in_org1.status, in_org1.permission) == ("bob", "member", "locked", "claims")
    assert in_org1.organization.key == "ORG1"
    assert (in_org2.status, in_org2.permission) == ("removed", None)
    # The reach of an account-wide change: the active links only, whichever organization was named.
    assert [link.organization.key for link in in_org1.links] == ["ORG1"] == [
        link.organization.key for link in in_org2.links]


def test_deleting_an_organization_cascades_to_its_links(any_database):
    with any_database.transaction() as session:
        world(session).account("alice", memberships={"ORG1": {"permissions": ["claims"]}, "ORG2": {}})
    with any_database.transaction() as session:
        session.execute(delete(Organization).where(Organization.key == "ORG1"))
    assert count(any_database, Membership) == 1
    assert count(any_database, Grant) == 0
    assert count(any_database, Account) == 1
