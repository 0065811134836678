//! The configuration file (TOML), parsed as if read from a path:
//! `Config::parse` (src/config.rs), which `Config::load` uses.
#![no_main]

use std::path::Path;

use certagent::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for path in ["/etc/certagent/config.toml", "config.toml", "/"] {
        match Config::parse(text, Path::new(path)) {
            Ok(c) => {
                // Every accepted number stays in its documented range.
                let p = &c.policy;
                assert!((1..=3650).contains(&p.renew_window_days));
                assert!(p.reissue_grace_days <= 3650);
                assert!(p.notice_days.iter().all(|d| (1..=3650).contains(d)));
                assert!(c.agent.listen.ip().is_loopback());
                let _ = c.dir();
            }
            Err(e) => {
                // The error names the file.
                assert!(e.to_string().contains(path), "{e}");
            }
        }
    }
});
