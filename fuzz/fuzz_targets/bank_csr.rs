//! The reference bank's checks of a PKCS#10 request from the network
//! (bank/src/csr.rs `check`, and the EST body as it arrives: base64 of
//! DER, `est::parse_csr`), and its byte-for-byte name comparison.
#![no_main]

use certagent_bank::csr::{check, same_name};
use certagent_bank::est::parse_csr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = check(data) {
        assert!(same_name(&csr.subject_der, &csr.subject_der));
    }
    let _ = parse_csr(data);
    if let Some((&split, rest)) = data.split_first() {
        let at = usize::from(split).min(rest.len());
        let (a, b) = rest.split_at(at);
        assert_eq!(same_name(a, b), same_name(b, a));
    }
});
