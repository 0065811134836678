//! The bank's answer to an enrolment, as the renewal takes it: the EST
//! body (`pkcs7::decode_response`: base64 or DER certs-only) and then
//! `renewal::verify_issued` against the real bank CA, a recorded
//! certificate of it as the old one and its key as the candidate. What is
//! accepted is a certificate for the candidate key with the old subject
//! that chains to the bank's CA.
#![no_main]

use certagent::cert::{Cert, raw_issuer_subject, signed_by};
use certagent::pkcs7::decode_response;
use certagent::renewal::verify_issued;
use libfuzzer_sys::fuzz_target;
use time::Duration;

const BANK_CA: &[u8] = include_bytes!("../data/bank-ca.der");
const OLD: &[u8] = include_bytes!("../data/bank-client-es.der");

fuzz_target!(|data: &[u8]| {
    let Ok(old) = Cert::from_der(OLD) else {
        return;
    };
    let candidate = old.spki_der.clone();
    let now = old.not_before + Duration::days(1);
    let ca = vec![BANK_CA.to_vec()];
    let answers = [decode_response(data).ok(), Some(vec![data.to_vec()])];
    for certs in answers.into_iter().flatten() {
        for old_cert in [Some(&old), None] {
            if let Ok(new) = verify_issued(&certs, &candidate, old_cert, &ca, now) {
                assert_eq!(new.spki_der, candidate);
                assert!(signed_by(&new.der, BANK_CA));
                if old_cert.is_some() {
                    assert_eq!(
                        raw_issuer_subject(&new.der).map(|(_, s)| s),
                        raw_issuer_subject(OLD).map(|(_, s)| s)
                    );
                }
            }
        }
    }
});
