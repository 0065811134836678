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
dialog-ok = OK
dialog-cancel = Cancel
pin-prompt = PIN:
admin-pin-description = Enter the ADMIN PIN of your card "{ $token }" (the card's second PIN, needed to make a new key) to { $purpose }. It is not your usual PIN.
admin-pin-prompt = Admin PIN:
pin-terminal = PIN for token { $token } ({ $purpose }):
admin-pin-terminal = ADMIN PIN of the card { $token } (the card's second PIN, needed to make a key; { $purpose }):
otp-terminal = The bank's one-time password for { $user }:
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

## Certificate states and what to do (the command line, the agent)
state-not-yet-valid = not-yet-valid
state-valid = valid
state-renewal-due = renewal-due
state-expired = expired
state-lapsed = lapsed
advice-not-yet-valid = the certificate is not valid yet; check the computer's clock
advice-valid = nothing to do
advice-renewal-due = renew it now with `certagent renew`
advice-expired = obtain a new certificate with `certagent enroll --user ID` and the bank's one-time password
advice-lapsed = the grace period is over: ask the bank to re-issue your certificate

## The command line: tokens and PINs
cli-token = token { $label } (serial { $serial }, { $maker } { $model })
cli-module = module { $path } ({ $profile }; { $maker } { $description }, PKCS#11 { $version })
cli-profile = profile { $name }
cli-no-profile = no matching profile
cli-no-slots = no slots
cli-slot-empty = slot { $slot }: no token
cli-slot-uninitialised = slot { $slot }: token not initialised
cli-slot-token = slot { $slot }: token { $label }
cli-serial-maker = serial { $serial }, { $maker } { $model }
cli-pin = PIN { $state }
cli-pin-pad = , PIN pad (protected authentication path)
cli-pin-change = , must be changed
pin-state-locked = LOCKED
pin-state-final-try = final try
pin-state-count-low = count low
pin-state-uninitialised = not initialised
pin-state-ok = ok
cli-enter-on-pad = Enter the PIN on the reader's PIN pad.
cli-issuers-unknown = note: the bank's issuing CA is not known yet ({ $reason }); no certificate is taken for the bank's

## The command line: status and show
status-others = other certificates (not the bank's; certagent leaves them alone):
status-replaced = bank certificates replaced by a newer one (the card cannot remove them; each stays until it expires, never used or renewed):
status-other = { $subject } (id { $id }), issued by { $issuer }
status-none = no bank certificate on the token; obtain one with `certagent enroll --user ID`
field-id = id
field-serial = serial
field-valid = valid
field-state = state
field-next-notice = next notice
state-when = { $state } ({ $when })
status-state = { $state }: { $advice }
valid-range = { $from } to { $until }
no-expiry-date = (no expiry date)
show-subject = Subject
show-issuer = Issued by
show-serial = Serial number
show-valid-from = Valid from
show-valid-until = Valid until
show-state = State
show-advice = What to do
show-renewal-opens = Renewal opens
show-grace-ends = Re-enrol by
show-next-notice = Next notice
show-key = Key
show-san = Alternative names
show-client-auth = Client logon
show-object = Token object
show-never = never
show-no-end = no end
show-never-renews = never (the certificate does not expire)
show-client-auth-yes = allowed
show-client-auth-no = NOT allowed by the certificate's key usage
show-object-value = id { $id } label { $label }

## The command line: renew and enroll
renew-doing = Renewing: { $plan }.
enroll-doing = Obtaining: { $plan }.
renew-question = Renew this certificate now? A new key is generated on the token.
enroll-question = Obtain a new certificate now? A new key is generated on the token.
renew-cancelled = renewal cancelled
enroll-cancelled = enrolment cancelled
purpose-enroll = obtain a new bank certificate
resuming = Resuming { $plan }.
renew-done = the new certificate is on the token:
confirm-suffix = [y/N]

## What a renewal is about to do (renew, enroll, the agent's dialogs)
plan-resume-renewal = the renewal{ $of } interrupted at step { $step } (started { $started })
plan-resume-enrolment = the enrolment of user { $user }{ $of } interrupted at step { $step } (started { $started })
plan-of = { " " }of { $who }
plan-renew = renewal of { $who } (id { $id }), expiring { $date }
plan-enroll-replace = a new certificate for user { $user } to replace { $who } (id { $id })
plan-enroll-first = a first certificate for user { $user }
plan-renew-any = renewal

## Renewal progress
step-fetching-cacerts = fetching the bank's CA certificates (/cacerts)
step-resuming = resuming the attempt interrupted at step { $step }
step-removed-candidate = removed the unused candidate key { $id }
step-found-candidate = found the candidate key of the interrupted attempt
step-generating = generating a new { $key } key on the token
step-signing-csr = signing the certificate request on the token
step-checking = checking the certificate the bank issued
step-installing = writing the new certificate to the token
step-reading-back = reading the certificate back and test-signing with the new key
step-left-alone = left id { $id } alone: it no longer holds the certificate this renewal replaced
step-removed-old = removed the old certificate and key (id { $id })
step-generating-slot = generating a new { $key } key on the card, in its free key slot { $id }
step-generating-over-retired = generating a new { $key } key on the card in key slot { $id }, replacing the old key certagent retired there
step-reading-card = reading the card again, to see what was written to it
step-candidate-stays = the unused new key stays in the card's key slot { $id } (the card cannot delete keys)
step-removed-old-cert = removed the old certificate (slot { $id })
step-old-cert-stays = the old certificate stays in slot { $id } until it expires: removing it would also erase the new one on this card
step-old-cert-error = the card did not remove the old certificate in slot { $id }; it stays until it expires (remove it with the card's own tool if you wish)
step-old-key-stays = the old key stays in the card's key slot { $id }, no longer used (the card cannot delete keys)
step-sending = sending the certificate request to the bank
step-sending-again = sending the same request again (attempt { $attempt })
step-bank-busy = the bank is processing the request; asking again in { $seconds }s

## Errors: what went wrong, in words (Japanese adds the details below it)
error-config = The configuration file is not valid.
error-driver = A driver profile is not valid.
error-module-unknown = No PKCS#11 module of that name is known.
error-module-missing = The token's PKCS#11 module is not installed.
error-module-load = The token's PKCS#11 module could not be loaded.
error-no-token = The token is not inserted.
error-token-ambiguous = More than one token matches; choose one in the configuration.
error-pin-incorrect = The token rejected the PIN; it was not retried.
error-pin-incorrect-final = The token rejected the PIN; it was not retried. WARNING: one more wrong PIN locks the token.
error-pin-incorrect-locked = The token rejected the PIN and is now locked: ask your bank administrator to unlock it.
error-admin-pin-incorrect = The card rejected the admin PIN; it was not retried.
error-busy = Another program is using the token; try again in a moment.
error-pin-locked = The PIN is locked: ask your bank administrator to unlock the token.
error-pin-format = The PIN has the wrong length or characters.
error-not-logged-in = The token asked for the PIN again; try again.
error-token-full = The token has no room for a new key or certificate.
error-token-write-protected = The token is write-protected.
error-key-not-found = The certificate's key is not on the token.
error-unsupported = The token cannot do what is needed.
error-token-malformed = The token returned data that cannot be read.
error-pkcs11 = The token reported an error.
error-certificate = The certificate cannot be read.
error-csr = The certificate request could not be made.
error-cancelled = Cancelled.
error-prompt = The PIN or password could not be asked.
error-renewal = The renewal did not finish. Nothing on the token was lost; running the same command again continues where it stopped.
error-browser-policy = The browser policy could not be changed.
error-usage = The command cannot be done as given.
error-checks-failed = Some checks failed; see the lines marked FAIL above.
error-io = Output could not be written.
error-arguments = The command line is not right; `certagent --help` shows how to use it.
error-details = details: { $details }

## certagent doctor
doctor-fix = fix: { $fix }
doctor-config-defaults = built-in defaults (no file at { $path })
doctor-xdg = the XDG config dir
doctor-module = { $path } ({ $profile }; { $maker } { $description })
doctor-module-fix = install the token's PKCS#11 module, or set [token] module to a profile name or library path
doctor-token-fix = insert the token, and check [token] label, serial or uri
doctor-insert-retry = insert the token and try again
doctor-pin-locked = the user PIN is locked
doctor-pin-locked-fix = ask your bank administrator (the token's security officer) to unlock it
doctor-pin-counter = PIN counter: { $state }
doctor-pin-counter-fix = enter the PIN carefully: the token locks after too many wrong PINs
doctor-pin-uninitialised = the user PIN is not initialised
doctor-pin-uninitialised-fix = initialise the token's user PIN with its administration tool
doctor-pin-pad = { $state } (PIN pad)
purpose-doctor = certagent doctor
doctor-logged-in = logged in
doctor-login-pin-fix = check the PIN and run `certagent doctor` again; certagent never retries a PIN by itself
doctor-login-terminal-fix = run `certagent doctor` in a terminal to type the PIN (or set CERTAGENT_PIN for an unattended check)
doctor-login-again-fix = run `certagent doctor` again and enter the PIN
doctor-login-locked-fix = ask your bank administrator (the token's security officer) to unlock the PIN
doctor-login-insert-fix = insert the token and run `certagent doctor` again
doctor-login-other-fix = correct what the message names, then run `certagent doctor` again
doctor-p11kit-root-fix = p11-kit skips your own module list ({ $dir }, { $count } module(s)) in a program running as root: run certagent as your user, or register the module for everyone in /etc/pkcs11/modules/ (a NAME.module file with `module: /path/to/lib.so`)
doctor-p11kit-fix = insert the token; p11-kit's proxy shows only modules registered with p11-kit (`p11-kit list-modules`): register the token's module in /etc/pkcs11/modules/ or ~/.config/pkcs11/modules/, or set [token] module to the module itself
doctor-no-bank = no [bank] section in the configuration
doctor-no-bank-fix = add [bank] est_url and server_roots to renew from certagent
doctor-bank-ok = { $url } answers; issuing CA { $ca }
doctor-bank-fix = check the network, [bank] est_url, and that server_roots holds the bank's TLS trust anchor
doctor-no-cert = no bank certificate on the token
doctor-no-cert-fix = obtain one with `certagent enroll --user ID` and the bank's one-time password
doctor-no-random = no system randomness
doctor-no-random-fix = check the system
doctor-cert-valid = { $who }: valid, { $when }
doctor-cert-state = { $who }: { $state } ({ $when })
doctor-no-key = no private key with id { $id } on the token
doctor-no-key-fix = the certificate is unusable without its key; obtain a new one with `certagent enroll`
doctor-key-extractable = the private key is extractable
doctor-key-not-sensitive = the private key is not sensitive
doctor-key-exposed-fix = renew the certificate: certagent's new keys never leave the token
doctor-sig-mismatch = a { $scheme } signature by the key does not verify against the certificate
doctor-sig-mismatch-fix = the key and certificate do not belong together; obtain a new certificate with `certagent enroll`
doctor-sign-failed = { $scheme } signing failed: { $error }
doctor-key-ok = key signs and matches the certificate ({ $schemes })
doctor-no-scheme = the token offers no way to sign with this { $key } key
doctor-no-scheme-fix = check the token's driver profile and mechanisms (`certagent tokens`)

## certagent demo
demo-fresh = A fresh SoftHSM token and the reference bank
demo-token = token { $label } in { $dir } ({ $module })
demo-bank = bank: EST at { $est }, CA { $ca }
demo-ana = Ana's certificate expires in 20 days
demo-notice = desktop notice ({ $days }-day, due { $due }): "{ $summary }. { $body }"
demo-renewal = Renewal: new key on the token, CSR, EST simplereenroll over mutual TLS
demo-bor = Bor's certificate expired 5 days ago: a new one with the bank's one-time password
demo-bor-otp = (the bank gave Bor the ID "bor" and a one-time password)
demo-now = The token now
demo-done = Done; { $dir } is removed.

## The agent on the desktop
tray-no-token = No token
tray-no-token-tip = No token: insert your bank token
tray-token-problem = Token problem: { $error }
tray-pending = An interrupted renewal (at step { $step }) waits: choose Renew certificate… to finish it
tray-renewing = Renewing: { $step }
notice-pending-summary = An interrupted renewal waits
notice-pending-body = A renewal of your bank certificate was interrupted. Choose Renew to finish it; the old certificate is kept until the new one is on the token.
notice-renewed-summary = Bank certificate renewed
notice-renewed-body = The new certificate is valid until { $until }.
notice-failed-summary = Renewal failed
notice-not-started-summary = Renewal not started
show-none = No bank certificate on the token.
show-dialog = { $holder }
    { $subject }
    Issued by { $issuer }
    Valid { $from } to { $until }
    { $state } ({ $when })
    SHA-256 { $fingerprint }
show-more = …and { $count } more: certagent status lists them all.

## certagent browser-policy
policy-for = Local Network Access policy for { $origins }:
policy-created = created
policy-updated = updated
policy-unchanged = unchanged
policy-removed = removed
policy-recorded = recorded in { $record } (for `certagent browser-policy --remove`)
policy-applies = Chromium, Chrome and Edge apply it within minutes (chrome://policy, "Reload policies", at once); Firefox at its next start.
policy-nothing = nothing to remove: no certagent browser policy is installed
policy-kept = kept    { $dir } (created by the install, but holds other files now)

## certagent --help
help-about = Keeps bank client certificates on PKCS#11 tokens alive
help-usage = Usage:
help-commands = Commands
help-options = Options
help-arg-config = Configuration file (else $CERTAGENT_CONFIG, else the XDG config dir's certagent/config.toml)
help-arg-json = Print data as JSON
help-arg-verbose = More log output (repeat for more)
help-arg-help = Print help
help-arg-version = Print version
help-arg-yes = Do not ask for confirmation
help-tokens = Slots and tokens of the configured module, with PIN state
help-status = Each bank certificate on the token and where it stands
help-show = Full details of one certificate
help-show-id = CKA_ID of the certificate, in hex
help-doctor = Check module, token, PIN, login and that each certificate's key signs and matches
help-renew = Renew the certificate in the renewal window over EST with mutual TLS
help-renew-id = CKA_ID of the certificate to renew, in hex
help-enroll = Obtain a certificate with the bank's ID and one-time password (first issuance, or after expiry)
help-enroll-user = The user ID the bank gave
help-enroll-id = CKA_ID of the expired certificate to replace, in hex
help-run = The agent: tray icon, desktop notices and the local API for the bank's web pages
help-run-no_tray = Serve the API and notices without a tray icon
help-run-unattended = For unattended tests only: take the PIN and one-time password from CERTAGENT_PIN and CERTAGENT_OTP
help-demo = The whole story on a fresh SoftHSM token and the reference bank (certagent-bank beside certagent)
help-browser-policy = Print, install (root) or remove the managed browser policies that let `[bank] origins` reach the agent
help-browser-policy-install = Write the Linux policy files under /etc (Chromium, Chrome, Edge, Firefox ESR); needs root
help-browser-policy-remove = Remove the files --install wrote and the directories it created; needs root
help-help = Print this message or the help of the given subcommand(s)
policy-print-head = Managed browser policies that let the bank's pages reach the certagent agent
    on this machine without a Local Network Access prompt, for these origins:
policy-print-linux = Linux: `sudo certagent --config FILE browser-policy --install` writes these
    files (mode 0644), for every browser whether installed yet or not, and
    `sudo certagent browser-policy --remove` removes them again.
policy-print-no-firefox = Firefox: no file; every origin is on this machine (loopback), and a page on
    this machine may call the agent without a prompt.
policy-print-windows = Windows: save as certagent.reg and import it as an administrator
    (`reg import certagent.reg`), or set the same values by Group Policy;
    `certagent browser-policy --json | jq -r .windows_reg` gives the file alone.
policy-print-macos = macOS: deploy this configuration profile (certagent.mobileconfig) with your MDM;
    Chrome and Edge on macOS take policies only from managed preferences;
    `certagent browser-policy --json | jq -r .macos_mobileconfig` gives it alone.
policy-print-firefox = Firefox elsewhere (Mozilla's own builds, Windows, macOS): the enterprise
    policy LocalNetworkAccess in policies.json (Linux:
    /etc/firefox/policies/policies.json, one file for all policies: merge this
    into it). Firefox, ESR 153 too, asks before a public page may reach this
    machine; the policy sets network.lna.skip-domains, which takes host names,
    not origins. Loopback hosts are left out: the preference also matches the
    address a request goes to, so they would lift the prompt for every page.
help-native-messaging = Print, install or remove the native messaging host manifests for the certagent browser extension (per user; system-wide as root)
help-native-messaging-install = Write the manifests for Chromium, Chrome, Edge and Firefox
help-native-messaging-remove = Remove certagent's manifests
help-native-host = The native messaging host the browser starts for the certagent extension (reads the browser's messages on stdin)
native-agent-not-running = certagent is not running on this computer: start it (certagent run, or log on again), then try again
