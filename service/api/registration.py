"""Registration and activation (scope `manage`): self-registration (R6-R9, R11, R12), a master's activation
with the letter's code (R10), completing registration with the emailed code, and support staff's reissue
of an activation letter."""
from __future__ import annotations

from flask import jsonify

from service.api.changes import CHANGE, account_view, acting, answer, transaction
from service.api.declare import Routes
from service.api.schemas import (ActivationBody, ActivationCodeBody, ActivationCodeQueued, AccountView, ConfirmBody,
                                 OrgPath, PortalPath, RegistrationBody, RegistrationResult)
from service.domain import administration, registration
from service.domain.decisions import Question, Resource

bp = Routes("registration", __name__, url_prefix="/v1/portals/<portal>", tag="accounts")

# Links let a client (and schemathesis's stateful phase) chain calls: the registered username
# feeds the account reads.
REGISTERED = {"GetRegisteredAccount": {"operationId": "getAccount", "parameters": {
    "portal": "$request.path.portal", "username": "$response.body#/username"}}}


# --- Registration and activation --------------------------------------------------------------

@bp.post("/registrations", operation_id="register", summary="Self-registration (R6-R9, R11, R12)", scope="manage",
         ok=(201, RegistrationResult), problems=(403, 409), links=REGISTERED)
def register(path: PortalPath, body: RegistrationBody):
    portal = path.portal
    registrant = registration.Registrant(
        **body.model_dump(exclude={"security_questions"}),
        security_questions=[(q.question, q.answer) for q in body.security_questions])

    def work(ctx):
        account, role, admins = registration.register(ctx.session, ctx.profile, portal, registrant, ctx.notifier,
                                                      ctx.now, ctx.client)
        return {"username": account.username, "organization": body.organization, "role": role,
                "status": account.status,
                "admins": [{"name": f"{a.first_name} {a.last_name}", "email": a.email, "phone": a.phone}
                           for a in admins if a.id != account.id]}

    return jsonify(transaction(portal, work, ahead=lambda ctx: registration.register_ahead(ctx, registrant))), 201


@bp.post("/activations", operation_id="activate", summary="Activate a master with the letter's code (R10)",
         scope="manage", ok=(200, AccountView), problems=(409,))
def activate(path: PortalPath, body: ActivationBody):
    portal = path.portal
    view = transaction(portal, lambda ctx: account_view(
        registration.activate(ctx.session, ctx.profile, portal, now=ctx.now, **body.model_dump()), ctx.profile,
        None),  # the account's own answer, proven by its code: every membership
        ahead=lambda ctx: registration.activate_ahead(ctx, **body.model_dump()))
    return jsonify(view)


@bp.post("/registrations/confirm", operation_id="confirmRegistration",
         summary="Complete registration with the emailed code (R12)", scope="manage", ok=(200, AccountView),
         problems=(409,))
def confirm(path: PortalPath, body: ConfirmBody):
    portal = path.portal
    view = transaction(portal, lambda ctx: account_view(
        registration.confirm_registration(ctx.session, portal, now=ctx.now, **body.model_dump()), ctx.profile,
        None),  # the account's own answer, proven by its code: every membership
        ahead=lambda ctx: registration.confirm_registration_ahead(ctx, **body.model_dump()))
    return jsonify(view)


@bp.post("/organizations/<org>/activation-codes", operation_id="reissueActivationCode",
         summary="Support staff: a new activation letter for an expired code (R10)", scope="manage",
         session="required", ok=(201, ActivationCodeQueued), problems=CHANGE)
def reissue_activation_code(path: OrgPath, body: ActivationCodeBody):
    """R10: support staff only, for an expired code; decided by the policy (`issue_activation_code`)."""
    portal, org = path.portal, path.org

    def work(ctx):
        actor = acting(ctx)
        decision = ctx.decider().decide(
            actor.username, Question("issue_activation_code", Resource("organization", org)))
        if not decision.allowed:
            return administration.record_denial(ctx, actor.username, "issue_activation_code", body.username, org,
                                                decision, None)
        registration.reissue_activation_code(ctx.session, ctx.profile, portal, org, body.username, ctx.notifier,
                                             ctx.now)
        outcome = administration.Outcome(decision)
        outcome.view = {"username": body.username, "organization": org, "letter": "queued"}
        return outcome

    outcome = transaction(portal, work)
    return answer(outcome) if not outcome.decision.allowed else (jsonify(outcome.view), 201)


