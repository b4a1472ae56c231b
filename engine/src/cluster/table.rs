//! The lease table in DynamoDB: one item per lease, every change a
//! conditional write on the lease's counter, so that of two workers racing
//! for a lease exactly one wins and the other learns it lost.
//!
//! An item:
//!
//! | attribute    | meaning                                                  |
//! |--------------|----------------------------------------------------------|
//! | `lease`      | the key: `shard/<shard id>` or `group/<n>`                |
//! | `counter`    | bumped by every write (a heartbeat when renewed)         |
//! | `owner`      | the worker holding it; absent when free                  |
//! | `claim`      | a worker that asked the owner to hand it over            |
//! | `parents`    | a shard's parent shards (its lease waits for them)       |
//! | `ended`      | a shard read to its end: never leased again              |
//! | `checkpoint` | the owner's last checkpoint of it (opaque text)          |
//! | `status`     | the owner's last report of its progress (opaque text)    |
//! | `renewed`    | wall-clock ms of the owner's last take or renewal (shown by `kflow cluster status`; never used to decide expiry) |
//! | `history`    | the last [`HISTORY_KEPT`] takes and releases ([`Change`]), written by the same conditional write |

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::dynamo::{Dynamo, Item, Update};
use crate::aws::{AwsError, RetryPolicy};
use crate::error::EngineError;

/// The key attribute.
const KEY: &str = "lease";

/// Changes of hands a lease item keeps.
pub const HISTORY_KEPT: usize = 32;

/// One lease as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lease {
    /// `shard/<shard id>` or `group/<n>`.
    pub key: String,
    /// Bumped by every write.
    pub counter: u64,
    /// The worker holding it.
    pub owner: Option<String>,
    /// A worker waiting for the owner to hand it over.
    pub claim: Option<String>,
    /// A shard's parents.
    pub parents: Vec<String>,
    /// A shard read to its end.
    pub ended: bool,
    /// The owner's last checkpoint of it.
    pub checkpoint: Option<String>,
    /// The owner's last progress report.
    pub status: Option<String>,
    /// Wall-clock milliseconds of the last take or renewal (for people).
    pub renewed_ms: Option<i64>,
    /// The last takes and releases, oldest first, as [`Change::text`].
    pub history: Vec<String>,
}

/// One change of hands in a lease's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `by` took the lease at `at_ms`, making the counter `counter`; it was
    /// `from`'s, last renewed at `from_renewed_ms` (both `None`: it was
    /// free).
    Taken {
        /// Wall clock of the take, ms.
        at_ms: i64,
        /// The new owner.
        by: String,
        /// The counter the take wrote.
        counter: u64,
        /// The owner it was taken from.
        from: Option<String>,
        /// That owner's last renewal, ms.
        from_renewed_ms: Option<i64>,
    },
    /// `by` released the lease at `at_ms` (`ended`: for good).
    Released {
        /// Wall clock of the release, ms.
        at_ms: i64,
        /// The owner that let it go.
        by: String,
        /// Read to its end: never leased again.
        ended: bool,
    },
}

impl Change {
    /// `AT take BY #COUNTER [from OWNER renewed MS]` or
    /// `AT release BY ended|free`.
    pub fn text(&self) -> String {
        match self {
            Change::Taken {
                at_ms,
                by,
                counter,
                from,
                from_renewed_ms,
            } => {
                let mut text = format!("{at_ms} take {by} #{counter}");
                if let Some(from) = from {
                    let renewed = from_renewed_ms.map_or("-".to_string(), |ms| ms.to_string());
                    text.push_str(&format!(" from {from} renewed {renewed}"));
                }
                text
            }
            Change::Released { at_ms, by, ended } => {
                let how = if *ended { "ended" } else { "free" };
                format!("{at_ms} release {by} {how}")
            }
        }
    }

    /// Reads [`Change::text`] back.
    pub fn parse(text: &str) -> Option<Change> {
        let words: Vec<&str> = text.split(' ').collect();
        let at_ms = words.first()?.parse().ok()?;
        match words.get(1..)? {
            ["take", by, counter] => Some(Change::Taken {
                at_ms,
                by: by.to_string(),
                counter: counter.strip_prefix('#')?.parse().ok()?,
                from: None,
                from_renewed_ms: None,
            }),
            ["take", by, counter, "from", from, "renewed", renewed] => Some(Change::Taken {
                at_ms,
                by: by.to_string(),
                counter: counter.strip_prefix('#')?.parse().ok()?,
                from: Some(from.to_string()),
                from_renewed_ms: renewed.parse().ok(),
            }),
            ["release", by, how] => Some(Change::Released {
                at_ms,
                by: by.to_string(),
                ended: *how == "ended",
            }),
            _ => None,
        }
    }
}

