@ahcccs
Feature: Policy authoring: a rule change and the decisions it changes
  A policy author changes one rule of policies/portal.polar and, before it ships,
  `portal-authz policy diff` names every decision the change would change. Not a
  seed document: the portal's own words are in the five seed features.

  @R5
  Scenario: An author lets "unlock" apply to disabled accounts and policy diff names the decisions it changes
    Given the shipped policy as "main" and a copy of it as "draft"
    When the author adds the status "disabled" to the statuses "unlock" applies to in "draft"
    And the author runs policy diff from "main" to "draft"
    Then policy diff exits 1
    And every decision it names is an "unlock" of an account whose status is "disabled"
    And it names the decision table row "an admin cannot unlock a disabled account" in "account_administration.yaml"
    And its last line says how many decisions changed of how many evaluated

  @R5
  Scenario: An author rewords a comment and policy diff changes nothing
    Given the shipped policy as "main" and a copy of it as "draft"
    When the author rewords a comment of "draft"
    And the author runs policy diff from "main" to "draft"
    Then policy diff exits 0
    And its last line says "0 decisions changed"
