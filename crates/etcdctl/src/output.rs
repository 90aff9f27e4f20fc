//! The writers (`-w simple|json|fields|protobuf|table`) and the Go text
//! forms they are built from.
//!
//! - `json` is Go's `encoding/json` over etcd's gogo-protobuf structs: the
//!   .proto field names, zero values left out (`omitempty`), 64-bit integers
//!   as numbers, bytes in base64, enums as numbers, and `<`, `>`, `&`
//!   escaped. [`go_json`] walks any of our messages by reflection (the
//!   descriptors come from the `api` crate), so each command only says which
//!   message it prints, or wraps it the way clientv3's own structs do.
//! - `protobuf` is the response's wire encoding (gogo and prost encode alike).
//! - `table` is olekukonko/tablewriter's box drawing as etcdctl configures it.
//! - `simple` and `fields` are written per command.

use std::io::Write;
use std::sync::OnceLock;

use base64::Engine;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value};
use serde_json::{Map, Value as Json};

use crate::error::{CtlError, CtlResult};

/// An output format (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Protobuf,
    Table,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "fields" => Format::Fields,
            "protobuf" => Format::Protobuf,
            "table" => Format::Table,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Protobuf => "protobuf",
            Format::Table => "table",
        }
    }
}

/// The selected writer and `--hex`.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub hex: bool,
}

impl Printer {
    pub fn new(format: Format, hex: bool) -> Self {
        Printer { format, hex }
    }

    /// etcdctl's answer when a command has no such writer:
    /// `table not supported as output format` (exit code 4).
    pub fn unsupported(&self) -> CtlError {
        CtlError::bad_feature(format!(
            "{} not supported as output format",
            self.format.name()
        ))
    }

    /// A key or value for the simple writer: raw, or `\x66\x6f\x6f` with `--hex`.
    pub fn bytes(&self, b: &[u8]) -> Vec<u8> {
        if self.hex {
            hex_escaped(b).into_bytes()
        } else {
            b.to_vec()
        }
    }
}

/// `\xNN` for every byte (etcdctl's `--hex`).
pub fn hex_escaped(b: &[u8]) -> String {
    b.iter().map(|byte| format!("\\x{byte:02x}")).collect()
}

/// Writes raw bytes and a newline to stdout (keys and values need not be UTF-8).
pub fn println_bytes(b: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b);
    let _ = out.write_all(b"\n");
}

/// The protobuf writer: the message's wire bytes, no newline.
pub fn print_protobuf(msg: &impl prost::Message) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&msg.encode_to_vec());
    let _ = out.flush();
}

/// The json writer: one line.
pub fn print_json(value: &Json) {
    println!("{}", go_json_text(value));
}

/// `encoding/json`'s text for a value: compact, with `<`, `>`, `&`, U+2028
/// and U+2029 escaped as Go does (they only occur inside strings).
pub fn go_json_text(value: &Json) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The set is compiled into the api crate from our own .proto files;
        // failing to read it is a build defect, caught by this crate's tests.
        DescriptorPool::decode(api::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|e| panic!("api descriptors: {e}"))
    })
}

/// `encoding/json` of the gogo struct for `msg`, whose protobuf full name
/// is `type_name` (`etcdserverpb.RangeResponse`).
pub fn go_json(msg: &impl prost::Message, type_name: &str) -> Json {
    let Some(desc) = pool().get_message_by_name(type_name) else {
        return Json::Null;
    };
    match DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()) {
        Ok(dynamic) => Json::Object(message_json(&dynamic)),
        Err(_) => Json::Null,
    }
}

