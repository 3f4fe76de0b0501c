@ahw
Feature: Arkansas Health & Wellness Secure Portal: Account Manager, what you need to know
  The Account Manager is responsible for day-to-day support of all Secure
  Portal user accounts that are registered under the same Tax Identification
  Number (TIN). (seed 002)

  Background:
    Given the portal is the "Arkansas Health & Wellness Secure Portal"
    And the practice with TIN "TIN-1" is enrolled

  @R12
  Scenario: Arkansas Health & Wellness is responsible for verifying and setting up the original user/registrant for your TIN
    When "uma" registers with "TIN-1"
    Then "uma" is registered as a User, awaiting approval
    And "TIN-1" has no Account Manager
    When Arkansas Health & Wellness sets up "kim" as the Account Manager of "TIN-1"
    Then "TIN-1" lists the Account Managers "kim"
    And "kim" can sign in

  @R6 @R12
  Scenario: A user ID is never handed over: setting up an Account Manager under a user ID someone already holds is refused
    Given the practice with TIN "TIN-2" is enrolled
    And "jsmith" is the Account Manager of "TIN-2"
    When Arkansas Health & Wellness sets up "john" as the Account Manager of "TIN-1" under the user ID of "jsmith"
    Then the request is refused with "username_taken"
    When Arkansas Health & Wellness sets up "john" as the Account Manager of "TIN-1" under a look-alike of the user ID of "jsmith"
    Then the request is refused with "username_taken"
    And "TIN-1" has no Account Manager
    And "jsmith" asking to use "Health Records" for "TIN-1" gets "not_member"

  @R12 @R5
  Scenario: Enabling users, and the email to verify user accounts
    Given "kim" is the Account Manager of "TIN-1"
    When "uma" registers with "TIN-1"
    Then "kim" is emailed that the account of "uma" awaits approval
    When "kim" clicks "Enable User" for "uma"
    Then the account "uma" has the status "unverified"
    And "uma" cannot sign in
    When "kim" clicks "Send Registration Email" for "uma"
    And "uma" completes the registration with the code from the email
    Then the account "uma" has the status "active"
    And "uma" can sign in

  @R12
  Scenario: The user completes the registration only with the code from the registration email
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" has registered with "TIN-1"
    And "kim" has clicked "Enable User" for "uma"
    And "kim" has clicked "Send Registration Email" for "uma"
    When "uma" completes the registration with the code "NOT-THE-CODE"
    Then the request is refused with "activation_code_invalid"
    And the account "uma" has the status "unverified"

  @R5 @R3
  Scenario: If a user leaves the practice the Account Manager will click Disable User
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    When "support staff" clicks "Disable User" for "kim"
    Then the change is refused because of "last_admin"
    When "kim" clicks "Disable User" for "uma"
    Then the account "uma" has the status "disabled"
    When "uma" signs in
    Then the sign-in is refused as "account_disabled"

  @R14 @R16 @R23
  Scenario: A request for access approved while the user is disabled grants nothing until the Account Manager clicks Enable User
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    When "uma" asks for access to "Claims" for "TIN-1"
    And "kim" clicks "Disable User" for "uma"
    And "kim" approves the access request of "uma"
    Then the approval is held back as "target_status" and the request left open
    When "kim" clicks "Enable User" for "uma"
    Then "uma" asking to use "Claims" for "TIN-1" gets "permission_not_granted"
    When "kim" approves the access request of "uma"
    Then the change is accepted
    And "uma" asking to use "Claims" for "TIN-1" gets "allowed"

  @R23
  Scenario: User accounts are disabled after 90 days of inactivity. Account Managers can use this button to re-enable these users.
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    And "uma" signs in on day 0
    And "kim" signs in on day 89
    When the nightly sweep runs on day 89
    Then the account "uma" has the status "active"
    When the nightly sweep runs on day 90
    Then the account "uma" has the status "disabled"
    And the account "kim" has the status "active"
    When "kim" clicks "Enable User" for "uma"
    Then the account "uma" has the status "active"
    And "uma" can sign in

  @R5 @R20
  Scenario: If a user has forgotten their password, the account manager can click Send Password Reset Email
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    When "kim" clicks "Send Password Reset Email" for "uma"
    Then an email with a security code and a URL is sent to "uma"
    And no email carries the activation code

  @R14 @R16
  Scenario Outline: Selecting/modifying access levels for users
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    When "kim" sets the access of "uma" to "<can access>"
    Then the change is <outcome>
    And "uma" asking to use "<function>" for "TIN-1" gets "<answer>"

    Examples:
      | can access                      | outcome                                 | function        | answer                 |
      | Health Records                  | accepted                                | Health Records  | allowed                |
      | Claims                          | accepted                                | Claims          | allowed                |
      | Eligibility                     | accepted                                | Eligibility     | allowed                |
      | Health Passport                 | accepted                                | Health Passport | allowed                |
      | Assessments                     | accepted                                | Assessments     | allowed                |
      | Authorizations                  | accepted                                | Authorizations  | allowed                |
      | Claims                          | accepted                                | Eligibility     | permission_not_granted |
      | nothing                         | accepted                                | Claims          | permission_not_granted |
      | Dental Records                  | refused because of "permission_unknown" | Dental Records  | permission_unknown     |

  @R16 @R14
  Scenario: A calling service asks through OpenID AuthZEN and gets the answer /v1 gives
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    When "kim" sets the access of "uma" to "Claims"
    Then "uma" asking to use "Claims" for "TIN-1" through AuthZEN gets "allowed"
    And "uma" asking to use "Eligibility" for "TIN-1" through AuthZEN gets "permission_not_granted"
    And AuthZEN finds "kim, uma" among those who may use "Claims" for "TIN-1"

  @R15 @R14
  Scenario Outline: Manage Account: Enable, disable, modify permissions for a specific TIN, and invite users to set up an account
    Given "kim" is the Account Manager of "TIN-1"
    And "dee" is an active User of "TIN-1"
    And "kim" has set the access of "dee" to "Manage Account, Claims"
    And "uma" is an active User of "TIN-1"
    When "dee" sets the access of "uma" to "<can access>"
    Then the change is <outcome>

    Examples: a user with Manage Account cannot grant what it does not hold
      | can access          | outcome                                  |
      | Claims              | accepted                                 |
      | Claims, Eligibility | refused because of "permission_not_held" |
      | Health Records      | refused because of "permission_not_held" |

  @R15 @R2
  Scenario: A user with Manage Account administers the users but cannot make anyone an Account Manager
    Given "kim" is the Account Manager of "TIN-1"
    And "dee" is an active User of "TIN-1"
    And "kim" has set the access of "dee" to "Manage Account"
    And "ann" is an active User of "TIN-1"
    And "uma" has registered with "TIN-1"
    When "dee" clicks "Enable User" for "uma"
    Then the account "uma" has the status "unverified"
    When "dee" clicks "Upgrade to Master Account" for "ann"
    Then the change is refused because of "cannot_make_admin"
    And "ann" is not a master account holder of "TIN-1"
    When "dee" clicks "Disable User" for "kim"
    Then the change is refused because of "not_admin"

  @R24
  Scenario: Search for a specific user by entering their name and email address, or view a list of all users in your practice
    Given "kim" is the Account Manager of "TIN-1"
    And "ann" is an active User of "TIN-1"
    And "bea" has registered with "TIN-1"
    And "cal" has registered with "TIN-1"
    When "kim" views the list of all users in "TIN-1"
    Then the list shows "ann, bea, cal, kim"
    When "kim" searches the users of "TIN-1" for the name "Bea"
    Then the list shows "bea"
    When "kim" searches the users of "TIN-1" for the email of "cal"
    Then the list shows "cal"
    When "kim" selects the "Verification Pending" box for "TIN-1"
    Then the list shows "bea, cal"
    When "ann" views the list of all users in "TIN-1"
    Then the list shows "ann"

  @R25
  Scenario Outline: Comments History: the text is kept exactly as written and never run as markup
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    When "kim" clicks "Disable User" for "uma" with the comment "<comment>"
    Then the change is accepted
    And the comments history of "uma" shows "kim" did "disable" with exactly the text "<comment>"

    Examples: the payloads of the source document's own Comments History
      | comment                         |
      | <script>alert(1)</script>       |
      | ;alert(1)//                     |
      | </xmp><script>alert(1)</script> |
      | Update User Roles               |

  @R25
  Scenario Outline: Comments: 200 characters left
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    When "kim" clicks "Disable User" for "uma" with a comment of <length> characters
    Then the comment answers "<answer>"

    Examples:
      | length | answer    |
      | 200    | accepted  |
      | 201    | too_long  |

  @R26
  Scenario: Update User status and permissions shows the Last Login Time
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    And 3 days have passed
    When "uma" signs in
    Then the account of "uma" shows the status "active" and the last sign-in time as now

  @R15
  Scenario: A user with Manage Account never gains Health Records by taking over the account of a user who has it
    Given "kim" is the Account Manager of "TIN-1"
    And "dee" is an active User of "TIN-1"
    And "kim" has set the access of "dee" to "Manage Account, Claims"
    And "hal" is an active User of "TIN-1"
    And "kim" has set the access of "hal" to "Health Records"
    When "dee" changes the email of "hal" to "dee.inbox@example.org"
    Then the change is refused because of "permission_not_held"
    And the email of "hal" is still its own
    When "dee" clicks "Send Password Reset Email" for "hal"
    Then the change is refused because of "permission_not_held"
    And no email with a security code is sent to "dee.inbox@example.org"
    And "dee" asking to use "Health Records" for "TIN-1" gets "permission_not_granted"

  @R15 @R20
  Scenario: A security code a user with Manage Account sent is decided again when it is used
    Given "kim" is the Account Manager of "TIN-1"
    And "dee" is an active User of "TIN-1"
    And "kim" has set the access of "dee" to "Manage Account, Claims"
    And "cleo" is an active User of "TIN-1"
    And "kim" has set the access of "cleo" to "Claims"
    When "dee" changes the email of "cleo" to "dee.inbox@example.org"
    Then the change is accepted
    When "dee" clicks "Send Password Reset Email" for "cleo"
    Then the change is accepted
    When "kim" sets the access of "cleo" to "Claims, Health Records"
    And "dee" enters the security code sent to "dee.inbox@example.org" for "cleo" with the new password "Dee#Owns#Cleo1"
    Then the recovery answers "recovery_invalid"
    And "dee" asking to use "Health Records" for "TIN-1" gets "permission_not_granted"

  @R3 @R4 @R23
  Scenario: When the 90-day inactivity rule disables the only Account Manager, support staff are told that day
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    And "uma" signs in on day 85
    And portal support staff are on duty
    When the nightly sweep runs on day 90
    Then the account "kim" has the status "disabled"
    And the account "uma" has the status "active"
    And support staff are emailed that "TIN-1" has no Account Manager

  @R26 @R19
  Scenario: Update User status and permissions shows Status: Locked
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    And "uma" signs in on day 0
    When "uma" signs in with a wrong password 3 times, 1 minute apart
    Then "kim" sees the status "locked" and the last sign-in time of day 0 for "uma"
    When "kim" clicks "Unlock" for "uma"
    Then "uma" can sign in

  @R1
  Scenario: Account Managers manage the users registered under the same TIN only
    Given "kim" is the Account Manager of "TIN-1"
    And the practice with TIN "TIN-2" is enrolled
    And "lou" is the Account Manager of "TIN-2"
    And "vic" is an active User of "TIN-2"
    When "kim" clicks "Disable User" for "vic"
    Then the change is refused because of "not_member"
    When "kim" views the account of "vic"
    Then the change is refused because of "not_member"

  @console @R25
  Scenario Outline: At the console, the Comments History shows the text exactly as written and runs nothing
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    When "kim" clicks "Disable User" for "uma" with the comment "<comment>"
    Then the change is accepted
    And the comments history of "uma" shows "kim" did "disable" with exactly the text "<comment>"

    Examples: the payloads of the source document's own Comments History
      | comment                         |
      | <script>alert(1)</script>       |
      | ;alert(1)//                     |
      | </xmp><script>alert(1)</script> |

  @R15 @R16
  Scenario: Please contact your Account Manager, or a User with Manage Account, for access to a function
    Given "kim" is the Account Manager of "TIN-1"
    And "uma" is an active User of "TIN-1"
    And "kim" has set the access of "uma" to "Manage Account, Claims"
    And "ulf" is an active User of "TIN-1"
    Then "ulf" asking to use "Claims" for "TIN-1" is told to contact "uma, kim"
    And "ulf" asking to use "Eligibility" for "TIN-1" is told to contact "kim"
