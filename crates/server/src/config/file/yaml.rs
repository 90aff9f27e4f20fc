//! YAML as etcd's loader types it: go-yaml v2 (YAML 1.1) reads the file,
//! then it is converted to JSON for Go's decoder. Built on yaml-rust2's event
//! parser, which tells quoted from plain scalars (`"24"` is a string, `24` a
//! number) where its own loader would not.
//!
//! Left out: merge keys (`<<`), timestamps as a type, `.inf`/`.nan` (strings here).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// The first document of `text` as a tree; None for an empty document.
/// Errors are etcd's ("error converting YAML to JSON: yaml: line 1: …").
pub fn load(text: &str) -> Result<Option<Node>, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| {
        format!(
            "error converting YAML to JSON: yaml: line {}: {}",
            e.marker().line(),
            e.info()
        )
    })?;
    match builder.error {
        Some(e) => Err(e),
        None => Ok(builder.root),
    }
}

/// A YAML value as JSON would carry it after etcd's conversion.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    /// A number, as the JSON text Go writes for it ("24", "5.5", "18446744073709552000").
    Number(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// How Go's JSON errors name the kind of a value.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "bool",
            Node::Number(_) => "number",
            Node::Str(_) => "string",
            Node::Seq(_) => "array",
            Node::Map(_) => "object",
        }
    }
}

/// Builds the first document's tree from the parser's events.
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<String>,
}

enum Frame {
    Seq {
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        entries: Vec<(String, Node)>,
        key: Option<String>,
    },
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let node = resolve(text, style, tag.as_ref());
                self.push(node, anchor, mark);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { anchor, items }) => self.push(Node::Seq(items), anchor, mark),
                Some(Frame::Map {
                    anchor, entries, ..
                }) => self.push(Node::Map(entries), anchor, mark),
                None => {}
            },
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node::Null);
                self.push(node, 0, mark);
            }
            _ => {}
        }
    }
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => {
                    let text = match node {
                        Node::Str(s) | Node::Number(s) => s,
                        Node::Bool(b) => b.to_string(),
                        Node::Null => "null".to_string(),
                        Node::Seq(_) | Node::Map(_) => {
                            if self.error.is_none() {
                                self.error = Some(format!(
                                    "error converting YAML to JSON: yaml: line {}: a mapping key must be a scalar",
                                    mark.line()
                                ));
                            }
                            String::new()
                        }
                    };
                    *key = Some(text);
                }
            },
        }
    }
}

/// A scalar typed as go-yaml v2 types it.
fn resolve(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Node {
    let explicit_string = tag.is_some_and(|t| {
        (t.handle == "tag:yaml.org,2002:" || t.handle == "!!") && t.suffix == "str"
    });
    if style != TScalarStyle::Plain || explicit_string {
        return Node::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Node::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Node::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Node::Bool(false)
        }
        _ => {}
    }
    let starts_numeric = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if starts_numeric {
        let plain = text.replace('_', "");
        if let Some(n) = go_parse_int(&plain) {
            return Node::Number(n.to_string());
        }
        if is_yaml_float(&plain) {
            if let Ok(f) = plain.parse::<f64>() {
                return Node::Number(go_json_float(f));
            }
        }
    }
    Node::Str(text)
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`: base
/// prefixes 0x, 0o, 0b and a leading 0 for octal; within int64 or uint64.
fn go_parse_int(s: &str) -> Option<i128> {
    let (negative, signed, digits) = match s.as_bytes().first()? {
        b'-' => (true, true, &s[1..]),
        b'+' => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(body, radix).ok()?;
    let value = if negative {
        -(i128::try_from(magnitude).ok()?)
    } else {
        i128::try_from(magnitude).ok()?
    };
    let fits_i64 = i64::try_from(value).is_ok();
    let fits_u64 = !signed && u64::try_from(value).is_ok();
    (fits_i64 || fits_u64).then_some(value)
}

/// go-yaml's float form: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A float as Go's JSON encoder writes it (shortest form; exponent outside [1e-6, 1e21)).
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format!("{f}");
    }
    let text = format!("{f:e}");
    match text.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_typed_as_go_yaml_v2_types_them() {
        let r = |s: &str| resolve(s.to_string(), TScalarStyle::Plain, None);
        assert_eq!(r("24"), Node::Number("24".into()));
        assert_eq!(r("+24"), Node::Number("24".into()));
        assert_eq!(r("010"), Node::Number("8".into()));
        assert_eq!(r("0o10"), Node::Number("8".into()));
        assert_eq!(r("0b101"), Node::Number("5".into()));
        assert_eq!(
            r("18446744073709551615"),
            Node::Number("18446744073709551615".into())
        );
        assert_eq!(r("1e3"), Node::Number("1000".into()));
        assert_eq!(r("1e21"), Node::Number("1e+21".into()));
        assert_eq!(r("-.5"), Node::Number("-0.5".into()));
        assert_eq!(r("24h"), Node::Str("24h".into()));
        assert_eq!(r("1.2.3"), Node::Str("1.2.3".into()));
        assert_eq!(r("Off"), Node::Bool(false));
        assert_eq!(r("~"), Node::Null);
        assert_eq!(
            resolve("24".into(), TScalarStyle::DoubleQuoted, None),
            Node::Str("24".into())
        );
        let str_tag = Tag {
            handle: "tag:yaml.org,2002:".into(),
            suffix: "str".into(),
        };
        assert_eq!(
            resolve("24".into(), TScalarStyle::Plain, Some(&str_tag)),
            Node::Str("24".into())
        );
        assert_eq!(
            load("a: !!str 24\n"),
            Ok(Some(Node::Map(vec![("a".into(), Node::Str("24".into()))])))
        );
    }

    #[test]
    fn anchors_and_aliases() {
        let url = Node::Str("http://127.0.0.1:1".into());
        assert_eq!(
            load("a: &url http://127.0.0.1:1\nb: *url\n"),
            Ok(Some(Node::Map(vec![
                ("a".into(), url.clone()),
                ("b".into(), url)
            ])))
        );
    }
}
