"""AuthZEN Authorization API 1.0 request and response bodies, beside the /v1 ones in schemas.py.

The spec requires receivers to ignore unknown fields, so these models ignore extras (the /v1 models
forbid them). Strings are strict: `"name": 123` is a 400, never coerced.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from service.api.schemas import Remedy
from service.domain.authzen import MAX_LIMIT

Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
Properties = Annotated[dict[str, Any], Field(default_factory=dict)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Subject(_In):
    type: Name = Field(description='"account"')
    id: Name = Field(description="the account's username")
    properties: Properties


class SearchedSubject(_In):
    type: Name = Field(description='"account"')
    id: Name | None = Field(default=None, description="ignored: this is what the search finds")
    properties: Properties


class Action(_In):
    name: Name = Field(description="an action of /v1/authorize: a portal function, view, approve, grant, ...")
    properties: Properties = Field(default_factory=dict,
                                   description='grant/revoke: {"permission": "<catalog function>"}')


class Resource(_In):
    type: Name = Field(description='"organization" or "account"')
    id: Name = Field(description="organization key or username")
    properties: Properties = Field(default_factory=dict,
                                   description='account: {"organization": "<key>"} when it belongs to several')


class SearchedResource(_In):
    type: Name = Field(description='"organization" or "account"')
    id: Name | None = Field(default=None, description="ignored: this is what the search finds")
    properties: Properties


class EvaluationRequest(_In):
    subject: Subject
    action: Action
    resource: Resource
    context: Properties = Field(default_factory=dict, description=(
        'grant/revoke: {"permission": ...}; {"remedies": true}: a denial also answers `context.remedies`'))


class EvaluationsOptions(_In):
    evaluations_semantic: Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"] = "execute_all"


class EvaluationsRequest(_In):
    """Top-level subject/action/resource/context are defaults; an item's own key replaces the default whole."""

    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: dict[str, Any] | None = None
    evaluations: list[dict[str, Any]] | None = Field(
        default=None, max_length=100,
        description="each {subject?, action?, resource?, context?}; absent or empty: one evaluation of the defaults")
    options: EvaluationsOptions = EvaluationsOptions()


class PageRequest(_In):
    token: Annotated[str, StringConstraints(strict=True, max_length=1000)] | None = None
    limit: StrictInt | None = Field(default=None, ge=1, le=MAX_LIMIT)
    properties: Properties


class SubjectSearchRequest(_In):
    subject: SearchedSubject
    action: Action
    resource: Resource
    context: Properties
    page: PageRequest | None = None


class ResourceSearchRequest(_In):
    subject: Subject
    action: Action
    resource: SearchedResource
    context: Properties
    page: PageRequest | None = None


class ActionSearchRequest(_In):
    subject: Subject
    resource: Resource
    context: Properties
    page: PageRequest | None = None


class Reason(BaseModel):
    code: str
    message: str


class DecisionContext(BaseModel):
    reasons: list[Reason] | None = Field(default=None, description="the /v1/authorize reasons: empty when allowed")
    policy_version: str | None = None
    error: dict[str, Any] | None = Field(default=None, description="an item's error: {status, code, message}")
    remedies: list[Remedy] | None = Field(default=None, description=(
        "only when the request's context says `\"remedies\": true`: what would allow a denial and who may make "
        "the change (as /v1/authorize's `remedies`)"))


class Decision(BaseModel):
    decision: bool
    context: DecisionContext


class EvaluationsResponse(BaseModel):
    evaluations: list[Decision]


class PageResponse(BaseModel):
    next_token: str = Field(description="empty at the end of the results")
    count: int


class Entity(BaseModel):
    type: str
    id: str
    properties: dict[str, Any] | None = None


class ActionEntity(BaseModel):
    name: str


class SearchResponse(BaseModel):
    page: PageResponse
    results: list[Entity]


class ActionSearchResponse(BaseModel):
    page: PageResponse
    results: list[ActionEntity]


class Metadata(BaseModel):
    policy_decision_point: str
    access_evaluation_endpoint: str
    access_evaluations_endpoint: str
    search_subject_endpoint: str
    search_resource_endpoint: str
    search_action_endpoint: str
