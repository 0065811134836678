# certagent's English texts (Fluent). Every message here is in ja.ftl too,
# with the same variables (tests check it).

## The tray's menu
tray-renew = Renew certificate…
tray-show = Show certificate
tray-open = Open bank site
tray-quit = Quit

## Desktop notices
notice-due-summary = Your bank certificate expires in { $days ->
    [one] { $days } day
   *[other] { $days } days
}
notice-due-body = { $who } expires on { $date }. Renew it now to keep logging on.
notice-due-action = Renew now
notice-expired-summary = Your bank certificate has expired
notice-expired-body = { $who } expired. Obtain a new one with the bank's ID and one-time password: certagent enroll.
notice-lapsed-summary = Your bank certificate can no longer be renewed
notice-lapsed-body = The grace period for { $who } is over. Ask your bank to re-issue it.

## The agent's dialogs (pinentry)
dialog-allow = Allow
dialog-deny = Deny
pin-description = Enter the PIN of your token "{ $token }" to { $purpose }.
pin-final-try = WARNING: this is the last try; one more wrong PIN locks the token
pin-count-low = note: a wrong PIN was entered before; the token may allow few more tries
otp-description = Enter the one-time password the bank gave for user { $user }.
otp-prompt = One-time password:
purpose-logon = log on at { $origin }
purpose-renew = renew your bank certificate
consent-logon = A page of { $origin } in your browser asks to log you on with your certificate

    { $holder }
    (valid until { $until }).

    Allow only if you are logging on to your bank at that address now.
consent-renew-page = A page of { $origin } in your browser asks to renew your certificate
consent-renew-desktop = Renew your bank certificate
consent-renew-start = { $who }:

    { $plan }.

    A new key will be generated on your token. Allow?
consent-renew-resume = { $who }.

    An interrupted renewal waits to be finished: { $plan }.

    Finish it now?

## When a certificate expires, as people say it
expires-in = expires in { $days ->
    [one] { $days } day
   *[other] { $days } days
}
expired-ago = { $days ->
    [0] expired today
    [one] expired { $days } day ago
   *[other] expired { $days } days ago
}
never-expires = never expires

## The tray
tray-tooltip = Bank certificate of { $holder }: { $when }
