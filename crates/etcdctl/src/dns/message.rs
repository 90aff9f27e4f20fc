//! DNS messages as the resolver needs them (RFC 1035): a query with one
//! question and an EDNS(0) record, and the header, question and answers of
//! a response, compressed names included.

/// Resource record type SRV.
pub const TYPE_SRV: u16 = 33;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;
/// The UDP payload size Go's resolver advertises with EDNS(0).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Labels followed while decoding one name (compression pointers included).
const NAME_LABELS_MAX: usize = 128;
pub const RCODE_SUCCESS: u8 = 0;
pub const RCODE_NAME_ERROR: u8 = 3;

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// An absolute name, with its final dot (`etcd1.example.com.`).
    pub target: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// A decoded resource record: SRV data, or just its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub srv: Option<Srv>,
}

/// The parts of a response the resolver looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub is_response: bool,
    pub truncated: bool,
    pub authoritative: bool,
    pub recursion_available: bool,
    pub rcode: u8,
    pub question: Option<(String, u16)>,
    pub answers: Vec<Record>,
}

/// A query for `name` (absolute) of type `qtype`, recursion desired, with
/// an EDNS(0) OPT record.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    out.extend_from_slice(&1u16.to_be_bytes()); // questions
    out.extend_from_slice(&0u16.to_be_bytes()); // answers
    out.extend_from_slice(&0u16.to_be_bytes()); // authorities
    out.extend_from_slice(&1u16.to_be_bytes()); // additionals: OPT
    encode_name(&mut out, name)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.push(0); // OPT: root name
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // extended rcode, version, flags
    out.extend_from_slice(&0u16.to_be_bytes()); // no options
    Ok(out)
}

pub fn encode_name(out: &mut Vec<u8>, name: &str) -> Result<(), String> {
    let body = name.strip_suffix('.').unwrap_or(name);
    if !body.is_empty() {
        for label in body.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("cannot encode the name {name:?}"));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    Ok(())
}

/// Decodes a response; `Err` when it is malformed.
pub fn decode_response(msg: &[u8]) -> Result<Response, String> {
    let short = || "message too short".to_string();
    let u16_at = |at: usize| -> Result<u16, String> {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(short)
    };
    let flags = u16_at(2)?;
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut at = 12;
    let mut question = None;
    for _ in 0..questions {
        let (name, next) = decode_name(msg, at)?;
        let qtype = u16_at(next)?;
        at = next + 4;
        question.get_or_insert((name, qtype));
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        let (name, next) = decode_name(msg, at)?;
        let rtype = u16_at(next)?;
        let len = usize::from(u16_at(next + 8)?);
        let data_at = next + 10;
        let data = msg.get(data_at..data_at + len).ok_or_else(short)?;
        let srv = if rtype == TYPE_SRV {
            if data.len() < 7 {
                return Err("SRV record too short".into());
            }
            let (target, _) = decode_name(msg, data_at + 6)?;
            Some(Srv {
                priority: u16::from_be_bytes([data[0], data[1]]),
                weight: u16::from_be_bytes([data[2], data[3]]),
                port: u16::from_be_bytes([data[4], data[5]]),
                target,
            })
        } else {
            None
        };
        records.push(Record { name, rtype, srv });
        at = data_at + len;
    }
    Ok(Response {
        id: u16_at(0)?,
        is_response: flags & 0x8000 != 0,
        authoritative: flags & 0x0400 != 0,
        truncated: flags & 0x0200 != 0,
        recursion_available: flags & 0x0080 != 0,
        rcode: (flags & 0x000f) as u8,
        question,
        answers: records,
    })
}

/// A possibly compressed name at `at`: the name (absolute, lower case as
/// sent) and the offset after it in the message.
pub fn decode_name(msg: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..NAME_LABELS_MAX {
        let len = *msg.get(at).ok_or("name past the end of the message")?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                if name.is_empty() {
                    name.push('.');
                }
                return Ok((name, end.unwrap_or(at + 1)));
            }
            0x00 => {
                let label = msg
                    .get(at + 1..at + 1 + usize::from(len))
                    .ok_or("label past the end of the message")?;
                name.push_str(&String::from_utf8_lossy(label));
                name.push('.');
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *msg
                    .get(at + 1)
                    .ok_or("pointer past the end of the message")?;
                end.get_or_insert(at + 2);
                at = (usize::from(len & 0x3f) << 8) | usize::from(low);
            }
            _ => return Err("unknown label type".into()),
        }
    }
    Err("too many labels in a name".into())
}

/// A response to `query` with the given SRV answers (the question's name
/// compressed by pointer, as servers do), for tests.
#[cfg(test)]
pub fn srv_response(query: &[u8], rcode: u8, answers: &[(u16, u16, u16, &str)]) -> Vec<u8> {
    let question_end = decode_name(query, 12).unwrap().1 + 4;
    let mut out = query[..2].to_vec();
    out.extend_from_slice(&(0x8180u16 | u16::from(rcode)).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    for (priority, weight, port, target) in answers {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&TYPE_SRV.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        let mut data = Vec::new();
        data.extend_from_slice(&priority.to_be_bytes());
        data.extend_from_slice(&weight.to_be_bytes());
        data.extend_from_slice(&port.to_be_bytes());
        encode_name(&mut data, target).unwrap();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        let q = encode_query(0xabcd, "_etcd-client._tcp.example.com.", TYPE_SRV).unwrap();
        let mut expected = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in ["_etcd-client", "_tcp", "example", "com"] {
            expected.push(label.len() as u8);
            expected.extend_from_slice(label.as_bytes());
        }
        expected.extend_from_slice(&[0, 0, 33, 0, 1]);
        expected.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(q, expected);
        assert!(encode_query(1, "a..b.", TYPE_SRV).is_err());
    }

    #[test]
    fn response_decoding_with_compression() {
        let q = encode_query(7, "_etcd-client._tcp.example.com.", TYPE_SRV).unwrap();
        let r = srv_response(
            &q,
            0,
            &[
                (0, 10, 2379, "m1.example.com."),
                (1, 0, 2380, "m2.example.com."),
            ],
        );
        let resp = decode_response(&r).unwrap();
        assert_eq!(resp.id, 7);
        assert!(resp.is_response && resp.recursion_available && !resp.truncated);
        assert_eq!(
            resp.question,
            Some(("_etcd-client._tcp.example.com.".to_string(), TYPE_SRV))
        );
        assert_eq!(resp.answers[0].name, "_etcd-client._tcp.example.com.");
        assert_eq!(
            resp.answers[1].srv,
            Some(Srv {
                target: "m2.example.com.".into(),
                port: 2380,
                priority: 1,
                weight: 0
            })
        );
        assert!(decode_response(&r[..r.len() - 3]).is_err());
        // A pointer loop is refused, not followed forever.
        let mut looped = r.clone();
        looped[12] = 0xc0;
        looped[13] = 12;
        assert!(decode_response(&looped).is_err());
    }
}
