//! `kflow-gen EVENTS USERS SEED [DUP_RATE] > events.jsonl`: writes a
//! benchmark workload's input (see `kflow_benches::workload`).

use std::io::{BufWriter, Write};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: f64| {
        args.get(i)
            .and_then(|a| a.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let workload = kflow_benches::workload::Workload {
        events: arg(0, 1_000_000.0) as u64,
        users: arg(1, 100_000.0) as u64,
        seed: arg(2, 42.0) as u64,
        duplicate_rate: arg(3, 0.0),
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    kflow_benches::workload::write_events(&workload, &mut out)?;
    out.flush()
}
