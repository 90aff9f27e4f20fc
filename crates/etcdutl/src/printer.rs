//! etcdutl's output formats (`-w`): simple, table, json and fields, as
//! etcd 3.6 prints them (`snapshot status`, `hashkv`); protobuf is refused
//! as etcd refuses it.

use datadir::snapshot_file::Status;
use gofmt::bytes::humanize as humanize_bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Simple,
    Table,
    Json,
    Fields,
    /// Known to etcd, supported by none of etcdutl's commands.
    Protobuf,
}

impl OutputFormat {
    pub fn parse(name: &str) -> Option<OutputFormat> {
        match name {
            "simple" => Some(OutputFormat::Simple),
            "table" => Some(OutputFormat::Table),
            "json" => Some(OutputFormat::Json),
            "fields" => Some(OutputFormat::Fields),
            "protobuf" => Some(OutputFormat::Protobuf),
            _ => None,
        }
    }
}

/// The text of `snapshot status`, or the name of a format it cannot use.
pub fn db_status(format: OutputFormat, s: &Status) -> Result<String, &'static str> {
    let header = ["hash", "revision", "total keys", "total size", "version"];
    let row = [
        format!("{:x}", s.hash),
        s.revision.to_string(),
        s.total_key.to_string(),
        humanize_bytes(s.total_size),
        s.version.clone(),
    ];
    Ok(match format {
        OutputFormat::Simple => format!("{}\n", row.join(", ")),
        OutputFormat::Table => table(&header, &[row.to_vec()]),
        OutputFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("hash".into(), s.hash.into());
            object.insert("revision".into(), s.revision.into());
            object.insert("totalKey".into(), s.total_key.into());
            object.insert("totalSize".into(), s.total_size.into());
            object.insert("version".into(), s.version.clone().into());
            format!("{}\n", serde_json::Value::Object(object))
        }
        OutputFormat::Fields => format!(
            "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n\"Version\" : {}\n",
            s.hash, s.revision, s.total_key, s.total_size, s.version
        ),
        OutputFormat::Protobuf => return Err("protobuf"),
    })
}

/// The text of `hashkv` (etcd 3.6's `DBHashKV` printers; the hash in
/// decimal), or the name of a format it cannot use.
pub fn db_hash_kv(format: OutputFormat, h: &mvcc::KvHash) -> Result<String, &'static str> {
    let header = ["hash", "hash revision", "compact revision"];
    let row = [
        h.hash.to_string(),
        h.hash_revision.to_string(),
        h.compact_revision.to_string(),
    ];
    Ok(match format {
        OutputFormat::Simple => format!("{}\n", row.join(", ")),
        OutputFormat::Table => table(&header, &[row.to_vec()]),
        OutputFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("hash".into(), h.hash.into());
            object.insert("hashRevision".into(), h.hash_revision.into());
            object.insert("compactRevision".into(), h.compact_revision.into());
            format!("{}\n", serde_json::Value::Object(object))
        }
        OutputFormat::Fields => format!(
            "\"Hash\" : {}\n\"Hash revision\" : {}\n\"Compact revision\" : {}\n",
            h.hash, h.hash_revision, h.compact_revision
        ),
        OutputFormat::Protobuf => return Err("protobuf"),
    })
}

/// tablewriter's ASCII table as etcd uses it: upper-case centred headers,
/// right-aligned cells, one space of padding.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
                .max(h.chars().count())
        })
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = rule.clone();
    for (h, w) in header.iter().zip(&widths) {
        let h = h.to_uppercase();
        let gap = w - h.chars().count();
        let left = gap / 2;
        out += &format!("| {}{}{} ", " ".repeat(left), h, " ".repeat(gap - left));
    }
    out += "|\n";
    out += &rule;
    for row in rows {
        for (cell, w) in row.iter().zip(&widths) {
            out += &format!("| {cell:>w$} ");
        }
        out += "|\n";
    }
    out += &rule;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            hash: 0xba19_be68,
            revision: 13,
            total_key: 21,
            total_size: 20_480,
            version: "3.6.0".into(),
        }
    }

    /// etcd 3.5.1's output for the same numbers, plus 3.6's version column.
    #[test]
    fn formats_match_etcds() {
        let s = status();
        assert_eq!(
            db_status(OutputFormat::Simple, &s).unwrap(),
            "ba19be68, 13, 21, 20 kB, 3.6.0\n"
        );
        assert_eq!(
            db_status(OutputFormat::Table, &s).unwrap(),
            "+----------+----------+------------+------------+---------+\n\
             |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE | VERSION |\n\
             +----------+----------+------------+------------+---------+\n\
             | ba19be68 |       13 |         21 |      20 kB |   3.6.0 |\n\
             +----------+----------+------------+------------+---------+\n"
        );
        assert_eq!(
            db_status(OutputFormat::Json, &s).unwrap(),
            "{\"hash\":3122249320,\"revision\":13,\"totalKey\":21,\"totalSize\":20480,\"version\":\"3.6.0\"}\n"
        );
        assert_eq!(
            db_status(OutputFormat::Fields, &s).unwrap(),
            "\"Hash\" : 3122249320\n\"Revision\" : 13\n\"Keys\" : 21\n\"Size\" : 20480\n\"Version\" : 3.6.0\n"
        );
        assert_eq!(db_status(OutputFormat::Protobuf, &s), Err("protobuf"));
        assert_eq!(OutputFormat::parse("yaml"), None);
    }

    /// etcd 3.6's hashkv printers for the same numbers.
    #[test]
    fn hash_kv_formats_match_etcds() {
        let h = mvcc::KvHash {
            hash: 3_401_303_961,
            current_revision: 5,
            compact_revision: 4,
            hash_revision: 5,
        };
        assert_eq!(
            db_hash_kv(OutputFormat::Simple, &h).unwrap(),
            "3401303961, 5, 4\n"
        );
        assert_eq!(
            db_hash_kv(OutputFormat::Table, &h).unwrap(),
            "+------------+---------------+------------------+\n\
             |    HASH    | HASH REVISION | COMPACT REVISION |\n\
             +------------+---------------+------------------+\n\
             | 3401303961 |             5 |                4 |\n\
             +------------+---------------+------------------+\n"
        );
        assert_eq!(
            db_hash_kv(OutputFormat::Json, &h).unwrap(),
            "{\"hash\":3401303961,\"hashRevision\":5,\"compactRevision\":4}\n"
        );
        assert_eq!(
            db_hash_kv(OutputFormat::Fields, &h).unwrap(),
            "\"Hash\" : 3401303961\n\"Hash revision\" : 5\n\"Compact revision\" : 4\n"
        );
        assert_eq!(db_hash_kv(OutputFormat::Protobuf, &h), Err("protobuf"));
    }
}