/// What a lease stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeaseKind {
    /// A source shard.
    Shard,
    /// A key group of the windows.
    Group,
}

impl Lease {
    /// The key of source shard `shard`'s lease.
    pub fn shard_key(shard: &str) -> String {
        format!("shard/{shard}")
    }

    /// The key of key group `group`'s lease.
    pub fn group_key(group: u32) -> String {
        format!("group/{group:04}")
    }

    /// What the lease stands for.
    pub fn kind(&self) -> LeaseKind {
        if self.key.starts_with("shard/") {
            LeaseKind::Shard
        } else {
            LeaseKind::Group
        }
    }

    fn from_item(item: &Item) -> Option<Lease> {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        };
        Some(Lease {
            key: text(KEY)?,
            counter: match item.get("counter") {
                Some(AttributeValue::N(n)) => n.parse().ok()?,
                _ => 0,
            },
            owner: text("owner"),
            claim: text("claim"),
            parents: match item.get("parents") {
                Some(AttributeValue::Ss(list)) => list.clone(),
                _ => Vec::new(),
            },
            ended: matches!(item.get("ended"), Some(AttributeValue::Bool(true))),
            checkpoint: text("checkpoint"),
            status: text("status"),
            renewed_ms: match item.get("renewed") {
                Some(AttributeValue::N(n)) => n.parse().ok(),
                _ => None,
            },
            history: match item.get("history") {
                Some(AttributeValue::L(list)) => {
                    list.iter().filter_map(|v| v.as_s().ok().cloned()).collect()
                }
                _ => Vec::new(),
            },
        })
    }

    /// Its history with `change` added, the oldest dropped past
    /// [`HISTORY_KEPT`].
    fn history_with(&self, change: &Change) -> AttributeValue {
        let skip = (self.history.len() + 1).saturating_sub(HISTORY_KEPT);
        let mut list: Vec<AttributeValue> = self.history[skip..].iter().map(|t| text(t)).collect();
        list.push(text(&change.text()));
        AttributeValue::L(list)
    }
}

/// A job's lease table.
pub struct LeaseTable {
    dynamo: Dynamo,
    table: String,
}

/// A write the lease table refused because the lease changed meanwhile
/// is `Ok(None)`; `Err` is a call that failed.
pub type Written = Result<Option<Lease>, EngineError>;

