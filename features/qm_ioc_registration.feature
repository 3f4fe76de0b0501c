@qm
Feature: AHCCCS QM Portal: Quick Start Guide, IOC User Registration
  IOC Users can navigate to the QM Portal to Sign In. To create an IOC User
  account, the user clicks "Create new account? Click Here". (seed 003)

  Background:
    Given the portal is the "AHCCCS QM Portal"
    And the "IOC" organization "IOC-7" of the "Central" region is enrolled with its correspondence address on file
    And "ioc_ma_na" is the active master account holder of "IOC-7"

  @R11 @R8
  Scenario: Create IOC User Account
    When "ioc_sa_na" registers with "IOC-7" as business type "IOC" in region "Central"
    Then "ioc_sa_na" is registered as an individual account, awaiting approval
    And the confirmation lists the master account holders with name, email and phone
    And "ioc_ma_na" is emailed that the account of "ioc_sa_na" needs to be activated

  @R11
  Scenario Outline: Select Your Business Type and Choose Your Region
    When "ioc_sa_na" registers with "IOC-7" as business type "<business type>" in region "<region>"
    Then the registration answers "<answer>"

    Examples:
      | business type  | region  | answer           |
      | IOC            | Central | pending_approval |
      | Provider       | Central | pending_approval |
      | HealthPlan     | Central | pending_approval |
      | TRBHA          | Central | pending_approval |
      | ExternalAgency | Central | pending_approval |
      | Hospital       | Central | validation_error |
      |                | Central | validation_error |
      | IOC            |         | validation_error |

  @R7
  Scenario: The user needs to accept the User Acceptance Agreement
    When "ioc_sa_na" registers with "IOC-7" without accepting the terms of use
    Then the request is refused with "terms_not_accepted"
    And "ioc_sa_na" cannot sign in

  @R17
  Scenario Outline: Passwords are required to be a minimum of 9 characters in length, with the required characters
    When "ioc_sa_na" registers with "IOC-7" choosing the password "<password>"
    Then the registration answers "<answer>"

    Examples:
      | password         | answer              | why                                                          |
      | Valid#Pass2024x  | pending_approval    | meets every rule                                             |
      | Vl#Ps204         | too_short           | 8 characters                                                 |
      | Vl#Ps2041        | pending_approval    | 9 characters                                                 |
      | VALID#PASS2024X  | missing_lowercase   | no lower case alpha character                                |
      | valid#pass2024x  | missing_uppercase   | no upper case character                                      |
      | Valid#PassXYZx   | missing_digit       | no numeric character                                         |
      | ValidPass2024x   | missing_special     | none of @!#=$%^&'()*?_~                                      |
      | Valid-Pass2024x  | missing_special     | a hyphen is not one of the special characters                |
      | Valid~Pass2024x  | pending_approval    | the tilde is                                                 |
      | Valid#Pass2111x  | repeated_characters | 111                                                          |
      | Valid#PaAa2024x  | repeated_characters | aAa, ignoring case                                           |
      | Valid#Paa2024x   | pending_approval    | two in a row is allowed                                      |
      | Valid#IOC_2024x  | shares_username     | IOC in common with the user name, ignoring case              |
      | Valid#Sa_N2024x  | shares_username     | SA_ in common with the user name                             |
      | Valid#Io2024c_x  | pending_approval    | no three consecutive characters in common                    |

  @R17
  Scenario: Every broken password rule is reported at once
    When "ioc_sa_na" registers with "IOC-7" choosing the password "aaa"
    Then the password is refused for "too_short, missing_uppercase, missing_digit, missing_special, repeated_characters"

  @R6
  Scenario Outline: Duplicate emails are allowed on multiple accounts when the email address, the first name, and the last name match exactly
    Given "ioc_sa_na" has registered with "IOC-7" as "IOC_SA_FN IOC_SA_LN" with the email "IOC_SA_NA@test.com"
    When "<username>" registers with "IOC-7" as "<name>" with the email "<email>"
    Then the registration answers "<answer>"

    Examples:
      | username  | name                | email              | answer           |
      | ioc_sa_nb | IOC_SA_FN IOC_SA_LN | IOC_SA_NA@test.com | pending_approval |
      | ioc_sa_nb | IOC_SA_FN OTHER_LN  | IOC_SA_NA@test.com | email_taken      |
      | ioc_sa_nb | OTHER_FN IOC_SA_LN  | IOC_SA_NA@test.com | email_taken      |
      | ioc_sa_nb | ioc_sa_fn IOC_SA_LN | IOC_SA_NA@test.com | email_taken      |
      | ioc_sa_nb | IOC_SA_FN IOC_SA_LN | other@test.com     | pending_approval |

  @R6
  Scenario: Each person has their own account; user names are unique whatever their case
    Given "ioc_sa_na" has registered with "IOC-7"
    When a co-worker registers with "IOC-7" as "IOC_SA_NA" in capitals
    Then the request is refused with "username_taken"

  @R19 @R16
  Scenario: Passwords are case-sensitive. After 3 failed attempts, within 15 minutes, your account will be locked out
    Given "ioc_sa_na" is an active individual account of "IOC-7"
    When "ioc_sa_na" signs in with the password in the wrong case
    Then the sign-in is refused as "invalid_credentials"
    When "ioc_sa_na" signs in with a wrong password 2 more times, 7 minutes apart
    And "ioc_sa_na" signs in with the right password
    Then the sign-in is refused as "account_locked"
    And the account "ioc_sa_na" has the status "locked"

  @R19
  Scenario: The fourth failed sign-in is refused and the account stays locked
    Given "ioc_sa_na" is an active individual account of "IOC-7"
    When "ioc_sa_na" signs in with a wrong password 3 times, 1 minute apart
    And "ioc_sa_na" signs in with a wrong password 1 more time, 1 minute apart
    Then the sign-in is refused
    When 20 minutes pass
    And "ioc_sa_na" signs in with the right password
    Then the sign-in is refused as "account_locked"

  @R19
  Scenario Outline: Three failures count only within 15 minutes
    Given "ioc_sa_na" is an active individual account of "IOC-7"
    When "ioc_sa_na" signs in with a wrong password 3 times, <gap> minutes apart
    And "ioc_sa_na" signs in with the right password
    Then the sign-in <result>

    Examples:
      | gap | result                         |
      | 7   | is refused as "account_locked" |
      | 8   | succeeds                       |

  @R19 @R5
  Scenario: Contact your Master Account holder to unlock your account
    Given "ioc_sa_na" is an active individual account of "IOC-7"
    And "ioc_sb_na" is an active individual account of "IOC-7"
    And "ioc_sa_na" has signed in with a wrong password 3 times, 1 minute apart
    When "ioc_sb_na" clicks "Unlock" for "ioc_sa_na"
    Then the change is refused because of "not_admin"
    When "ioc_ma_na" clicks "Unlock" for "ioc_sa_na"
    Then the account "ioc_sa_na" has the status "active"
    And "ioc_sa_na" can sign in
