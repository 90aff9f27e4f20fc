//! The readable dump of a partition that is not linearizable.

use std::collections::HashSet;
use std::fmt::Write;

use crate::history::Operation;
use crate::model::Model;

/// Lists the operations on `key` in call order, then the longest linearizable prefix the
/// search found (`prefix`, as history indices) with the state after it.
///
/// ```text
/// 2 operations; times in ns since the first call of the history
///   op  client  call  return  input -> output
///   #0       1     0      10  Put { key: "k", value: "a" } -> Put
///   #1       2    20      30  Get { key: "k" } -> Get { value: None }
/// longest linearizable prefix (1 of 2): #0
/// state after it: Some("a")
/// not linearized: #1
/// ```
pub(crate) fn excerpt<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    key: &str,
    prefix: &[usize],
    state: &M::State,
) -> String {
    let origin = history.iter().map(|op| op.call_ns).min().unwrap_or(0);
    let mut on_key: Vec<usize> = (0..history.len())
        .filter(|&index| model.partition(&history[index].input) == key)
        .collect();
    on_key.sort_by_key(|&index| (history[index].call_ns, index));

    let header = ["op", "client", "call", "return"].map(str::to_owned);
    let mut rows = vec![(header, "input -> output".to_owned())];
    for &index in &on_key {
        let op = &history[index];
        let (ret, output) = match &op.ret {
            Some(ret) => (
                (ret.ret_ns - origin).to_string(),
                format!("{:?}", ret.output),
            ),
            None => ("-".to_owned(), "(never returned)".to_owned()),
        };
        let cells = [
            format!("#{index}"),
            op.client_id.to_string(),
            (op.call_ns - origin).to_string(),
            ret,
        ];
        rows.push((cells, format!("{:?} -> {output}", op.input)));
    }
    let mut widths = [0; 4];
    for (cells, _) in &rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{} operations; times in ns since the first call of the history",
        on_key.len()
    );
    for ([op, client, call, ret], rest) in &rows {
        let _ = writeln!(
            out,
            "  {op:<w0$}  {client:>w1$}  {call:>w2$}  {ret:>w3$}  {rest}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    }
    let names = |indices: &mut dyn Iterator<Item = usize>| {
        let names: Vec<String> = indices.map(|index| format!("#{index}")).collect();
        if names.is_empty() {
            "(none)".to_owned()
        } else {
            names.join(" ")
        }
    };
    let _ = writeln!(
        out,
        "longest linearizable prefix ({} of {}): {}",
        prefix.len(),
        on_key.len(),
        names(&mut prefix.iter().copied())
    );
    let _ = writeln!(out, "state after it: {state:?}");
    // Pending reads were dropped before the search: they are neither in nor out.
    let in_prefix: HashSet<usize> = prefix.iter().copied().collect();
    let left_out = on_key.iter().copied().filter(|index| {
        let operation = &history[*index];
        let dropped = operation.ret.is_none() && model.is_read_only(&operation.input, None);
        !in_prefix.contains(index) && !dropped
    });
    let _ = write!(out, "not linearized: {}", names(&mut { left_out }));
    out
}
