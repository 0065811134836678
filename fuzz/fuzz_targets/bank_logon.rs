//! The reference bank's logon-token verification on a hostile body
//! (bank/src/logon.rs `verify_body`: the JSON token, its challenge,
//! origin, certificate, algorithm and signature, the chain to the bank's
//! CA, the bank's record and the lifecycle), with the bank's real CA and a
//! recorded certificate of it, and the origin normalisation the bank
//! configures itself with.
#![no_main]

use std::sync::OnceLock;

use certagent::cert::Cert;
use certagent::policy::Policy;
use certagent_bank::logon::{LogonError, verify_body, web_origin};
use certagent_bank::store::{State, record_for};
use libfuzzer_sys::fuzz_target;
use time::{Duration, OffsetDateTime};

const BANK_CA: &[u8] = include_bytes!("../data/bank-ca.der");
const RECORDED: [&[u8]; 2] = [
    include_bytes!("../data/bank-client-es.der"),
    include_bytes!("../data/bank-client-rsa.der"),
];
/// The origin the seed tokens were signed for.
const ORIGIN: &str = "https://localhost:8443";
/// The seeds' challenge (bytes 0..32), as the challenge cookie would carry it.
const COOKIE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

struct Bank {
    state: State,
    now: OffsetDateTime,
}

fn bank() -> &'static Bank {
    static BANK: OnceLock<Bank> = OnceLock::new();
    BANK.get_or_init(|| {
        let mut state = State::default();
        for der in RECORDED {
            state.add_certificate(record_for(der, "issue", None).expect("a fixture"));
        }
        // A fixed instant inside the recorded certificates' validity.
        let now = Cert::from_der(RECORDED[0]).expect("a fixture").not_before + Duration::days(1);
        Bank { state, now }
    })
}

fuzz_target!(|data: &[u8]| {
    let b = bank();
    let policy = Policy::default();
    for cookie in [None, Some(COOKIE)] {
        match verify_body(data, cookie, ORIGIN, BANK_CA, &b.state, &policy, b.now) {
            Ok(who) => assert!(
                RECORDED
                    .iter()
                    .any(|d| { Cert::from_der(d).is_ok_and(|c| c.serial == who.serial) })
            ),
            Err(e) => {
                // Every refusal is a client error with a stable code, never
                // an internal one.
                assert!(!matches!(e, LogonError::Internal(_)), "{e}");
                assert!((400..500).contains(&e.status()), "{e}");
                let _ = e.code();
            }
        }
    }
    // The bank's own origin and the agent's URL: what it accepts is
    // normalised once and for all.
    if let Ok(o) = std::str::from_utf8(data)
        .map(web_origin)
        .unwrap_or(Err(String::new()))
    {
        assert_eq!(
            web_origin(&o).as_deref(),
            Ok(o.as_str()),
            "normalised twice"
        );
    }
});
