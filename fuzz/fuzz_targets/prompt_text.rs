//! Hostile text on its way into a pinentry dialog (certificate subjects,
//! token labels, web origins): `prompt::clean`, `short` and `fit_assuan`
//! (src/prompt/mod.rs). The output never holds a control character (but
//! the line break `clean` and `fit_assuan` keep) nor a bidi or invisible
//! formatting character, and its Assuan-escaped form, escaped exactly as
//! the agent's pinentry conversation sends it, stays within the limit.
#![no_main]

use certagent::prompt::{ASSUAN_TEXT_MAX, clean, fit_assuan, short};
use libfuzzer_sys::fuzz_target;

/// What `shown` in src/text.rs refuses, written out again here.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// The parameter's length on the wire: the conversation escapes `\n`,
/// `\r` and `%`, and a trailing backslash (src/prompt/assuan.rs).
fn assuan_len(text: &str) -> usize {
    let body: usize = text
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '%' => 3,
            c => c.len_utf8(),
        })
        .sum();
    body + if text.ends_with('\\') { 2 } else { 0 }
}

fuzz_target!(|input: (u16, &str)| {
    let (max, text) = input;
    let max = usize::from(max % 2048);

    let c = clean(text);
    assert!(!c.chars().any(hidden), "{c:?}");

    let s = short(text, max);
    assert!(!s.chars().any(|c| hidden(c) || c == '\n'), "{s:?}");
    assert!(s.chars().count() <= max.max(1), "{max} {s:?}");

    for limit in [max, ASSUAN_TEXT_MAX] {
        let f = fit_assuan(text, limit);
        assert!(!f.chars().any(hidden), "{f:?}");
        assert!(
            assuan_len(&f) <= limit,
            "{limit}: {} > {limit} for {f:?}",
            assuan_len(&f)
        );
    }
});
