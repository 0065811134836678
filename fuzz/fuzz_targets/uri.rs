//! RFC 7512 `pkcs11:` URIs from the configuration (src/token/uri.rs).
#![no_main]

use certagent::token::TokenSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for uri in [text.to_string(), format!("pkcs11:{text}")] {
        if let Ok(sel) = TokenSelector::from_uri(&uri) {
            let _ = sel.to_string();
            let _ = sel.is_empty();
            let label = sel.label.clone().unwrap_or_default();
            let serial = sel.serial.clone().unwrap_or_default();
            let manufacturer = sel.manufacturer.clone().unwrap_or_default();
            let model = sel.model.clone().unwrap_or_default();
            // A selector always matches the token it names.
            assert!(
                sel.matches(&label, &serial, &manufacturer, &model),
                "{uri:?}"
            );
        }
    }
});
