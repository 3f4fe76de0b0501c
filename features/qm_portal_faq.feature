@qm
Feature: AHCCCS QM Portal: Help and Support, Master Account Management
  Thank you for visiting QM Portal. A MASTER Account is the administrator for
  all accounts created under their Provider/HealthPlan ID. (seed 001)

  Background:
    Given the portal is the "AHCCCS QM Portal"
    And the "Provider" organization "QM-1" of the "Central" region is enrolled with its correspondence address on file

  @R5 @R1
  Scenario Outline: What is a master account?
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    And "ivy" is an active individual account of "QM-1"
    When "<who>" clicks "<button>" for "ivy"
    Then the change is <outcome>

    Examples: the master account administers the individual accounts; an individual account does not
      | who  | button                         | outcome                        |
      | mara | Remove User                    | accepted                       |
      | mara | Send Password Recover for User | accepted                       |
      | mara | Set as Master Account          | accepted                       |
      | ian  | Remove User                    | refused because of "not_admin" |
      | ian  | Send Password Recover for User | refused because of "not_admin" |
      | ian  | Set as Master Account          | refused because of "not_admin" |

  @R14 @R16
  Scenario Outline: What's the difference between a master and individual account?
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    When "mara" sets the access of "ian" to "<site privileges>"
    Then "ian" asking to use "<function>" for "QM-1" gets "<answer>"
    And "mara" asking to use "<function>" for "QM-1" gets "<master's answer>"

    Examples:
      | site privileges        | function                | answer                 | master's answer    |
      | IAD Submit             | IAD Submit              | allowed                | allowed            |
      | IAD Submit             | IAD Approve             | permission_not_granted | allowed            |
      | IAD-IRF Review, Waitlist | Waitlist              | allowed                | allowed            |
      | OIFA                   | Seclusion and Restraint | permission_not_granted | allowed            |
      | nothing                | Teleportation           | permission_unknown     | permission_unknown |

  @R2 @R5 @R8
  Scenario: I am a master account holder. How do I activate new individual accounts?
    Given "mara" is the active master account holder of "QM-1"
    And "ian" has registered with "QM-1"
    And "joy" has registered with "QM-1"
    When "mara" clicks "Approve User" for "ian"
    Then the account "ian" has the status "active"
    When "mara" clicks "Set as Master Account" for "joy"
    Then the change is refused because of "target_status"
    When "mara" clicks "Approve User" for "joy"
    And "mara" clicks "Set as Master Account" for "joy"
    Then "joy" is a master account holder of "QM-1"
    And "mara" is a master account holder of "QM-1"

  @R5
  Scenario: I am a master account holder. How do I remove an individual account?
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    When "mara" clicks "Remove User" for "ian"
    Then the account "ian" has the status "removed"
    When "ian" signs in
    Then the sign-in is refused as "account_removed"

  @R20 @R5
  Scenario Outline: I am a master account holder. How do I initiate the password recovery process for an individual account?
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    When "mara" clicks "Send Password Recover for User" for "ian"
    Then an email with a security code and a URL is sent to "ian"
    When <minutes> minutes pass
    And "ian" enters the security code from the email with the new password "Other#Pass2025y"
    Then the recovery answers "<answer>"

    Examples: The account holder will have 30 minutes from the time the email is sent
      | minutes | answer           |
      | 29      | completed        |
      | 31      | recovery_expired |

  @R20 @R17
  Scenario: I forgot my password.
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    When "ian" answers the security questions with "123 Oak St." and "Opal"
    Then the request is accepted for processing
    And an email with a security code and a URL is sent to "ian"
    When "ian" enters the security code from the email with the new password "Valid#Pass2024x"
    Then the password is refused for "reused_password"
    When "ian" enters the security code from the email with the new password "Other#Pass2025y"
    Then the recovery answers "completed"
    And "ian" can sign in with the password "Other#Pass2025y"

  @R20
  Scenario Outline: I can't retrieve my password.
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    When "ian" answers the security questions with "<first answer>" and "<second answer>"
    Then the recovery answers "<answer>"

    Examples: answers must be typed exactly as they were first typed
      | first answer | second answer | answer           |
      | 123 Oak St.  | Opal          | accepted         |
      | 123 Oak Street | Opal        | recovery_invalid |
      | 123 oak st.  | Opal          | recovery_invalid |
      | 123 Oak St.  | opal          | recovery_invalid |

  @R21
  Scenario: My email or other account information has changed. What do I do?
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    When "ian" changes the phone of "ian" to "602-555-9999"
    Then the change is accepted
    When "ian" changes the email of "ian" to "ian.new@example.org"
    Then the change is refused because of "self_action"
    When "mara" changes the email of "ian" to "ian.new@example.org"
    Then the change is accepted

  @R21 @R2
  Scenario: If you are the master account holder, you can contact another master account holder if one exists
    Given "mara" is the active master account holder of "QM-1"
    When "mara" changes the email of "mara" to "mara.new@example.org"
    Then the change is refused because of "self_action"
    When "support staff" changes the email of "mara" to "mara.new@example.org"
    Then the change is accepted
    Given "max" is an active master account holder of "QM-1"
    When "max" changes the email of "mara" to "mara.newer@example.org"
    Then the change is accepted

  @R19 @R20
  Scenario: Why has my account been locked? Three invalid login attempts
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    When "ian" signs in with a wrong password 3 times, 1 minute apart
    Then the account "ian" has the status "locked"
    When "ian" answers the security questions with "123 Oak St." and "Opal"
    And "ian" enters the security code from the email with the new password "Other#Pass2025y"
    Then the recovery answers "completed"
    And "ian" can sign in with the password "Other#Pass2025y"

  @R22
  Scenario: Why has my account been locked? No account activity in over 60 days
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    And "ian" signs in on day 0
    When the nightly sweep runs every day from day 54 to day 61
    Then "ian" was locked by the sweep on day 61
    And "ian" received an email notice on each of the 5 days before day 61
    When the nightly sweep runs again on day 61
    Then the sweep changes nothing and sends nothing twice

  @R22
  Scenario: Why has my account been deleted?
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    And "ian" signs in on day 0
    When the nightly sweep runs every day from day 114 to day 121
    Then "ian" was deleted by the sweep on day 121
    And "ian" received an email notice on each of the 5 days before day 121

  @R22
  Scenario: To prevent an account from being deleted, you must login to the site to reset the activity log
    Given "mara" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    And "ian" signs in on day 40
    When the nightly sweep runs on day 61
    Then the account "ian" has the status "active"
    When the nightly sweep runs on day 102
    Then the account "ian" has the status "locked"

  @R6 @R7
  Scenario: Why can't I share an account with co-workers?
    Given "mara" is the active master account holder of "QM-1"
    When "ian" registers with "QM-1" without accepting the terms of use
    Then the request is refused with "terms_not_accepted"
    When "ian" registers with "QM-1"
    Then the change is accepted
    When a co-worker registers with "QM-1" as "IAN" in capitals
    Then the request is refused with "username_taken"

  @R6
  Scenario: Why can't multiple account holders use the same email address?
    Given "mara" is the active master account holder of "QM-1"
    When "ian" registers with "QM-1" as "Ian Smith" with the email "frontdesk@clinic.example"
    Then the change is accepted
    When "joy" registers with "QM-1" as "Joy Jones" with the email "frontdesk@clinic.example"
    Then the request is refused with "email_taken"

  @R16 @R14 @R5
  Scenario: A MASTER Account is the administrator for all accounts, maintaining roles for each user: contact your master account holder
    Given "mara" is the active master account holder of "QM-1"
    And "mark" is the active master account holder of "QM-1"
    And "ian" is an active individual account of "QM-1"
    Then "ian" asking to use "Waitlist" for "QM-1" is told to contact "mara, mark"
    When "ian" asks for access to "Waitlist" for "QM-1"
    Then "mara" is emailed that "ian" asks for access to "Waitlist"
    And "mark" is emailed that "ian" asks for access to "Waitlist"
