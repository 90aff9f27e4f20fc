//! `strconv.Quote` (Go's `%q`): etcdctl's `fields` writer quotes keys and
//! values this way, bytes that are not UTF-8 included.

/// Quotes `bytes` as Go's `strconv.Quote(string(bytes))` does: `"` and `\`
/// escaped, printable characters as they are, `\n`-style escapes for the
/// usual controls, `\xNN` for other ASCII controls and for bytes that are not
/// valid UTF-8, `\uXXXX` / `\UXXXXXXXX` for other unprintable characters.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped(&mut out, c);
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '"' | '\\' => {
            out.push('\\');
            out.push(c);
        }
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if is_print(c) => out.push(c),
        c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `unicode.IsPrint`, closely enough for etcd's keys: the ASCII space
/// and everything that is not a control, a separator other than the space,
/// or a format character.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f
        | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff)
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn matches_strconv_quote() {
        assert_eq!(quote(b"foo"), r#""foo""#);
        assert_eq!(quote(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote(b"\n\t\x07\x00\x7f"), r#""\n\t\a\x00\x7f""#);
        assert_eq!(quote(b"\xff\xfe"), r#""\xff\xfe""#);
        assert_eq!(quote("héllo ☃".as_bytes()), "\"héllo ☃\"");
        assert_eq!(quote("\u{200b}".as_bytes()), r#""\u200b""#);
    }
}
