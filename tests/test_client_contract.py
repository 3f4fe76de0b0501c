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
    changed += sorted(
        name for name in set(published["components"]["schemas"]) | set(snapshot["components"]["schemas"])
        if published["components"]["schemas"].get(name) != snapshot["components"]["schemas"].get(name))
    assert published == snapshot, (
        "the service's /openapi.json changed since clients/openapi.json was made: run clients/generate, then "
        f"make the Python models follow (tests/test_client_contract.py). Parts, paths and schemas that differ: {changed}")


def test_the_client_version_follows_the_api_version(client_venv):
    document = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    version = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())["project"]["version"]
    majors, installed = client_venv.run("import portal_authz_client as p; out([list(p.API_MAJORS), p.__version__])",
                                        url="http://127.0.0.1:9")
    api_major = int(document["info"]["version"].split(".")[0])
    assert installed == version
    assert int(version.split(".")[0]) == api_major and api_major in majors


def test_each_python_model_matches_the_schemas_it_is_written_against(client_venv):
    schemas = json.loads(SNAPSHOT.read_text(encoding="utf-8"))["components"]["schemas"]
    models = client_venv.run("""
import dataclasses
from portal_authz_client.models import MODELS
out({m.__name__: {"schemas": list(m.SCHEMA), "fields": [f.name for f in dataclasses.fields(m)],
                  "ignored": sorted(m.IGNORED), "local": list(getattr(m, "LOCAL", ()))} for m in MODELS})
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
