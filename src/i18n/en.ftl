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
