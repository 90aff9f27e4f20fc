//! Any bytes given to the bbolt reader: open, walk, check. Errors are
//! fine; panics, hangs and unbounded memory are the bugs this looks for.

#![no_main]

use std::io::Write;

use etcdfmt::bbolt::Db;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::tempfile() else { return };
    if file.write_all(data).is_err() {
        return;
    }
    let Ok(db) = Db::open_with_len(file, data.len() as u64) else { return };
    let _ = db.buckets();
    let _ = db.walk(&mut |_, _, _| Ok(()));
    let _ = db.for_each(b"key", &mut |_, _| Ok(()));
    let _ = db.check();
    let _ = db.free_pages_count();
});
