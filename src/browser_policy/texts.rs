//! What each browser's policy says: the texts for Chromium, Chrome and
//! Edge, Firefox, Windows and macOS, made from checked [`Origins`], and
//! the Linux files `install` writes ([`TARGETS`]). Nothing here touches
//! the file system.

use sha1::{Digest, Sha1};

use super::{CHROMIUM_POLICY, FIREFOX_PREF, Origins};

/// What kind of file a target takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `{"LocalNetworkAccessAllowedForUrls": [...]}`
    ChromiumJson,
    /// `pref("network.lna.skip-domains", "...");`
    FirefoxPrefs,
}

/// One file `install` writes.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Short name, as in `--json` output: chromium, chrome, edge, firefox-esr.
    pub browser: &'static str,
    /// The browser's name for people.
    pub name: &'static str,
    /// The file's absolute path on a Linux machine.
    pub path: &'static str,
    format: Format,
}

/// Every file `install` writes, and `remove` removes.
pub const TARGETS: [Target; 4] = [
    Target {
        browser: "chromium",
        name: "Chromium",
        path: "/etc/chromium/policies/managed/certagent.json",
        format: Format::ChromiumJson,
    },
    Target {
        browser: "chrome",
        name: "Google Chrome",
        path: "/etc/opt/chrome/policies/managed/certagent.json",
        format: Format::ChromiumJson,
    },
    Target {
        browser: "edge",
        name: "Microsoft Edge",
        path: "/etc/opt/edge/policies/managed/certagent.json",
        format: Format::ChromiumJson,
    },
    Target {
        browser: "firefox-esr",
        name: "Firefox ESR (Debian: every .js file in /etc/firefox-esr is a preference file)",
        path: "/etc/firefox-esr/certagent.js",
        format: Format::FirefoxPrefs,
    },
];

