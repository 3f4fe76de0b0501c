@ahcccs
Feature: AHCCCS Online Provider Portal: Master Account Holder
  This course will provide guidance for master account holders on the AHCCCS
  Online Provider Portal, including how to set up an account, master account
  holder responsibilities and frequently asked questions. (seed 000)

  Background:
    Given the portal is the "AHCCCS Online Provider Portal"
    And the provider "P-100" is enrolled with its correspondence address on file

  @R8 @R9 @R10
  Scenario: How To Create a Master Account
    When "mara" registers with "P-100" choosing the correspondence address on file
    Then "mara" is registered as the master account holder, awaiting activation
    And an activation letter with a temporary password and authentication code is mailed to the correspondence address of "P-100" for "mara"
    And no email carries the activation code
    When "mara" enters the authentication code exactly as shown in the activation letter and changes the temporary password
    Then "mara" can sign in
    When "ian" registers with "P-100"
    Then "ian" is registered as an individual account, awaiting approval

  @R9
  Scenario: My correspondence address is incorrect or not listed. What is my next step?
    Given the provider "P-200" is enrolled with no address on file
    When "mara" registers with "P-200"
    Then the request is refused with "no_correspondence_address"
    And "P-200" has no master account holder

  @R10
  Scenario: I received my authentication code, but it is not accepting it. What am I doing wrong?
    Given "mara" has registered with "P-100" choosing the correspondence address on file
    When "mara" enters the authentication code with its letters in the wrong case
    Then the request is refused with "activation_code_invalid"
    When "mara" enters the authentication code exactly as shown in the activation letter and changes the temporary password
    Then "mara" can sign in

  @R10 @R4
  Scenario Outline: Failure to activate the account within 15 days of creation will result in an expired authentication code
    Given "mara" has registered with "P-100" choosing the correspondence address on file
    When <days> days pass
    And "mara" enters the authentication code exactly as shown in the activation letter and changes the temporary password
    Then the activation answers "<answer>"

    Examples:
      | days | answer                  |
      | 14   | activated               |
      | 16   | activation_code_expired |

  @R10 @R4
  Scenario: If the activation code has expired providers can request a new activation code
    Given "mara" has registered with "P-100" choosing the correspondence address on file
    And 16 days have passed
    When support staff issue a new authentication code for "mara" of "P-100"
    Then a new activation letter for "mara" is mailed to the correspondence address of "P-100"
    When "mara" enters the authentication code exactly as shown in the activation letter and changes the temporary password
    Then "mara" can sign in

  @R8 @R5 @R16
  Scenario: Why can't I log in?
    Given "mara" is the active master account holder of "P-100"
    And "ian" has registered with "P-100"
    When "ian" signs in
    Then the sign-in is refused as "pending_approval"
    When "mara" clicks "Activate" for "ian"
    And "mara" sets the access of "ian" to "Claims"
    Then "ian" can sign in
    And "ian" asking to use "Claims" for "P-100" gets "allowed"

  @R2 @R3
  Scenario: Can there be more than one master account for each provider?
    Given "mara" is the active master account holder of "P-100"
    And "ian" is an active individual account of "P-100"
    Then "P-100" is warned that it has a single master account holder
    When "mara" clicks "Upgrade to Master Account" for "ian"
    Then the change is accepted
    And "P-100" lists the master account holders "ian, mara"
    And "P-100" has no warning

  @R2 @R5
  Scenario: How do I upgrade an individual account to a master account?
    Given "mara" is the active master account holder of "P-100"
    And "ian" is an active individual account of "P-100"
    And "joy" is an active individual account of "P-100"
    When "joy" clicks "Upgrade to Master Account" for "ian"
    Then the change is refused because of "not_admin"
    When "mara" clicks "Upgrade to Master Account" for "ian"
    Then "ian" is a master account holder of "P-100"
    And "mara" is a master account holder of "P-100"

  @R3 @R4
  Scenario: If a Master Account Holder leaves an organization a new Master Account Holder needs to be designated
    Given "mara" is the active master account holder of "P-100"
    And "ian" is an active individual account of "P-100"
    When "support staff" clicks "Remove User" for "mara"
    Then the change is refused because of "last_admin"
    When support staff designate "ned" as a new master account holder of "P-100"
    Then "P-100" lists the master account holders "mara, ned"
    When "ned" clicks "Remove User" for "mara"
    Then the account "mara" has the status "removed"
    And "ned" can approve and grant access for new users of "P-100"

  @R14 @R16 @R5
  Scenario Outline: Granting access to specific areas of the website
    Given "mara" is the active master account holder of "P-100"
    And "ian" is an active individual account of "P-100"
    When "mara" sets the access of "ian" to "<granted>"
    Then the change is <outcome>
    And "ian" asking to use "<function>" for "P-100" gets "<answer>"

    Examples:
      | granted              | outcome                                     | function             | answer                 |
      | Claims               | accepted                                    | Claims               | allowed                |
      | Prior Authorizations | accepted                                    | Prior Authorizations | allowed                |
      | Eligibility          | accepted                                    | Eligibility          | allowed                |
      | Claims               | accepted                                    | Eligibility          | permission_not_granted |
      | Dental X-Rays        | refused because of "permission_unknown"     | Dental X-Rays        | permission_unknown     |

  @R1
  Scenario: The master account holder maintains the accounts under the same Provider ID, and no other
    Given "mara" is the active master account holder of "P-100"
    And the provider "P-300" is enrolled with its correspondence address on file
    And "olga" is the active master account holder of "P-300"
    And "otto" is an active individual account of "P-300"
    When "mara" clicks "Remove User" for "otto"
    Then the change is refused because of "not_member"
    And the account "otto" has the status "active"
    And "mara" asking to use "Claims" for "P-300" gets "not_member"

  @R18 @R16
  Scenario Outline: When do account passwords expire?
    Given "mara" is the active master account holder of "P-100"
    And "ian" is an active individual account of "P-100"
    And "mara" has set the access of "ian" to "Claims"
    When <days> days pass
    And "<who>" signs in
    Then the sign-in <result>
    And "<who>" asking to use "Claims" for "P-100" gets "<answer>"

    Examples: All passwords are set to expire after 45 days for both Individual and Master accounts
      | who  | days | result                           | answer           |
      | ian  | 44   | succeeds                         | allowed          |
      | ian  | 46   | is refused as "password_expired" | password_expired |
      | mara | 44   | succeeds                         | allowed          |
      | mara | 46   | is refused as "password_expired" | password_expired |

  @R18 @R17
  Scenario: An expired password is changed to a new one, which may not be the previous one
    Given "mara" is the active master account holder of "P-100"
    And 46 days have passed
    When "mara" changes the password to the current one
    Then the password is refused for "reused_password"
    When "mara" changes the password to "Other#Pass2025y"
    Then the change is accepted
    And "mara" can sign in

  @R27
  Scenario: Master account holders are accountable for every account under their ID
    Given "mara" is the active master account holder of "P-100"
    And "ian" has registered with "P-100"
    And "joy" is an active individual account of "P-100"
    When "mara" clicks "Approve User" for "ian" with the comment "new biller"
    And "joy" clicks "Remove User" for "ian"
    Then the audit trail shows "mara" did "approve" to "ian" in "P-100" with the outcome "done"
    And the audit trail shows "joy" did "remove" to "ian" in "P-100" with the outcome "denied"

  @console @R2 @R5
  Scenario: At the console, the master account holder clicks Admin, selects the user and presses Upgrade to Master Account
    Given "mara" is the active master account holder of "P-100"
    And "ian" is an active individual account of "P-100"
    And "joy" is an active individual account of "P-100"
    When "joy" clicks "Upgrade to Master Account" for "ian"
    Then the change is refused because of "not_admin"
    When "mara" clicks "Upgrade to Master Account" for "ian"
    Then the change is accepted
    And "ian" is a master account holder of "P-100"
    And "mara" is a master account holder of "P-100"

  @R16 @R14 @R5
  Scenario: It will be the master account holder's responsibility to ensure they have been granted the appropriate access
    Given "mara" is the master account holder of "P-100"
    And "ian" is an active individual account of "P-100"
    Then "ian" asking to use "Claims" for "P-100" is told to contact "mara"
    When "ian" asks for access to "Claims" for "P-100"
    Then "mara" is emailed that "ian" asks for access to "Claims"
    When "mara" approves the access request of "ian"
    Then the change is accepted
    And "ian" asking to use "Claims" for "P-100" gets "allowed"
