//! The files certagent keeps in its state directory, as it reads them
//! after a crash, a full disk or another hand: the renewal journal
//! (`renewal::journal::Entry`, and `Journal::load` on the file), the
//! notices ledger (`agent::notices::Ledger`), the retired card keys and the
//! replaced certificates (`renewal::retired`). What is read is written back
//! and read again to the same value; what is remembered is found again;
//! an interrupted attempt is described for people without a panic and
//! without hidden characters.
#![no_main]

use std::sync::OnceLock;

use certagent::agent::notices::Ledger;
use certagent::i18n::Lang;
use certagent::policy::{NO_EXPIRY, NoticeKind, Policy};
use certagent::renewal::{Entry, Journal};
use certagent::cert::Cert;
use certagent::holdings::BankIssuers;
use certagent::renewal::{Plan, retired};
use libfuzzer_sys::fuzz_target;
use sha2::Digest;

/// One state directory for the whole run.
fn state_dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
}

fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fuzz_target!(|data: &[u8]| {
    let dir = state_dir();

    // The journal.
    if let Ok(entry) = serde_json::from_slice::<Entry>(data) {
        let text = serde_json::to_string(&entry).expect("an entry serialises");
        let again: Entry = serde_json::from_str(&text).expect("what was written reads");
        assert_eq!(
            serde_json::to_value(&entry).ok(),
            serde_json::to_value(&again).ok(),
            "{text}"
        );
        // As the file of its token.
        let path = Journal::path_for(dir, &entry.token_serial);
        std::fs::write(&path, data).expect("write");
        match Journal::load(dir, &entry.token_serial) {
            Ok(Some(j)) => {
                assert_eq!(
                    serde_json::to_value(&j.entry).ok(),
                    serde_json::to_value(&entry).ok()
                );
                let _ = j.old_id();
                let _ = j.old_cert();
                let plan = Plan::Resume(Box::new(j));
                for lang in [Lang::En, Lang::Ja] {
                    let said = plan.describe_in(lang);
                    assert!(!said.chars().any(|c| hidden(c) && c != '\n'), "{said:?}");
                }
            }
            // A journal of more than 1 MiB is not read.
            other => assert!(data.len() > 1 << 20, "{other:?}"),
        }
        let _ = std::fs::remove_file(&path);
    }

    // The notices ledger: read, written back, read again.
    if let Ok(mut ledger) = serde_json::from_slice::<Ledger>(data) {
        let text = serde_json::to_string(&ledger).expect("a ledger serialises");
        let again: Ledger = serde_json::from_str(&text).expect("what was written reads");
        assert_eq!(serde_json::to_string(&again).ok(), Some(text));
        ledger.mark("fp", &Policy::default(), NO_EXPIRY, NoticeKind::Lapse);
        ledger.retain(&["fp".to_string()]);
    }
    // The files themselves, for one input in eight: each write is synced
    // to the disk, which is slow.
    if data.first().is_none_or(|b| b % 8 != 0) {
        return;
    }
    std::fs::write(Ledger::path_in(dir), data).expect("write");
    let ledger = Ledger::load(dir);
    ledger.save().expect("save");
    let text = serde_json::to_string(&ledger).ok();
    assert_eq!(serde_json::to_string(&Ledger::load(dir)).ok(), text);

    // Retired card keys: whatever the file holds, nothing counts without
    // the bank's certificate for the key (no CA known, or "any issuer",
    // proves nothing); a certificate remembered counts exactly when the
    // CA given signed it (here: itself).
    std::fs::write(dir.join("retired-card-keys.json"), data).expect("write");
    let (serial, rest) = data.split_at(data.len().min(8));
    let serial = String::from_utf8_lossy(serial);
    let (slot, spki) = rest.split_at(rest.len().min(2));
    let nobody = BankIssuers::default();
    let anyone = BankIssuers {
        any: true,
        ..BankIssuers::default()
    };
    assert!(!retired::is_retired(dir, &serial, slot, spki, &nobody));
    assert!(!retired::is_retired(dir, &serial, slot, spki, &anyone));
    if let Ok(cert) = Cert::from_der(rest) {
        retired::remember(dir, &serial, slot, &cert).expect("remember");
        let itself = BankIssuers {
            ca_certs: vec![cert.der.clone()],
            ..BankIssuers::default()
        };
        assert_eq!(
            retired::is_retired(dir, &serial, slot, &cert.spki_der, &itself),
            certagent::cert::signed_by(&cert.der, &cert.der)
        );
        assert!(!retired::is_retired(dir, &serial, slot, &cert.spki_der, &nobody));
    }

    // Replaced certificates: the list read, then one more remembered.
    std::fs::write(dir.join("replaced-certificates.json"), data).expect("write");
    let before = retired::replaced_certificates(dir);
    retired::remember_replaced(dir, data).expect("remember");
    let after = retired::replaced_certificates(dir);
    let digest = hex::encode(sha2::Sha256::digest(data));
    assert!(after.contains(&digest));
    assert!(
        before.iter().all(|d| after.contains(d)),
        "{before:?} {after:?}"
    );
});