/// The Linux policy file for Chromium, Chrome and Edge.
pub fn chromium_json(origins: &Origins) -> String {
    let value = serde_json::json!({ CHROMIUM_POLICY: origins.list() });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Debian's Firefox ESR preference file, or `None` when no origin needs one
/// (all are loopback).
pub fn firefox_prefs(origins: &Origins) -> Option<String> {
    let hosts = origins.firefox_hosts();
    if hosts.is_empty() {
        return None;
    }
    Some(format!(
        "// Written by `certagent browser-policy --install`; `certagent browser-policy --remove`\n\
         // removes it. Lets the bank's pages call the certagent agent on this machine\n\
         // without Firefox's Local Network Access prompt.\n\
         pref(\"{FIREFOX_PREF}\", \"{}\");\n",
        hosts.join(",")
    ))
}

/// Firefox's `policies.json` (any platform; on Linux
/// `/etc/firefox/policies/policies.json`, one file for all policies), or
/// `None` when no origin needs one.
pub fn firefox_policies_json(origins: &Origins) -> Option<serde_json::Value> {
    let hosts = origins.firefox_hosts();
    if hosts.is_empty() {
        return None;
    }
    Some(serde_json::json!({
        "policies": { "LocalNetworkAccess": { "SkipDomains": hosts } }
    }))
}

/// The Windows registry keys, as a `.reg` file for `reg import`.
pub fn windows_reg(origins: &Origins) -> String {
    let mut out = String::from("Windows Registry Editor Version 5.00\n");
    for vendor in ["Google\\Chrome", "Chromium", "Microsoft\\Edge"] {
        out.push_str(&format!(
            "\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\{vendor}\\{CHROMIUM_POLICY}]\n"
        ));
        for (i, o) in origins.list().iter().enumerate() {
            out.push_str(&format!("\"{}\"=\"{o}\"\n", i + 1));
        }
    }
    let hosts = origins.firefox_hosts();
    if !hosts.is_empty() {
        out.push_str(
            "\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Mozilla\\Firefox\\LocalNetworkAccess\\SkipDomains]\n",
        );
        for (i, h) in hosts.iter().enumerate() {
            out.push_str(&format!("\"{}\"=\"{h}\"\n", i + 1));
        }
    }
    out
}

/// A UUID made from `parts`, so the same origins give the same profile.
fn stable_uuid(parts: &[&str]) -> String {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let mut b: Vec<u8> = h.finalize().iter().copied().take(16).collect();
    // RFC 4122 version 5 (name-based, SHA-1) and variant bits.
    if let Some(v) = b.get_mut(6) {
        *v = (*v & 0x0f) | 0x50;
    }
    if let Some(v) = b.get_mut(8) {
        *v = (*v & 0x3f) | 0x80;
    }
    let hex = hex::encode_upper(&b);
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

/// A macOS configuration profile (`.mobileconfig`) with the policy for
/// Chrome, Chromium and Edge, and Firefox's for its hosts. Deploy it with
/// the MDM; browsers on macOS take policies only from managed preferences.
pub fn macos_mobileconfig(origins: &Origins) -> String {
    let list = origins.list().join("\n");
    let array = |items: &[String], indent: &str| -> String {
        let mut s = format!("{indent}<array>\n");
        for i in items {
            s.push_str(&format!("{indent}  <string>{i}</string>\n"));
        }
        s.push_str(&format!("{indent}</array>\n"));
        s
    };
    let mut payloads = String::new();
    for (domain, name) in [
        ("com.google.Chrome", "Google Chrome"),
        ("org.chromium.Chromium", "Chromium"),
        ("com.microsoft.Edge", "Microsoft Edge"),
    ] {
        payloads.push_str(&format!(
            "    <dict>\n\
             \x20     <key>PayloadType</key>\n      <string>{domain}</string>\n\
             \x20     <key>PayloadIdentifier</key>\n      <string>certagent.browser-policy.{domain}</string>\n\
             \x20     <key>PayloadUUID</key>\n      <string>{uuid}</string>\n\
             \x20     <key>PayloadVersion</key>\n      <integer>1</integer>\n\
             \x20     <key>PayloadDisplayName</key>\n      <string>{name}: certagent Local Network Access</string>\n\
             \x20     <key>{CHROMIUM_POLICY}</key>\n{array}\
             \x20   </dict>\n",
            uuid = stable_uuid(&[domain, &list]),
            array = array(origins.list(), "      "),
        ));
    }
    let hosts = origins.firefox_hosts();
    if !hosts.is_empty() {
        let domain = "org.mozilla.firefox";
        payloads.push_str(&format!(
            "    <dict>\n\
             \x20     <key>PayloadType</key>\n      <string>{domain}</string>\n\
             \x20     <key>PayloadIdentifier</key>\n      <string>certagent.browser-policy.{domain}</string>\n\
             \x20     <key>PayloadUUID</key>\n      <string>{uuid}</string>\n\
             \x20     <key>PayloadVersion</key>\n      <integer>1</integer>\n\
             \x20     <key>PayloadDisplayName</key>\n      <string>Firefox: certagent Local Network Access</string>\n\
             \x20     <key>EnterprisePoliciesEnabled</key>\n      <true/>\n\
             \x20     <key>LocalNetworkAccess</key>\n      <dict>\n\
             \x20       <key>SkipDomains</key>\n{array}\
             \x20     </dict>\n\
             \x20   </dict>\n",
            uuid = stable_uuid(&[domain, &list]),
            array = array(&hosts, "        "),
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20 <key>PayloadType</key>\n  <string>Configuration</string>\n\
         \x20 <key>PayloadIdentifier</key>\n  <string>certagent.browser-policy</string>\n\
         \x20 <key>PayloadUUID</key>\n  <string>{uuid}</string>\n\
         \x20 <key>PayloadVersion</key>\n  <integer>1</integer>\n\
         \x20 <key>PayloadScope</key>\n  <string>System</string>\n\
         \x20 <key>PayloadDisplayName</key>\n  <string>certagent: bank pages may reach the local agent</string>\n\
         \x20 <key>PayloadContent</key>\n  <array>\n{payloads}  </array>\n\
         </dict>\n\
         </plist>\n",
        uuid = stable_uuid(&["certagent.browser-policy", &list]),
    )
}

/// The file a target takes for these origins; `None`: no file (Firefox when
/// every origin is loopback).
pub fn content(target: &Target, origins: &Origins) -> Option<String> {
    match target.format {
        Format::ChromiumJson => Some(chromium_json(origins)),
        Format::FirefoxPrefs => firefox_prefs(origins),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser_policy::test_origins as origins;

    #[test]
    fn chromium_json_lists_the_origins() {
        let o = origins(&["https://ib.bank.example", "https://ib2.bank.example:8443"]);
        let v: serde_json::Value = serde_json::from_str(&chromium_json(&o)).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"LocalNetworkAccessAllowedForUrls": ["https://ib.bank.example", "https://ib2.bank.example:8443"]})
        );
    }

    #[test]
    fn windows_reg_numbers_each_origin_per_browser() {
        let reg = windows_reg(&origins(&["https://a.example", "https://b.example"]));
        assert!(reg.starts_with("Windows Registry Editor Version 5.00\n"));
        for key in [
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Google\\Chrome\\LocalNetworkAccessAllowedForUrls]\n\"1\"=\"https://a.example\"\n\"2\"=\"https://b.example\"\n",
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Chromium\\LocalNetworkAccessAllowedForUrls]\n",
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Edge\\LocalNetworkAccessAllowedForUrls]\n",
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Mozilla\\Firefox\\LocalNetworkAccess\\SkipDomains]\n\"1\"=\"a.example\"\n\"2\"=\"b.example\"\n",
        ] {
            assert!(reg.contains(key), "{key} missing in\n{reg}");
        }
    }

    #[test]
    fn mobileconfig_is_stable_and_names_each_browser() {
        let o = origins(&["https://a.example"]);
        let a = macos_mobileconfig(&o);
        assert_eq!(a, macos_mobileconfig(&o));
        assert_ne!(a, macos_mobileconfig(&origins(&["https://b.example"])));
        for want in [
            "<string>com.google.Chrome</string>",
            "<string>com.microsoft.Edge</string>",
            "<string>org.chromium.Chromium</string>",
            "<string>org.mozilla.firefox</string>",
            "<key>LocalNetworkAccessAllowedForUrls</key>",
            "<string>https://a.example</string>",
            "<key>SkipDomains</key>",
            "<string>a.example</string>",
        ] {
            assert!(a.contains(want), "{want} missing in\n{a}");
        }
        let uuid = stable_uuid(&["x"]);
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.chars().nth(14), Some('5'));
    }
}