/// The fields of a gogo struct in declaration order; a oneof is one Go field
/// named after it in CamelCase, holding `{"<field>": value}` (or null).
fn message_json(msg: &DynamicMessage) -> Map<String, Json> {
    let desc: MessageDescriptor = msg.descriptor();
    let mut out = Map::new();
    let mut oneofs_done = Vec::new();
    for field in desc.fields() {
        if let Some(oneof) = field.containing_oneof() {
            if oneofs_done.contains(&oneof.name().to_string()) {
                continue;
            }
            oneofs_done.push(oneof.name().to_string());
            let set = oneof.fields().find(|f| msg.has_field(f));
            let value = match set {
                Some(f) => {
                    let mut inner = Map::new();
                    inner.insert(f.name().to_string(), value_json(&msg.get_field(&f)));
                    Json::Object(inner)
                }
                None => Json::Null,
            };
            out.insert(camel_case(oneof.name()), value);
            continue;
        }
        if !msg.has_field(&field) {
            continue;
        }
        let value = msg.get_field(&field);
        if is_zero(&value) {
            continue;
        }
        out.insert(field.name().to_string(), value_json(&value));
    }
    out
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::I32(n) | Value::EnumNumber(n) => *n == 0,
        Value::I64(n) => *n == 0,
        Value::U32(n) => *n == 0,
        Value::U64(n) => *n == 0,
        Value::F32(n) => *n == 0.0,
        Value::F64(n) => *n == 0.0,
        Value::String(s) => s.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Message(_) => false,
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) | Value::EnumNumber(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(n) => Json::from(*n),
        Value::F64(n) => Json::from(*n),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::List(items) => Json::Array(items.iter().map(value_json).collect()),
        Value::Map(_) => Json::Null,
        Value::Message(m) => Json::Object(message_json(m)),
    }
}

/// `response_header` → `ResponseHeader` (gogo's Go name for a oneof).
fn camel_case(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Go's `json.Marshal` of a `pb.ResponseHeader` embedded in one of
/// clientv3's own structs: its fields inlined in the outer object.
pub fn header_fields(header: Option<&api::etcdserverpb::ResponseHeader>) -> Map<String, Json> {
    match header {
        Some(h) => match go_json(h, "etcdserverpb.ResponseHeader") {
            Json::Object(m) => m,
            _ => Map::new(),
        },
        None => Map::new(),
    }
}

/// tablewriter as etcdctl sets it up: a box around upper-cased, centred
/// headers and right-aligned cells; a cell wider than 30 columns is wrapped
/// at spaces (etcdctl's `ERRORS` column shows this).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> CtlResult {
    print!("{}", render_table(header, rows));
    Ok(())
}

/// tablewriter's default `MaxColWidth`.
const TABLE_CELL_WIDTH_MAX: usize = 30;
/// tablewriter's penalty for a wrapped line longer than the limit.
const WRAP_PENALTY: i64 = 100_000;

pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header
        .iter()
        .map(|h| h.replace(['_', '.'], " ").to_uppercase())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    let mut cells: Vec<Vec<Vec<String>>> = Vec::with_capacity(rows.len());
    for row in rows {
        let mut wrapped = Vec::with_capacity(widths.len());
        for (i, width) in widths.iter_mut().enumerate() {
            let (lines, w) = cell_lines(row.get(i).map(String::as_str).unwrap_or(""));
            *width = (*width).max(w);
            wrapped.push(lines);
        }
        cells.push(wrapped);
    }
    let line = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = line.clone();
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let len = h.chars().count();
        let left = (w - len) / 2;
        let right = w - len - left;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(right)
        ));
    }
    out.push('\n');
    out.push_str(&line);
    for row in &cells {
        let height = row.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for n in 0..height {
            out.push('|');
            for (cell, w) in row.iter().zip(&widths) {
                let text = cell.get(n).map(String::as_str).unwrap_or("");
                out.push_str(&format!(
                    " {}{} |",
                    " ".repeat(w.saturating_sub(text.chars().count())),
                    text
                ));
            }
            out.push('\n');
        }
    }
    out.push_str(&line);
    out
}

