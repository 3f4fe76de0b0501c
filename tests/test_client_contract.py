"""The clients are built from one snapshot of the service's /openapi.json (clients/openapi.json): it must be
the document the service publishes now, and every Python model must match the schemas it names. When the
service's document changes, these fail until `clients/generate` is run and the models follow."""
from __future__ import annotations

import json
import tomllib

from tests.fixtures.clients import CLIENT_DIR
from tests.fixtures.servers import ROOT

SNAPSHOT = ROOT / "clients" / "openapi.json"


def test_the_clients_are_built_from_the_document_the_service_publishes(app):
    published = json.loads(json.dumps(app.api_doc))
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    changed = sorted(key for key in set(published) | set(snapshot)
                     if key not in ("paths", "components") and published.get(key) != snapshot.get(key))
    changed += sorted(path for path in set(published["paths"]) | set(snapshot["paths"])
                      if published["paths"].get(path) != snapshot["paths"].get(path))
    for part in sorted(set(published["components"]) | set(snapshot["components"])):  # schemas, responses, ...
        now, then = published["components"].get(part, {}), snapshot["components"].get(part, {})
        changed += sorted(f"{part}/{name}" for name in set(now) | set(then) if now.get(name) != then.get(name))
    assert published == snapshot, (
        "the service's /openapi.json changed since clients/openapi.json was made: run clients/generate, then "
        f"make the Python models follow (tests/test_client_contract.py). Parts, paths and components that differ: "
        f"{changed}")


def test_the_client_version_follows_the_api_version(client_venv):
    document = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    version = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())["project"]["version"]
    majors, installed = client_venv.run("import portal_authz_client as p; out([list(p.API_MAJORS), p.__version__])",
                                        url="http://127.0.0.1:9")
    api_major = int(document["info"]["version"].split(".")[0])
    assert installed == version
    assert int(version.split(".")[0]) == api_major and api_major in majors


def test_each_python_model_matches_the_schemas_it_is_written_against(client_venv):
    """The models' fields are the schemas' properties, and each field's type (which is how the model reads it)
    is the property's: the JSON type, whether it may be null, what a list holds, which schema an object is."""
    schemas = json.loads(SNAPSHOT.read_text(encoding="utf-8"))["components"]["schemas"]
    models = client_venv.run("""
import dataclasses, types, typing
from portal_authz_client import models

def kind(hint, always):
    nullable = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if nullable:
        (hint,) = [k for k in typing.get_args(hint) if k is not type(None)]
    nullable = nullable and not always
    if typing.get_origin(hint) in (tuple, frozenset):
        return {"type": "array", "nullable": nullable, "items": kind(typing.get_args(hint)[0], False)}
    if isinstance(hint, type) and issubclass(hint, models._Model):
        return {"schemas": list(hint.SCHEMA), "nullable": nullable}
    hint = typing.get_origin(hint) or hint
    return {"type": {str: "string", int: "integer", bool: "boolean"}.get(hint, "object"), "nullable": nullable}

out({m.__name__: {"schemas": list(m.SCHEMA), "fields": [f.name for f in dataclasses.fields(m)],
                  "ignored": sorted(m.IGNORED), "local": list(getattr(m, "LOCAL", ())),
                  "kinds": {f.name: kind(typing.get_type_hints(m)[f.name], f.metadata.get("answered", False))
                            for f in dataclasses.fields(m) if f.name not in m.LOCAL}}
    for m in models.MODELS})
""", url="http://127.0.0.1:9")
    assert models, "no models"
    for name, model in models.items():
        fields, ignored, local = set(model["fields"]), set(model["ignored"]), set(model["local"])
        documented: set[str] = set()
        for schema in model["schemas"]:
            assert schema in schemas, f"{name}: schema {schema} is not in the document"
            properties = set(schemas[schema]["properties"])
            documented |= properties
            assert properties <= fields | ignored, (
                f"{name} does not read {sorted(properties - fields - ignored)} of {schema}: add the fields, "
                "or list them in IGNORED with the reason")
        assert fields - local <= documented, f"{name} reads {sorted(fields - local - documented)}, not in the document"
        assert not ignored & fields and not local & documented, name
        for schema in model["schemas"]:
            for field, kind in model["kinds"].items():
                if field in schemas[schema]["properties"]:
                    documented_kind = property_kind(schemas[schema]["properties"][field],
                                                    field in schemas[schema].get("required", ()))
                    assert agrees(kind, documented_kind), f"{name}.{field} is {kind}; {schema} says {documented_kind}"


def property_kind(schema: dict, required: bool = True) -> dict:
    """What a model's field must be to read this property: its JSON type (or schema), nullable, its items."""
    nullable = not required
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option != {"type": "null"}]
        nullable = nullable or len(options) < len(schema["anyOf"])
        (schema,) = options
    if "$ref" in schema:
        return {"schema": schema["$ref"].rpartition("/")[2], "nullable": nullable}
    if schema["type"] == "array":
        return {"type": "array", "nullable": nullable, "items": property_kind(schema["items"])}
    return {"type": schema["type"], "nullable": nullable}


def agrees(kind: dict, documented: dict) -> bool:
    if kind["nullable"] != documented["nullable"]:
        return False
    if "schema" in documented:
        return documented["schema"] in kind.get("schemas", ())
    return kind.get("type") == documented["type"] and (
        kind["type"] != "array" or agrees(kind["items"], documented["items"]))


def test_a_model_refuses_an_answer_its_fields_do_not_describe(client_venv):
    """Reading follows each field's type: a list item, a null or a nested object of the wrong kind is refused."""
    answers = client_venv.run("""
from portal_authz_client.models import Account, Actions, Decision
account = {"username": "u", "first_name": "F", "last_name": "L", "email": "u@example.org", "phone": None,
           "status": "active", "support": False, "last_login_at": None, "password_expires_at": None,
           "memberships": [{"organization": "O", "role": "member", "status": "active", "permissions": ["claims"]}]}
decision = {"allowed": True, "reasons": [], "policy_version": "v1"}
wrong = {
    "a permission that is not a string": (Account, {**account, "memberships": [
        {**account["memberships"][0], "permissions": [7]}]}),
    "a membership that is not an object": (Account, {**account, "memberships": ["O"]}),
    "a null that is not nullable": (Account, {**account, "email": None}),
    "a decision without its policy version": (Decision, {**decision, "policy_version": None}),
    "an error that is not an object": (Decision, {**decision, "error": "not_found"}),
    "an action that is not a string": (Actions, {"actions": ["view", 1], "policy_version": "v1"}),
    "an integer for a boolean": (Decision, {**decision, "allowed": 1}),
}
refused = {}
for what, (model, data) in wrong.items():
    try:
        model.from_json(data)
        refused[what] = None
    except UnexpectedResponse as exc:
        refused[what] = str(exc)
out({"refused": refused, "read": repr(Account.from_json(account).memberships[0].permissions)})
""", url="http://127.0.0.1:9")
    assert all(answers["refused"].values()), [what for what, message in answers["refused"].items() if not message]
    assert answers["refused"]["a permission that is not a string"] == (
        "Account.memberships[0]: `permissions` holds an item that is not a string")
    assert answers["read"] == "('claims',)"
