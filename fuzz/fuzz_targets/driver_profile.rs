//! Driver profiles (TOML in drivers/ and the user's profile folder),
//! `drivers::Profile::parse` (src/drivers.rs).
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
    }
});
