//! Which leases a worker should take or claim, decided from one read of
//! the lease table: a pure function, so the policy is tested without
//! DynamoDB.
//!
//! Shards and key groups are balanced separately: each worker aims at
//! `ceil(n / workers)` of each kind, where `workers` counts the owners of
//! live leases and this worker. Under its share, a worker first takes free
//! leases (never held, handed back, or expired: their counter did not move
//! for `failover_timeout`); when none is left it *claims* one lease of the
//! most loaded worker above the share. A claim does not move the lease: the
//! owner sees it when it renews, checkpoints what the lease covers, and
//! hands it back, and then the claimant takes it. So a rebalance never has
//! two workers processing one lease, unlike the KCL's lease stealing.
//! A shard is eligible only once every parent shard has ended, so a child
//! is read after its parents across workers.

use std::collections::{BTreeMap, HashMap};

use super::table::{Lease, LeaseKind};

/// What one worker should do after reading the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free or expired leases to take.
    pub take: Vec<Lease>,
    /// Leases of an overloaded worker to ask for.
    pub claim: Vec<Lease>,
}

/// Decides what worker `me` should take and claim among `leases`.
/// `expired(lease)`: its counter has not moved for `failover_timeout`,
/// seen from this worker.
pub fn plan(me: &str, leases: &[Lease], expired: &dyn Fn(&Lease) -> bool) -> Plan {
    let mut out = Plan::default();
    let ended: HashMap<&str, bool> = leases
        .iter()
        .filter_map(|l| Some((l.key.strip_prefix("shard/")?, l.ended)))
        .collect();
    let mut workers: Vec<&str> = leases.iter().filter_map(|l| live(l, expired)).collect();
    workers.push(me);
    workers.sort_unstable();
    workers.dedup();
    for kind in [LeaseKind::Shard, LeaseKind::Group] {
        let eligible: Vec<&Lease> = leases
            .iter()
            .filter(|l| l.kind() == kind && !l.ended)
            .filter(|l| {
                l.parents
                    .iter()
                    .all(|p| ended.get(p.as_str()).copied().unwrap_or(true))
            })
            .collect();
        if eligible.is_empty() {
            continue;
        }
        let target = eligible.len().div_ceil(workers.len());
        let mut load: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for lease in &eligible {
            if let Some(owner) = live(lease, expired) {
                load.entry(owner).or_default().push(lease);
            }
        }
        let mine = load.get(me).map_or(0, Vec::len);
        if mine >= target {
            continue;
        }
        // Free leases, a claim by another live claimant respected until
        // it goes stale.
        let mut free: Vec<&Lease> = eligible
            .iter()
            .copied()
            .filter(|l| live(l, expired).is_none())
            .filter(|l| l.claim.as_deref().is_none_or(|c| c == me) || expired(l))
            .collect();
        // Workers start at different offsets so that they race less.
        if !free.is_empty() {
            let start = spread(me) % free.len();
            free.rotate_left(start);
        }
        // Our own claims first.
        free.sort_by_key(|l| l.claim.as_deref() != Some(me));
        let wanted = target - mine;
        out.take
            .extend(free.iter().take(wanted).map(|l| (*l).clone()));
        if free.len() >= wanted {
            continue;
        }
        let claimed = eligible.iter().any(|l| l.claim.as_deref() == Some(me));
        if claimed {
            continue;
        }
        // The most loaded worker above the share gives one lease up.
        let richest = load
            .iter()
            .filter(|(owner, _)| **owner != me)
            .max_by_key(|(owner, held)| (held.len(), std::cmp::Reverse(**owner)));
        if let Some((_, held)) = richest {
            if held.len() > target || held.len() > mine + 1 {
                if let Some(lease) = held.iter().rev().find(|l| l.claim.is_none()) {
                    out.claim.push((*lease).clone());
                }
            }
        }
    }
    out
}

/// A lease's live owner: nobody when free or expired.
fn live<'a>(lease: &'a Lease, expired: &dyn Fn(&Lease) -> bool) -> Option<&'a str> {
    lease.owner.as_deref().filter(|_| !expired(lease))
}

