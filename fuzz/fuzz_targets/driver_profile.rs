//! Driver profiles (TOML in drivers/ and the user's profile folder),
//! `drivers::Profile::parse` (src/drivers.rs), with their card families
//! (`[[cards]]`): every accepted family names its signing slots as CKA_IDs
//! the renewal can use, and a profile written back as TOML reads the same.
#![no_main]

use certagent::alg::SignScheme;
use certagent::drivers::Profile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Profile::parse("fuzz.toml", text) {
        assert!(!p.name.is_empty() && !p.name.contains(['/', '\\']));
        let _ = p.paths_for_this_os();
        for s in SignScheme::ALL {
            let _ = p.signs_with(s);
        }
        for c in &p.cards {
            assert!(!c.label_prefix.trim().is_empty());
            assert_eq!(c.slot_ids().len(), c.signing_slots.len(), "{c:?}");
        }
        if let Ok(written) = toml::to_string(&p) {
            let again = Profile::parse("fuzz.toml", &written).expect("a written profile reads");
            assert_eq!(
                toml::to_string(&again).ok().as_deref(),
                Some(written.as_str())
            );
        }
    }
});
