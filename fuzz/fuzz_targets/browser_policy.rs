//! The browser policies for `[bank] origins` (src/browser_policy/): any
//! list of origins the configuration could hold. What `Origins::new`
//! accepts gives texts that each parse as their format: Chromium's JSON
//! and Firefox's policies.json as JSON holding exactly the origins and
//! hosts; the Firefox preference as one JavaScript string; the Windows
//! `.reg` values and the macOS profile's strings without a character that
//! would end them early.
#![no_main]

use certagent::browser_policy::{
    Origins, chromium_json, firefox_policies_json, firefox_prefs, macos_mobileconfig, windows_reg,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|list: Vec<String>| {
    let Ok(origins) = Origins::new(&list, "fuzz.toml") else {
        return;
    };
    let chromium: serde_json::Value =
        serde_json::from_str(&chromium_json(&origins)).expect("Chromium's policy is JSON");
    let listed: Vec<String> = chromium
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .expect("a list of origins");
    assert_eq!(listed, origins.list());

    let hosts = origins.firefox_hosts();
    if let Some(v) = firefox_policies_json(&origins) {
        let again: serde_json::Value =
            serde_json::from_str(&v.to_string()).expect("policies.json is JSON");
        assert_eq!(
            again["policies"]["LocalNetworkAccess"]["SkipDomains"],
            serde_json::json!(hosts)
        );
    }
    if let Some(prefs) = firefox_prefs(&origins) {
        let line = prefs
            .lines()
            .find(|l| l.starts_with("pref("))
            .expect("a pref line");
        // pref("NAME", "VALUE"); with nothing inside VALUE that ends it.
        let value = line
            .strip_suffix("\");")
            .and_then(|l| l.rsplit_once(", \""))
            .map(|(_, v)| v)
            .expect("pref(\"name\", \"value\");");
        assert!(!value.contains(['"', '\\', '\n', '\r']), "{line}");
        assert_eq!(value, hosts.join(","));
    }
    // .reg: "N"="VALUE" lines, VALUE without a quote or backslash.
    for line in windows_reg(&origins).lines().filter(|l| l.starts_with('"')) {
        let value = line
            .split_once("=\"")
            .and_then(|(_, v)| v.strip_suffix('"'))
            .expect("\"n\"=\"value\"");
        assert!(!value.contains(['"', '\\']), "{line}");
    }
    // The profile's strings: no markup inside.
    let profile = macos_mobileconfig(&origins);
    for part in profile.split("<string>").skip(1) {
        let (value, _) = part.split_once("</string>").expect("closed");
        assert!(!value.contains(['<', '>', '&']), "{value}");
    }
    for o in origins.list() {
        assert!(!o.chars().any(char::is_control), "{o:?}");
    }
});