/// A stable number from a worker id (FNV-1a).
fn spread(worker: &str) -> usize {
    worker.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: u32, owner: Option<&str>) -> Lease {
        Lease {
            key: Lease::group_key(n),
            owner: owner.map(str::to_string),
            ..Lease::default()
        }
    }

    fn never(_: &Lease) -> bool {
        false
    }

    #[test]
    fn a_lone_worker_takes_everything_free() {
        let leases: Vec<Lease> = (0..16).map(|n| group(n, None)).collect();
        let plan = plan("w1", &leases, &never);
        assert_eq!(plan.take.len(), 16);
        assert!(plan.claim.is_empty());
    }

    #[test]
    fn a_worker_takes_only_its_share() {
        let mut leases: Vec<Lease> = (0..16).map(|n| group(n, None)).collect();
        for lease in leases.iter_mut().take(4) {
            lease.owner = Some("w1".into());
        }
        // w1 (4 held) and w2 (new): 8 each.
        let plan = plan("w2", &leases, &never);
        assert_eq!(plan.take.len(), 8);
        assert!(plan.take.iter().all(|l| l.owner.is_none()));
    }

    #[test]
    fn a_newcomer_claims_from_the_most_loaded() {
        let mut leases: Vec<Lease> = (0..16).map(|n| group(n, Some("w1"))).collect();
        for lease in leases.iter_mut().skip(10) {
            lease.owner = Some("w2".into());
        }
        let plan = plan("w3", &leases, &never);
        assert!(plan.take.is_empty());
        assert_eq!(plan.claim.len(), 1);
        assert_eq!(plan.claim[0].owner.as_deref(), Some("w1"));
        // One claim at a time.
        leases[0].claim = Some("w3".into());
        assert!(super::plan("w3", &leases, &never).claim.is_empty());
    }

    #[test]
    fn balanced_workers_leave_each_other_alone() {
        let owners = ["w1", "w2", "w3"];
        let leases: Vec<Lease> = (0..16)
            .map(|n| group(n, Some(owners[n as usize % 3])))
            .collect();
        for me in owners {
            assert_eq!(plan(me, &leases, &never), Plan::default(), "{me}");
        }
    }

    #[test]
    fn expired_leases_are_taken_and_their_owner_not_counted() {
        let mut leases: Vec<Lease> = (0..8).map(|n| group(n, Some("dead"))).collect();
        leases.extend((8..16).map(|n| group(n, Some("w1"))));
        let expired = |l: &Lease| l.owner.as_deref() == Some("dead");
        let plan = plan("w1", &leases, &expired);
        // Alone now: all 16 are w1's share.
        assert_eq!(plan.take.len(), 8);
        assert!(plan.take.iter().all(|l| l.owner.as_deref() == Some("dead")));
    }

    #[test]
    fn a_child_shard_waits_for_its_parents() {
        let parent = Lease {
            key: Lease::shard_key("s0"),
            owner: Some("w2".into()),
            ..Lease::default()
        };
        let child = Lease {
            key: Lease::shard_key("s1"),
            parents: vec!["s0".into()],
            ..Lease::default()
        };
        let leases = vec![parent.clone(), child.clone()];
        assert!(plan("w1", &leases, &never).take.is_empty());
        let ended = Lease {
            ended: true,
            owner: None,
            ..parent
        };
        let plan = plan("w1", &[ended, child.clone()], &never);
        assert_eq!(plan.take, vec![child]);
    }

    #[test]
    fn another_workers_claim_is_respected_until_stale() {
        let mut lease = group(0, None);
        lease.claim = Some("w2".into());
        let leases = vec![lease, group(1, Some("w3"))];
        assert!(plan("w1", &leases, &never).take.is_empty());
        assert_eq!(plan("w2", &leases, &never).take.len(), 1);
        let stale = |l: &Lease| l.owner.is_none();
        assert_eq!(plan("w1", &leases, &stale).take.len(), 1);
    }
}