/// A cell's lines and width as tablewriter's `parseDimension` lays them
/// out: each paragraph wrapped to at most 30 columns (or its longest word).
fn cell_lines(cell: &str) -> (Vec<String>, usize) {
    let paragraphs: Vec<&str> = cell.split('\n').collect();
    let widest = paragraphs
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0);
    let limit = widest.min(TABLE_CELL_WIDTH_MAX);
    let mut width = limit;
    let mut lines = Vec::new();
    for (i, paragraph) in paragraphs.iter().enumerate() {
        if i > 0 {
            lines.push(" ".to_string());
        }
        for l in wrap_string(paragraph, limit) {
            width = width.max(l.chars().count());
            lines.push(l);
        }
    }
    (lines, width)
}

/// tablewriter's `WrapString`: words split at single spaces, laid out with
/// the fewest squared gaps (minimum raggedness), the limit raised to the
/// longest word.
fn wrap_string(s: &str, limit: usize) -> Vec<String> {
    let words: Vec<&str> = s.split(' ').collect();
    let n = words.len();
    let lens: Vec<i64> = words.iter().map(|w| w.chars().count() as i64).collect();
    let limit = lens.iter().copied().max().unwrap_or(0).max(limit as i64);
    // line_len(i, j): words i..=j joined by single spaces.
    let line_len = |i: usize, j: usize| -> i64 { lens[i..=j].iter().sum::<i64>() + (j - i) as i64 };
    let mut cost = vec![i64::MAX; n];
    let mut next_break = vec![n; n];
    for i in (0..n).rev() {
        if line_len(i, n - 1) <= limit {
            cost[i] = 0;
            next_break[i] = n;
            continue;
        }
        for j in i + 1..n {
            let used = line_len(i, j - 1);
            let gap = limit - used;
            let mut c = gap.saturating_mul(gap).saturating_add(cost[j]);
            if used > limit {
                c = c.saturating_add(WRAP_PENALTY);
            }
            if c < cost[i] {
                cost[i] = c;
                next_break[i] = j;
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        let end = next_break[i].max(i + 1);
        lines.push(words[i..end].join(" "));
        i = end;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::etcdserverpb::{RangeResponse, ResponseHeader};
    use api::mvccpb::KeyValue;

    #[test]
    fn json_is_go_encoding_of_gogo_structs() {
        let resp = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 8624211052002704329,
                member_id: 13760222222597005669,
                revision: 3,
                raft_term: 2,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            go_json_text(&go_json(&resp, "etcdserverpb.RangeResponse")),
            r#"{"header":{"cluster_id":8624211052002704329,"member_id":13760222222597005669,"revision":3,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":3,"version":2,"value":"YmFy"}],"count":1}"#
        );
    }

    #[test]
    fn json_escapes_html_as_go_does() {
        assert_eq!(
            go_json_text(&Json::String("x<y&z>".into())),
            r#""x\u003cy\u0026z\u003e""#
        );
    }

    #[test]
    fn long_cells_wrap_as_tablewriter_does() {
        let table = render_table(
            &["endpoint", "errors"],
            &[vec![
                "127.0.0.1:47830".into(),
                "memberID:1875973962661131211 alarm:NOSPACE ".into(),
            ]],
        );
        assert_eq!(
            table,
            "+-----------------+--------------------------------+\n\
             |    ENDPOINT     |             ERRORS             |\n\
             +-----------------+--------------------------------+\n\
             | 127.0.0.1:47830 |   memberID:1875973962661131211 |\n\
             |                 |                 alarm:NOSPACE  |\n\
             +-----------------+--------------------------------+\n"
        );
    }

    #[test]
    fn table_matches_tablewriter() {
        let table = render_table(
            &["ID", "Status", "Is Learner"],
            &[vec![
                "bef62134e854a165".into(),
                "started".into(),
                "false".into(),
            ]],
        );
        assert_eq!(
            table,
            "+------------------+---------+------------+\n\
             |        ID        | STATUS  | IS LEARNER |\n\
             +------------------+---------+------------+\n\
             | bef62134e854a165 | started |      false |\n\
             +------------------+---------+------------+\n"
        );
    }
}
