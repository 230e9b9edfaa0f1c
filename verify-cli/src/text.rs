//! Text from outside (a log's checkpoint or tiles, an error a server sent) made safe to print:
//! no control characters or newlines that could forge lines of output or drive a terminal, and
//! no more of it than a message needs.

/// `text` with every control character (`char::is_control`: newlines, escapes, …) replaced by
/// `?`, cut to `max_chars` characters, with `…` added when something was cut.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_question_marks() {
        assert_eq!(sanitize("a\nb\r\x1b[31mc\u{7f}", 100), "a?b??[31mc?");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(sanitize("abcdef", 3), "abc…");
        assert_eq!(sanitize("abc", 3), "abc");
        assert_eq!(sanitize("ééé", 2), "éé…");
    }

    #[test]
    fn other_text_is_kept_as_is() {
        assert_eq!(
            sanitize("  spaced  out ünïcode ", 100),
            "  spaced  out ünïcode "
        );
    }
}
