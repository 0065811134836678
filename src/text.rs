//! Text from outside, made fit for a person: the one cleaner every name,
//! label and message from a certificate, a token or the bank passes before
//! it is shown (terminal, desktop notice, tray, dialog, error line, log).
//!
//! A certificate's subject, a token's label or a bank's refusal is written
//! by someone else. Control characters could move the cursor or end a
//! line in a terminal or log; bidirectional overrides and isolates (U+202E
//! turns "Demo Bank" into "knaB omeD") and invisible characters (U+200B,
//! U+FEFF, tag characters) could make it read as something it is not.
//! [`clean`] takes them all out, puts the text on one line and bounds its
//! length. Imports nothing of certagent, so any module may use it.

/// The most characters of a name (a holder, a subject, a token's label) in
/// a sentence.
pub const NAME_MAX: usize = 200;
/// The most characters of a message (a bank's refusal, an error line).
pub const MESSAGE_MAX: usize = 2000;

/// Characters that end a line or advance the cursor: shown as one space.
fn breaks_line(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{000B}' | '\u{000C}' | '\r' | '\u{0085}' | '\u{2028}' | '\u{2029}'
    )
}

/// Whether `c` is never shown: Unicode's control (Cc) and format (Cf)
/// characters, the line and paragraph separators (Zl, Zp), and the other
/// default-ignorable code points (invisible fillers such as U+3164 and
/// U+115F, U+034F, tag characters). Variation selectors (U+FE00..U+FE0F,
/// U+E0100..U+E01EF) stay: they choose a glyph, as Japanese names need
/// for some kanji, and move nothing.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Cf
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                // Zl, Zp
                | '\u{2028}'..='\u{2029}'
                // Other default-ignorable code points (not variation selectors)
                | '\u{034F}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180D}'
                | '\u{180F}'
                | '\u{3164}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{E0000}'..='\u{E00FF}'
                | '\u{E01F0}'..='\u{E0FFF}'
        )
}

/// `text` as a person may see it: on one line (line breaks and tabs become
/// a space, runs of white space one), every [`hidden`] character out, no
/// white space at either end, and at most `max` characters (cut with an
/// ellipsis, which counts).
pub fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)));
    let mut count = 0;
    let mut space_pending = false;
    for c in text.chars() {
        let c = if breaks_line(c) { ' ' } else { c };
        if hidden(c) {
            continue;
        }
        if c.is_whitespace() {
            // The first white space of a run stands for it, once something
            // has been written; an ASCII space where it broke a line.
            if !space_pending && count > 0 {
                space_pending = true;
                out.push(c);
                count += 1;
            }
            continue;
        }
        space_pending = false;
        out.push(c);
        count += 1;
        if count > max {
            break;
        }
    }
    // No white space at the end.
    while out.ends_with(char::is_whitespace) {
        out.pop();
        count -= 1;
    }
    if count > max {
        // Cut to max - 1 characters and the ellipsis.
        let keep = max.saturating_sub(1);
        out = out.chars().take(keep).collect();
        while out.ends_with(char::is_whitespace) {
            out.pop();
        }
        if max > 0 {
            out.push('…');
        }
    }
    out
}

/// A name that is someone else's (a token's label), [`clean`]ed and in
/// quotes, so that where it starts and ends shows.
pub fn quoted(text: &str) -> String {
    format!("{:?}", clean(text, NAME_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_and_invisible_characters_are_taken_out() {
        assert_eq!(
            clean("O=\u{202E}knaB omeD,C=SI", NAME_MAX),
            "O=knaB omeD,C=SI"
        );
        let all_hidden = [
            '\u{0000}',
            '\u{0007}',
            '\u{001B}',
            '\u{007F}',
            '\u{009B}',
            '\u{00AD}',
            '\u{061C}',
            '\u{180E}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2060}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{206F}',
            '\u{FEFF}',
            '\u{FFF9}',
            '\u{FFFB}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{E007F}',
            '\u{3164}',
            '\u{115F}',
            '\u{034F}',
            '\u{1D173}',
            '\u{13430}',
        ];
        for c in all_hidden {
            assert!(hidden(c), "{:04X}", u32::from(c));
            assert_eq!(clean(&format!("a{c}b"), 10), "ab", "{:04X}", u32::from(c));
        }
        // Names as people write them keep every character.
        for name in [
            "CN=山田　太郎,O=デモ銀行株式会社",
            "CN=Ana Novak,O=Demo d.o.o.,C=SI",
            "CN=محمد,O=بنك",
            "CN=Zoë Łukasz-Ørsted",
            "葛\u{E0100}西",
            "👍\u{FE0F}",
        ] {
            assert_eq!(clean(name, NAME_MAX), name);
        }
    }

    #[test]
    fn one_line_without_padding() {
        assert_eq!(clean("a\nb", 10), "a b");
        assert_eq!(clean("a\r\n\t b\u{2028}c\u{2029}d", 10), "a b c d");
        assert_eq!(clean("  bank-token      ", 32), "bank-token");
        assert_eq!(clean("\u{202E} \u{200B}\n", 32), "");
        assert_eq!(clean("a  \u{200B} b", 32), "a b");
        assert_eq!(clean("", 0), "");
        assert_eq!(quoted("  bank\u{202E}-token\n "), "\"bank-token\"");
        assert_eq!(quoted("a\"b\\"), "\"a\\\"b\\\\\"");
    }

    #[test]
    fn length_is_bounded_with_an_ellipsis() {
        assert_eq!(clean("abcdef", 6), "abcdef");
        assert_eq!(clean("abcdefg", 6), "abcde…");
        assert_eq!(clean("abcd efg", 6), "abcd…");
        assert_eq!(clean("abc", 1), "…");
        assert_eq!(clean("abc", 0), "");
        assert_eq!(
            clean(&"証".repeat(10_000), NAME_MAX).chars().count(),
            NAME_MAX
        );
        // Hidden characters do not count, and cannot hide a long text.
        let padded = format!("{}{}", "\u{200B}".repeat(10_000), "x".repeat(10));
        assert_eq!(clean(&padded, 10), "x".repeat(10));
        for max in 0..12 {
            for text in ["", "a", "a b c d e f g h i j k", " \n\n x y", "\u{202E}abc"] {
                let c = clean(text, max);
                assert!(c.chars().count() <= max, "{max} {text:?} {c:?}");
                assert!(!c.chars().any(hidden));
                assert!(!c.starts_with(' ') && !c.ends_with(' '));
            }
        }
    }
}
