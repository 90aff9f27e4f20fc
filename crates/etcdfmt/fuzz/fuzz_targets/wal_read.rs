//! Any bytes as one or two WAL segments, and as a snap file: the readers
//! must answer Ok or Err, never panic, never hang, never allocate beyond
//! the input's size.
#![no_main]

use etcdfmt::snap;
use etcdfmt::wal::{self, WalSnapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wal::looks_like_etcd_wal(data);
    let _ = snap::decode_snap_file(std::path::Path::new("fuzz.snap"), data);
    let Ok(dir) = tempfile::tempdir() else { return };
    // The first byte picks where to split the input into two segments.
    let (first, second) = match data.split_first() {
        Some((&k, rest)) if k & 1 == 1 => {
            let at = (usize::from(k) * rest.len() / 256).min(rest.len());
            rest.split_at(at)
        }
        _ => (data, &[][..]),
    };
    if std::fs::write(dir.path().join(wal::segment_name(0, 0)), first).is_err() {
        return;
    }
    if !second.is_empty()
        && std::fs::write(dir.path().join(wal::segment_name(1, 2)), second).is_err()
    {
        return;
    }
    let _ = wal::classify_dir(dir.path());
    let _ = wal::valid_snapshots(dir.path());
    let _ = wal::read_dir(dir.path(), WalSnapshot::default());
    let _ = wal::read_dir(
        dir.path(),
        WalSnapshot {
            index: 3,
            term: 1,
            conf_state: None,
        },
    );
    // The streaming read that a conversion uses: entries up to index 2 are
    // handed out once each, the rest kept.
    let mut handed_out = 0u64;
    let _ = wal::read_dir_split(dir.path(), WalSnapshot::default(), 2, |e| {
        assert!(e.index <= 2, "entry {} handed out past the split", e.index);
        handed_out += 1;
        Ok::<(), wal::Error>(())
    });
    assert!(handed_out <= 2, "{handed_out} entries handed out up to index 2");
});
