//! `kflow cluster status`: a cluster job's workers and leases, read from
//! its lease table: who holds each source shard and key group, when the
//! holder last renewed it, pending hand-overs, and the progress each holder
//! reported with its last renewal (lag per shard and per key group), and
//! the latest changes of hands from the leases' histories.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kflow_jobs::{ClusterPlan, JobPlan};

use crate::cluster::{Change, Lease, LeaseKind, LeaseTable};
use crate::error::EngineError;

/// The status of `plan`'s cluster, as text.
///
/// # Errors
/// [`EngineError::NotClustered`] when the job has no `[job.cluster]`;
/// [`EngineError::Leases`] when the table cannot be read.
pub fn status(plan: &JobPlan) -> Result<String, EngineError> {
    let Some(cluster) = &plan.cluster else {
        return Err(EngineError::NotClustered(
            plan.job_path.display().to_string(),
        ));
    };
    let table = LeaseTable::open(&cluster.leases_table, cluster.endpoint.as_deref())?;
    let leases = table.leases()?;
    Ok(render(
        cluster,
        &leases,
        chrono::Utc::now().timestamp_millis(),
    ))
}

/// Renders the leases as read at wall-clock `now_ms`.
pub fn render(cluster: &ClusterPlan, leases: &[Lease], now_ms: i64) -> String {
    let mut out = String::new();
    let ago = |ms: Option<i64>| match ms {
        Some(ms) => format!("{:.1} s ago", (now_ms - ms).max(0) as f64 / 1000.0),
        None => "never".to_string(),
    };
    let live: Vec<&Lease> = leases.iter().filter(|l| !l.ended).collect();
    let ended = leases.len() - live.len();
    let _ = writeln!(
        out,
        "lease table {}: {} shard lease(s) ({ended} ended), {} key group(s) of {}, failover {:?}",
        cluster.leases_table,
        live.iter().filter(|l| l.kind() == LeaseKind::Shard).count(),
        live.iter().filter(|l| l.kind() == LeaseKind::Group).count(),
        cluster.key_groups,
        cluster.failover_timeout,
    );
    // Per worker: shards, groups, newest renewal.
    let mut workers: BTreeMap<String, (usize, usize, Option<i64>)> = BTreeMap::new();
    for lease in &live {
        let owner = lease.owner.clone().unwrap_or_else(|| "(free)".to_string());
        let entry = workers.entry(owner).or_default();
        match lease.kind() {
            LeaseKind::Shard => entry.0 += 1,
            LeaseKind::Group => entry.1 += 1,
        }
        if lease.owner.is_some() {
            entry.2 = entry.2.max(lease.renewed_ms);
        }
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:>6} {:>10}  last renewal",
        "worker", "shards", "key groups"
    );
    for (worker, (shards, groups, renewed)) in &workers {
        let renewed = if worker == "(free)" {
            String::new()
        } else {
            ago(*renewed)
        };
        let _ = writeln!(out, "{worker:<24} {shards:>6} {groups:>10}  {renewed}");
    }
    let _ = writeln!(
        out,
        "\n{:<28} {:<24} {:>8}  {:<12} {:<14} status",
        "lease", "owner", "counter", "renewed", "hand-over to"
    );
    for lease in leases {
        let owner = match (&lease.owner, lease.ended) {
            (_, true) => "(ended)".to_string(),
            (Some(owner), false) => owner.clone(),
            (None, false) => "(free)".to_string(),
        };
        let renewed = if lease.owner.is_some() {
            ago(lease.renewed_ms)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<28} {:<24} {:>8}  {:<12} {:<14} {}",
            lease.key,
            owner,
            lease.counter,
            renewed,
            lease.claim.as_deref().unwrap_or(""),
            lease.status.as_deref().unwrap_or(""),
        );
    }
    let mut changes: Vec<(i64, &str, Change)> = leases
        .iter()
        .flat_map(|l| {
            l.history
                .iter()
                .filter_map(|t| Change::parse(t))
                .map(move |c| (at_ms(&c), l.key.as_str(), c))
        })
        .collect();
    changes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    if !changes.is_empty() {
        let _ = writeln!(out, "\nlatest changes of hands");
    }
    for (at, key, change) in changes.into_iter().take(RECENT_CHANGES) {
        let what = match change {
            Change::Taken {
                by,
                from: Some(from),
                from_renewed_ms,
                ..
            } => {
                let silent = from_renewed_ms.map_or("?".to_string(), |ms| {
                    format!("{:.1}", (at - ms) as f64 / 1e3)
                });
                format!("taken by {by} from {from} (silent for {silent} s)")
            }
            Change::Taken { by, .. } => format!("taken by {by}"),
            Change::Released {
                by, ended: true, ..
            } => format!("ended by {by}"),
            Change::Released { by, .. } => format!("handed back by {by}"),
        };
        let _ = writeln!(out, "{:<12} {key:<28} {what}", ago(Some(at)));
    }
    out
}

/// Changes of hands shown.
const RECENT_CHANGES: usize = 10;

fn at_ms(change: &Change) -> i64 {
    match change {
        Change::Taken { at_ms, .. } | Change::Released { at_ms, .. } => *at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn workers_and_leases_are_listed() {
        let cluster = ClusterPlan {
            leases_table: "t".into(),
            key_groups: 2,
            shuffle_stream: None,
            shuffle_shards: 1,
            failover_timeout: Duration::from_secs(10),
            endpoint: None,
            region: None,
        };
        let leases = vec![
            Lease {
                key: Lease::group_key(0),
                owner: Some("w1".into()),
                counter: 7,
                renewed_ms: Some(9_000),
                status: Some("behind 1.5 s".into()),
                history: vec![
                    "1000 take w2 #1".into(),
                    "4000 take w1 #5 from w2 renewed 1500".into(),
                ],
                ..Lease::default()
            },
            Lease {
                key: Lease::group_key(1),
                claim: Some("w2".into()),
                ..Lease::default()
            },
            Lease {
                key: Lease::shard_key("s0"),
                ended: true,
                ..Lease::default()
            },
        ];
        let text = render(&cluster, &leases, 10_000);
        assert!(
            text.contains("0 shard lease(s) (1 ended), 2 key group(s) of 2"),
            "{text}"
        );
        assert!(
            text.contains("w1                            0          1  1.0 s ago"),
            "{text}"
        );
        assert!(
            text.contains("(free)                        0          1"),
            "{text}"
        );
        assert!(text.contains("behind 1.5 s"), "{text}");
        assert!(text.contains("(ended)"), "{text}");
        assert!(
            text.contains(
                "6.0 s ago    group/0000                   taken by w1 from w2 (silent for 2.5 s)"
            ),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("group/0001") && l.contains("w2")),
            "{text}"
        );
    }
}
