@masshealth
Feature: MassHealth Provider Online Service Center: Job Aid, Update Accounts
  The Primary User is responsible for managing access to their organization's
  information on the MMIS Provider Online Service Center (POSC). (seed 004)

  Background:
    Given the portal is the "MassHealth Provider Online Service Center"
    And the provider "PIDSL-1" is enrolled
    And "mhughes" is the Primary User of "PIDSL-1"

  @R13
  Scenario: Only the Primary User can create subordinate accounts for staff members and assign access
    When "mhughes" creates the subordinate "jdoe11" for "PIDSL-1" with the services "Claims Submission and Status, Manage Member Eligibility"
    Then the change is accepted
    And "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-1" gets "allowed"
    And "jdoe11" asking to use "Manage Referrals" for "PIDSL-1" gets "permission_not_granted"
    When "kdoe" registers with "PIDSL-1"
    Then the request is refused with "self_registration_closed"
    When "jdoe11" creates the subordinate "ldoe" for "PIDSL-1" with the services "nothing"
    Then the change is refused because of "not_admin"

  @R13 @R1 @R14
  Scenario: Support staff create a subordinate account with services, as they may grant those services a moment later
    When "support staff" creates the subordinate "jdoe11" for "PIDSL-1" with the services "Claims Submission and Status"
    Then the change is accepted
    When "support staff" moves the services of "jdoe11" so that the Assigned Services are "Claims Submission and Status, Manage Member Eligibility"
    Then the change is accepted

  @R16 @R18 @R7
  Scenario: A subordinate sets its own password and agrees with the VG Terms and Conditions upon initial sign-in
    When "mhughes" creates the subordinate "jdoe11" for "PIDSL-1" with the services "Claims Submission and Status"
    Then the change is accepted
    And "jdoe11" is refused at sign-in with the password "mhughes" chose, because of "password_expired"
    And "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-1" before signing in gets "password_expired"
    When "jdoe11" replaces the password "mhughes" chose with one of their own
    Then "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-1" gets "terms_not_accepted"
    And "jdoe11" is refused at sign-in without agreeing with the VG Terms and Conditions
    And "jdoe11" signs in agreeing with the VG Terms and Conditions
    And "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-1" gets "allowed"
    And the password "mhughes" chose for "jdoe11" no longer works

  @R14 @R16 @R5
  Scenario Outline: Change services assigned to the subordinate account
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "View Provider Reports, Manage Provider Profile Information"
    When "mhughes" moves the services of "jdoe11" so that the Assigned Services are "<assigned services>"
    Then the change is <outcome>
    And "jdoe11" asking to use "<service>" for "PIDSL-1" gets "<answer>"

    Examples:
      | assigned services                             | outcome                                 | service                      | answer                 |
      | View Provider Reports, Batch File Submission  | accepted                                | Batch File Submission        | allowed                |
      | View Provider Reports, Batch File Submission  | accepted                                | Manage Provider Profile Information | permission_not_granted |
      | Claims Submission and Status                  | accepted                                | Claims Submission and Status | allowed                |
      | nothing                                       | accepted                                | View Provider Reports        | permission_not_granted |
      | Cancel Service                                | refused because of "permission_unknown" | Cancel Service               | permission_unknown     |

  @R5 @R20
  Scenario: Reset a Subordinate Account Password
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "nothing"
    When "mhughes" clicks "Reset Password" for "jdoe11"
    Then the change is accepted
    And an email with a security code and a URL is sent to "jdoe11"

  @R13 @R1
  Scenario: The Primary User can also provide access to other providers and billing entities by linking user accounts
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "Claims Submission and Status"
    And the provider "PIDSL-2" is enrolled
    And "pat" is the Primary User of "PIDSL-2"
    Then "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-2" gets "not_member"
    When "pat" links the account of "jdoe11" to "PIDSL-2"
    And "pat" moves the services of "jdoe11" at "PIDSL-2" so that the Assigned Services are "Claims Submission and Status"
    Then "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-2" gets "allowed"
    When "pat" clicks "Remove" for "jdoe11" at "PIDSL-1"
    Then the change is refused because of "not_member"

  @R13
  Scenario: Remove a Subordinate Account from a Provider
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "Claims Submission and Status"
    And the provider "PIDSL-2" is enrolled
    And "pat" is the Primary User of "PIDSL-2"
    And "pat" has linked the account of "jdoe11" to "PIDSL-2"
    When "pat" clicks "Remove" for "jdoe11" at "PIDSL-2"
    Then the account "jdoe11" has the status "active"
    And "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-1" gets "allowed"
    And "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-2" gets "not_member"
    When "mhughes" clicks "Remove" for "jdoe11" at "PIDSL-1"
    Then the account "jdoe11" has the status "removed"
    And "jdoe11" cannot sign in

  @R15
  Scenario Outline: A subordinate assigned Manage Subordinate Accounts manages subordinates with the services it holds
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "Manage Subordinate Accounts, Manage Referrals"
    When "jdoe11" creates the subordinate "kdoe" for "PIDSL-1" with the services "<services>"
    Then the change is <outcome>

    Examples:
      | services                     | outcome                                  |
      | Manage Referrals             | accepted                                 |
      | nothing                      | accepted                                 |
      | Claims Submission and Status | refused because of "permission_not_held" |

  @R15 @R2
  Scenario: A subordinate with Manage Subordinate Accounts cannot make anyone a Primary User
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "Manage Subordinate Accounts"
    And "kdoe" is a subordinate of "PIDSL-1" assigned "nothing"
    When "jdoe11" clicks "Upgrade to Master Account" for "kdoe"
    Then the change is refused because of "cannot_make_admin"
    When "jdoe11" clicks "Remove" for "mhughes"
    Then the change is refused because of "not_admin"
    When "jdoe11" clicks "Reset Password" for "kdoe"
    Then the change is accepted

  @R3
  Scenario: The Primary User must ensure that a backup Primary User (administrator) is assigned
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "nothing"
    Then "PIDSL-1" is warned that it has a single Primary User
    When "support staff" clicks "Remove" for "mhughes"
    Then the change is refused because of "last_admin"
    When "support staff" clicks "Disable User" for "mhughes"
    Then the change is refused because of "last_admin"
    When "mhughes" clicks "Upgrade to Master Account" for "jdoe11"
    Then the change is refused because of "target_terms_not_accepted"
    When "jdoe11" replaces the password "mhughes" chose with one of their own
    Then "jdoe11" signs in agreeing with the VG Terms and Conditions
    When "mhughes" clicks "Upgrade to Master Account" for "jdoe11"
    Then the change is accepted
    And "PIDSL-1" has no warning
    When "jdoe11" clicks "Remove" for "mhughes"
    Then the account "mhughes" has the status "removed"

  @R6 @R7
  Scenario: Each person who requires access is assigned a unique user ID and agrees with the VG Terms and Conditions
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "nothing"
    When "mhughes" creates the subordinate "JDOE11" for "PIDSL-1" with the services "nothing"
    Then the request is refused with "username_taken"
    When the provider "PIDSL-3" is enrolled
    And MassHealth sets up "ppu" as the Primary User of "PIDSL-3" without agreeing to the terms
    Then the request is refused with "terms_not_accepted"

  @R27
  Scenario: Every subordinate account change is recorded
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "nothing"
    When "mhughes" moves the services of "jdoe11" so that the Assigned Services are "Manage Referrals"
    And "jdoe11" clicks "Remove" for "mhughes"
    Then the audit trail shows "mhughes" did "set_permissions" to "jdoe11" in "PIDSL-1" with the outcome "done"
    And the audit trail shows "jdoe11" did "remove" to "mhughes" in "PIDSL-1" with the outcome "denied"

  @R1 @R13
  Scenario: Linking a user account of another provider gives access to this provider only, never the account itself
    Given the provider "PIDSL-2" is enrolled
    And "pat" is the Primary User of "PIDSL-2"
    And "pat" has linked the account of "mhughes" to "PIDSL-2"
    When "pat" changes the email of "mhughes" to "pat.inbox@example.org" at "PIDSL-2"
    Then the change is refused because of "account_elsewhere"
    And the email of "mhughes" is still its own
    When "pat" clicks "Reset Password" for "mhughes" at "PIDSL-2"
    Then the change is refused because of "account_elsewhere"
    And no email with a security code is sent to "pat.inbox@example.org"
    When "pat" moves the services of "mhughes" at "PIDSL-2" so that the Assigned Services are "Claims Submission and Status"
    Then the change is accepted
    And "mhughes" asking to use "Claims Submission and Status" for "PIDSL-2" gets "allowed"
    When "pat" clicks "Remove" for "mhughes" at "PIDSL-2"
    Then the change is accepted
    And "mhughes" asking to use "Claims Submission and Status" for "PIDSL-2" gets "not_member"

  @console @R5 @R20 @R13 @R1
  Scenario: At the console, the Primary User resets a subordinate's password and removes it from the PID/SL
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "Claims Submission and Status"
    And the provider "PIDSL-2" is enrolled
    And "pat" is the Primary User of "PIDSL-2"
    When "mhughes" clicks "Reset Password" for "jdoe11" at "PIDSL-1"
    Then the change is accepted
    And an email with a security code and a URL is sent to "jdoe11"
    When "pat" links the account of "jdoe11" to "PIDSL-2"
    And "mhughes" clicks "Reset Password" for "jdoe11" at "PIDSL-1"
    Then the change is refused because of "account_elsewhere"
    When "pat" clicks "Remove" for "jdoe11" at "PIDSL-2"
    Then the change is accepted
    And "jdoe11" asking to use "Claims Submission and Status" for "PIDSL-2" gets "not_member"
    When "mhughes" clicks "Remove" for "jdoe11" at "PIDSL-1"
    Then the account "jdoe11" has the status "removed"
    And "jdoe11" cannot sign in

  @R13 @R15 @R16
  Scenario: The Primary User is responsible for managing access: a subordinate asks its Primary User for a service
    Given "jdoe11" is a subordinate of "PIDSL-1" assigned "Claims Submission and Status"
    Then "jdoe11" asking to use "Manage Referrals" for "PIDSL-1" is told to contact "mhughes"
    When "jdoe11" asks for access to "Manage Referrals" for "PIDSL-1"
    Then "mhughes" is emailed that "jdoe11" asks for access to "Manage Referrals"
    When "mhughes" approves the access request of "jdoe11"
    Then the change is accepted
    And "jdoe11" asking to use "Manage Referrals" for "PIDSL-1" gets "allowed"
