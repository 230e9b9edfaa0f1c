//! Text from elsewhere (registry error bodies, header values, helper output) made safe to print
//! in one line of our own messages.

/// `s` with control characters (newlines included) replaced by spaces, runs of whitespace
/// collapsed, and at most `max_chars` characters kept (an ellipsis marks a cut).
pub fn sanitize(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut kept = 0;
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_control() || c.is_whitespace() || is_invisible_format(c) {
            pending_space = kept > 0;
            continue;
        }
        let needed = 1 + usize::from(pending_space);
        if kept + needed > max_chars {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
        kept += needed;
    }
    out
}

/// Zero-width and bidirectional-override characters, which can make printed text read
/// differently from what it is.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn sanitize_removes_control_characters_and_newlines() {
        assert_eq!(
            sanitize("denied\r\n\x1b[31mfake: ok\x07\ttab", 100),
            "denied [31mfake: ok tab"
        );
        assert_eq!(sanitize("  \n lead and trail \n", 100), "lead and trail");
        assert_eq!(sanitize("abc\u{202e}fed", 100), "abc fed");
    }

    #[test]
    fn sanitize_caps_the_length() {
        let long = "x".repeat(1000);
        let out = sanitize(&long, 10);
        assert_eq!(out, format!("{}…", "x".repeat(10)));
        assert_eq!(sanitize("ééé", 3), "ééé");
        assert_eq!(sanitize("ab cd", 4), "ab c…");
        assert_eq!(sanitize("", 4), "");
    }
}
