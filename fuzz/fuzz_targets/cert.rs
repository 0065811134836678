//! Certificates as they come off a token or out of a logon token:
//! `Cert::from_der`, the raw issuer/subject/TBS readers, the bank-issuer
//! check `signed_by` (against the bank's real CA, and with both sides
//! hostile), and the status derived from a certificate's dates.
#![no_main]

use certagent::cert::{Cert, StatusEntry, raw_issuer_subject, rfc3339, signed_by};
use certagent::holdings::BankIssuers;
use certagent::policy::Policy;
use certagent::rawcert::raw_tbs;
use libfuzzer_sys::fuzz_target;

const BANK_CA: &[u8] = include_bytes!("../data/bank-ca.der");
const BANK_CLIENT: &[u8] = include_bytes!("../data/bank-client-es.der");

fuzz_target!(|data: &[u8]| {
    let _ = raw_issuer_subject(data);
    let _ = raw_tbs(data);
    // Hostile certificate, the bank's CA; the bank's certificate, hostile "CA".
    let _ = signed_by(data, BANK_CA);
    let _ = signed_by(BANK_CLIENT, data);
    // Both hostile: the first byte splits the input.
    if let Some((&split, rest)) = data.split_first() {
        let at = usize::from(split).min(rest.len());
        let (a, b) = rest.split_at(at);
        let _ = signed_by(a, b);
    }
    if let Ok(cert) = Cert::from_der(data) {
        let _ = rfc3339(cert.not_before);
        let _ = rfc3339(cert.not_after);
        let _ = cert.schemes();
        let issuers = BankIssuers {
            ca_certs: vec![BANK_CA.to_vec()],
            issuer_name: None,
            any: false,
            replaced: Vec::new(),
        };
        let _ = issuers.issued(&cert);
        let by_name = BankIssuers {
            issuer_name: Some(cert.issuer.clone()),
            ..BankIssuers::default()
        };
        assert!(by_name.issued(&cert));
        // The status of any certificate at any of its own instants.
        let policy = Policy::default();
        for now in [
            cert.not_before,
            cert.not_after,
            time::OffsetDateTime::UNIX_EPOCH,
        ] {
            let e = StatusEntry::new(b"\x01", &cert, &policy, now);
            assert_eq!(e.id, "01");
        }
    }
});
