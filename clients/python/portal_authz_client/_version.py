"""The client's version follows the API's: a client 1.x speaks the API whose `/openapi.json` says
`info.version` 1 (or 1.x); it refuses any other major version with a clear message."""
__version__ = "1.0.0"
API_MAJORS = (1,)