impl LeaseTable {
    /// The table `table` (`dynamodb://table` in the job) at `endpoint`
    /// (`None`: the standard AWS chain), created when missing.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when DynamoDB cannot be reached or refuses.
    pub fn open(table: &str, endpoint: Option<&str>) -> Result<LeaseTable, EngineError> {
        let fail = |what: &str, e: AwsError| lease_error(table, what, e);
        let dynamo =
            Dynamo::connect(endpoint, RetryPolicy::BRIEF).map_err(|e| fail("connecting", e))?;
        dynamo
            .ensure_table(table, KEY)
            .map_err(|e| fail("creating the table", e))?;
        Ok(LeaseTable {
            dynamo,
            table: table.to_string(),
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.table
    }

    /// Every lease, in key order.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the scan fails.
    pub fn leases(&self) -> Result<Vec<Lease>, EngineError> {
        let items = self
            .dynamo
            .scan(&self.table)
            .map_err(|e| lease_error(&self.table, "reading the leases", e))?;
        let mut leases: Vec<Lease> = items.iter().filter_map(Lease::from_item).collect();
        leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(leases)
    }

    /// Creates lease `key` (free) unless it exists: `Some` when this call
    /// created it.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the write fails.
    pub fn create(&self, key: &str, parents: &[String]) -> Written {
        let mut update = self.update(key, "SET #counter = :zero", "attribute_not_exists(#key)");
        update.names.insert("#key".into(), KEY.into());
        update.values.insert(":zero".into(), number(0));
        if !parents.is_empty() {
            update.update.push_str(", #parents = :parents");
            update.names.insert("#parents".into(), "parents".into());
            update
                .values
                .insert(":parents".into(), AttributeValue::Ss(parents.to_vec()));
        }
        self.write(&update, "creating a lease")
    }

    /// Takes `lease` for `worker`, if it is still as read (same counter).
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the write fails.
    pub fn take(&self, lease: &Lease, worker: &str) -> Written {
        let mut update = self.counted(
            lease,
            "SET #owner = :me, #renewed = :now, #history = :history REMOVE #claim",
        );
        update.names.insert("#owner".into(), "owner".into());
        update.names.insert("#claim".into(), "claim".into());
        update.values.insert(":me".into(), text(worker));
        let now = stamp(&mut update);
        let change = Change::Taken {
            at_ms: now,
            by: worker.to_string(),
            counter: lease.counter + 1,
            from: lease.owner.clone(),
            from_renewed_ms: lease.owner.as_ref().and(lease.renewed_ms),
        };
        history(&mut update, lease, &change);
        self.write(&update, "taking a lease")
    }

    /// Renews `worker`'s `lease` (bumps its counter), with its progress
    /// `status`; `None` when the lease is no longer `worker`'s as it was.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the write fails.
    pub fn renew(&self, lease: &Lease, worker: &str, status: Option<&str>) -> Written {
        let mut update = self.owned(lease, worker, "SET #owner = :me, #renewed = :now");
        stamp(&mut update);
        if let Some(status) = status {
            update.update.push_str(", #status = :status");
            update.names.insert("#status".into(), "status".into());
            update.values.insert(":status".into(), text(status));
        }
        self.write(&update, "renewing a lease")
    }

    /// Records `worker`'s checkpoint of `lease`.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the write fails.
    pub fn checkpoint(&self, lease: &Lease, worker: &str, checkpoint: &str) -> Written {
        let mut update = self.owned(lease, worker, "SET #checkpoint = :checkpoint");
        update
            .names
            .insert("#checkpoint".into(), "checkpoint".into());
        update.values.insert(":checkpoint".into(), text(checkpoint));
        self.write(&update, "recording a checkpoint")
    }

    /// Hands `worker`'s `lease` back (free; `ended` for a shard read to its
    /// end, which no one leases again).
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the write fails.
    pub fn release(&self, lease: &Lease, worker: &str, ended: bool) -> Written {
        let action = if ended {
            "SET #ended = :true, #history = :history REMOVE #owner"
        } else {
            "SET #history = :history REMOVE #owner"
        };
        let mut update = self.owned(lease, worker, action);
        let change = Change::Released {
            at_ms: chrono::Utc::now().timestamp_millis(),
            by: worker.to_string(),
            ended,
        };
        history(&mut update, lease, &change);
        if ended {
            update.names.insert("#ended".into(), "ended".into());
            update
                .values
                .insert(":true".into(), AttributeValue::Bool(true));
        }
        self.write(&update, "releasing a lease")
    }

    /// Asks the owner of `lease` to hand it to `worker`, if it is still as
    /// read.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the write fails.
    pub fn claim(&self, lease: &Lease, worker: &str) -> Written {
        // The counter stays: a claim changes no holding, and the owner's
        // next renewal (conditional on the counter) must still succeed and
        // bring the claim back to it.
        let mut update = self.update(&lease.key, "SET #claim = :me", "#counter = :counter");
        update.names.insert("#claim".into(), "claim".into());
        update.values.insert(":me".into(), text(worker));
        update
            .values
            .insert(":counter".into(), number(lease.counter));
        self.write(&update, "claiming a lease")
    }

    /// An update of `key` with `action` under `condition`.
    fn update(&self, key: &str, action: &str, condition: &str) -> Update {
        Update {
            key: (KEY.to_string(), key.to_string()),
            update: action.to_string(),
            condition: condition.to_string(),
            names: HashMap::from([("#counter".to_string(), "counter".to_string())]),
            values: HashMap::new(),
        }
    }

    /// `action` plus a counter bump, if the counter is still `lease`'s.
    fn counted(&self, lease: &Lease, action: &str) -> Update {
        let (verb, rest) = action.split_once(' ').unwrap_or((action, ""));
        let action = if verb == "SET" {
            format!("SET #counter = :next, {rest}")
        } else {
            format!("SET #counter = :next {action}")
        };
        let mut update = self.update(&lease.key, &action, "#counter = :counter");
        update
            .values
            .insert(":counter".into(), number(lease.counter));
        update
            .values
            .insert(":next".into(), number(lease.counter + 1));
        update
    }

    /// [`LeaseTable::counted`], if `worker` also still owns it.
    fn owned(&self, lease: &Lease, worker: &str, action: &str) -> Update {
        let mut update = self.counted(lease, action);
        update.condition.push_str(" AND #owner = :me");
        update.names.insert("#owner".into(), "owner".into());
        update.values.insert(":me".into(), text(worker));
        update
    }

    fn write(&self, update: &Update, what: &str) -> Written {
        let item = self
            .dynamo
            .update(&self.table, update)
            .map_err(|e| lease_error(&self.table, what, e))?;
        Ok(item.as_ref().and_then(Lease::from_item))
    }
}

/// Sets `:now` of `#renewed` to the wall clock; returns it.
fn stamp(update: &mut Update) -> i64 {
    update.names.insert("#renewed".into(), "renewed".into());
    let now = chrono::Utc::now().timestamp_millis();
    update
        .values
        .insert(":now".into(), AttributeValue::N(now.to_string()));
    now
}

/// Sets `:history` of `#history` to `lease`'s history with `change`.
fn history(update: &mut Update, lease: &Lease, change: &Change) {
    update.names.insert("#history".into(), "history".into());
    update
        .values
        .insert(":history".into(), lease.history_with(change));
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn text(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_string())
}

fn lease_error(table: &str, what: &str, source: AwsError) -> EngineError {
    EngineError::Leases {
        table: table.to_string(),
        what: what.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_kind() {
        let shard = Lease {
            key: Lease::shard_key("shardId-000000000001"),
            ..Lease::default()
        };
        assert_eq!(shard.kind(), LeaseKind::Shard);
        let group = Lease {
            key: Lease::group_key(7),
            ..Lease::default()
        };
        assert_eq!(group.key, "group/0007");
        assert_eq!(group.kind(), LeaseKind::Group);
    }

    #[test]
    fn items_read_back_as_leases() {
        let item: Item = HashMap::from([
            (KEY.to_string(), text("shard/s1")),
            ("counter".to_string(), number(12)),
            ("owner".to_string(), text("w1")),
            ("parents".to_string(), AttributeValue::Ss(vec!["s0".into()])),
            ("ended".to_string(), AttributeValue::Bool(true)),
        ]);
        let lease = Lease::from_item(&item).expect("a lease");
        assert_eq!(lease.counter, 12);
        assert_eq!(lease.owner.as_deref(), Some("w1"));
        assert_eq!(lease.parents, vec!["s0".to_string()]);
        assert!(lease.ended);
        assert!(lease.claim.is_none());
        assert!(Lease::from_item(&HashMap::new()).is_none());
    }

    #[test]
    fn changes_read_back_and_history_stays_bounded() {
        let changes = [
            Change::Taken {
                at_ms: 5,
                by: "w1".into(),
                counter: 1,
                from: None,
                from_renewed_ms: None,
            },
            Change::Taken {
                at_ms: 9,
                by: "w2".into(),
                counter: 8,
                from: Some("w1".into()),
                from_renewed_ms: Some(6),
            },
            Change::Released {
                at_ms: 12,
                by: "w2".into(),
                ended: true,
            },
        ];
        for change in &changes {
            assert_eq!(Change::parse(&change.text()).as_ref(), Some(change));
        }
        assert_eq!(Change::parse("12 nonsense"), None);
        let mut lease = Lease::default();
        for i in 0..HISTORY_KEPT + 5 {
            let change = Change::Released {
                at_ms: i as i64,
                by: "w".into(),
                ended: false,
            };
            let AttributeValue::L(list) = lease.history_with(&change) else {
                panic!("a list");
            };
            lease.history = list.iter().map(|v| v.as_s().unwrap().clone()).collect();
        }
        assert_eq!(lease.history.len(), HISTORY_KEPT);
        assert_eq!(
            lease.history.last().map(String::as_str),
            Some(format!("{} release w free", HISTORY_KEPT + 4).as_str())
        );
    }
}
