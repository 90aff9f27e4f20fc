//! Record framing and the CRC-32C that chains records.
//!
//! ```text
//!  0               8                      8+len           8+len+pad
//!  +---------------+----------------------+---------------+
//!  | length field  | walpb.Record bytes   | pad (zeros)   |
//!  | u64 LE        | (len bytes)          | (0..7 bytes)  |
//!  +---------------+----------------------+---------------+
//!
//!  length field: bits 0..56  = len
//!                bits 56..64 = 0x80 | pad  when pad != 0, else 0
//! ```

/// Bytes of the length field in front of every record.
pub const FRAME_HEADER: u64 = 8;

/// etcd 3.4 and 3.5 refuse a record whose length plus padding reaches 10 MiB
/// (`maxWALEntrySizeLimit`); we refuse the same when reading and writing.
pub const MAX_RECORD_BYTES: u64 = 10 * 1024 * 1024;

/// The 8-byte length field for a record of `len` bytes, and its padding.
pub fn encode_frame_len(len: u64) -> (u64, u64) {
    let pad = (8 - len % 8) % 8;
    let mut field = len;
    if pad != 0 {
        field |= (0x80 | pad) << 56;
    }
    (field, pad)
}

/// Splits a length field into (record length, padding length).
pub fn decode_frame_len(field: u64) -> (u64, u64) {
    let len = field & 0x00ff_ffff_ffff_ffff;
    // Go reads the field as a signed int64: padding only when it is negative.
    let pad = if field >> 63 == 1 {
        (field >> 56) & 0x7
    } else {
        0
    };
    (len, pad)
}

/// Appends one framed record (`body` is the encoded walpb.Record).
pub fn frame(out: &mut Vec<u8>, body: &[u8]) {
    let (field, pad) = encode_frame_len(body.len() as u64);
    out.extend_from_slice(&field.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + pad as usize, 0);
}

/// CRC-32C continued from `crc` over `data` (Go's `crc32.Update(crc,
/// castagnoliTable, data)`: the running value is the finished checksum of
/// everything so far, so it chains across calls). The `crc32c` crate uses
/// the CPU's CRC instruction where there is one: a table loop was a third
/// of the time of converting a 1 GB etcd log.
pub fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c_update(0, b"123456789"), 0xe306_9283);
        // Chaining equals one pass.
        let a = crc32c_update(0, b"12345");
        assert_eq!(crc32c_update(a, b"6789"), 0xe306_9283);
    }

    #[test]
    fn frame_round_trip_all_paddings() {
        for len in 0..40u64 {
            let (field, pad) = encode_frame_len(len);
            assert_eq!((len + pad) % 8, 0);
            assert_eq!(decode_frame_len(field), (len, pad));
            let mut out = Vec::new();
            frame(&mut out, &vec![1u8; len as usize]);
            assert_eq!(out.len() as u64, 8 + len + pad);
        }
        // etcd's own example: 5 bytes -> 3 bytes of padding, top byte 0x83.
        assert_eq!(encode_frame_len(5).0, 0x8300_0000_0000_0005);
    }
}
