//! One worker's side of the lease table: a heartbeat that renews the
//! leases it holds, reads the table, and takes or claims leases by
//! [`plan`](super::plan::plan).
//!
//! **Exclusivity.** A worker uses a lease only while it is *valid*: until
//! `failover_timeout` after it *sent* the last write that succeeded on it
//! (take or renew). Another worker takes a lease only after seeing its
//! counter unchanged for `failover_timeout`, counted from when it first
//! read that counter, which is after the holder's write, which is after the
//! holder sent it. So the holder's validity ends before anyone else may
//! take the lease, on one clock rate, without synchronized clocks. Every
//! write is conditional on the counter, so of two racing workers one wins.
//! A worker whose renewals fail (DynamoDB unreachable) stops using its
//! leases when they lapse, and says so ([`Event::Lost`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::plan::plan;
use super::table::{Lease, LeaseTable};
use crate::error::EngineError;

/// Takes in one heartbeat stop after `failover_timeout / TAKE_BUDGET`, so
/// a lease taken first still has most of its validity when its part
/// starts (a part never starts on a lease about to lapse).
const TAKE_BUDGET: u32 = 4;

/// What changed for this worker in one heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This worker now holds the lease (the take's answer came at `at`).
    Gained {
        /// The lease.
        key: String,
        /// When the take succeeded.
        at: Instant,
    },
    /// This worker no longer holds the lease: someone else changed it, or
    /// its renewals failed until it lapsed. It was valid until `until`.
    Lost {
        /// The lease.
        key: String,
        /// The end of its validity.
        until: Instant,
    },
    /// Another worker claimed the lease: checkpoint it and hand it back
    /// ([`LeaseKeeper::release`]).
    Wanted {
        /// The lease.
        key: String,
    },
}

/// A lease this worker holds.
#[derive(Debug, Clone)]
pub struct Held {
    /// The lease as last written.
    pub lease: Lease,
    /// Until when this worker may use it.
    pub valid_until: Instant,
}

/// One worker's leases.
pub struct LeaseKeeper {
    table: LeaseTable,
    worker: String,
    failover: Duration,
    held: BTreeMap<String, Held>,
    /// Each lease's counter and when this worker first saw it.
    seen: HashMap<String, (u64, Instant)>,
}

impl LeaseKeeper {
    /// Worker `worker`'s keeper over `table`; leases lapse after
    /// `failover` without a renewal.
    pub fn new(table: LeaseTable, worker: &str, failover: Duration) -> LeaseKeeper {
        LeaseKeeper {
            table,
            worker: worker.to_string(),
            failover,
            held: BTreeMap::new(),
            seen: HashMap::new(),
        }
    }

    /// The worker's id.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The table.
    pub fn table(&self) -> &LeaseTable {
        &self.table
    }

    /// The leases this worker holds, valid or not yet known lapsed.
    pub fn held(&self) -> impl Iterator<Item = &Held> {
        self.held.values()
    }

    /// Whether this worker may use lease `key` now.
    pub fn holds(&self, key: &str) -> bool {
        self.held
            .get(key)
            .is_some_and(|h| h.valid_until > Instant::now())
    }

    /// Until when this worker may use lease `key`; `None` when it does not
    /// hold it or the lease lapsed.
    pub fn valid_until(&self, key: &str) -> Option<Instant> {
        self.held
            .get(key)
            .map(|h| h.valid_until)
            .filter(|until| *until > Instant::now())
    }

    /// Creates the leases in `keys` (with their parents) that the table
    /// lacks.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when a write fails.
    pub fn create(&self, keys: &[(String, Vec<String>)]) -> Result<(), EngineError> {
        let existing: Vec<String> = self.table.leases()?.into_iter().map(|l| l.key).collect();
        for (key, parents) in keys {
            if !existing.contains(key) {
                self.table.create(key, parents)?;
            }
        }
        Ok(())
    }

    /// One heartbeat: renews the held leases (with each one's progress
    /// from `status`), reads the table, then takes and claims leases.
    ///
    /// # Errors
    /// A lease-table call that failed for good (not a network fault or
    /// throttling, which only skip this heartbeat's reads and writes).
    pub fn tick(&mut self, status: &HashMap<String, String>) -> Result<Vec<Event>, EngineError> {
        let mut events = self.renew(status)?;
        events.extend(self.balance()?);
        Ok(events)
    }

    /// The second half of a heartbeat: reads the table, then takes and
    /// claims leases ([`LeaseKeeper::tick`] is [`LeaseKeeper::renew`] then
    /// this; a caller with work to do right after the renewals, such as
    /// extending its parts' fences, calls them apart).
    ///
    /// # Errors
    /// As [`LeaseKeeper::tick`].
    pub fn balance(&mut self) -> Result<Vec<Event>, EngineError> {
        let mut events = Vec::new();
        let leases = match self.table.leases() {
            Ok(leases) => leases,
            Err(e) if e.is_retryable() => {
                tracing::warn!("leases: {}", crate::error::causes(&e));
                return Ok(events);
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        for lease in &leases {
            let seen = self
                .seen
                .entry(lease.key.clone())
                .or_insert((lease.counter, now));
            if seen.0 != lease.counter {
                *seen = (lease.counter, now);
            }
        }
        let failover = self.failover;
        let seen = &self.seen;
        let expired = |l: &Lease| {
            seen.get(&l.key)
                .is_some_and(|(c, since)| *c == l.counter && now.duration_since(*since) >= failover)
        };
        // Leases held here are never expired from here.
        let others: Vec<Lease> = leases
            .iter()
            .map(|l| match self.held.get(&l.key) {
                Some(held) => held.lease.clone(),
                None => l.clone(),
            })
            .collect();
        let decided = plan(&self.worker, &others, &|l| {
            !self.held.contains_key(&l.key) && expired(l)
        });
        for lease in decided.take {
            let sent = Instant::now();
            // A slow table must not eat the validity of the first takes
            // before their parts start: the rest wait for the next beat.
            if sent.duration_since(now) >= self.failover / TAKE_BUDGET {
                tracing::debug!("leases: take budget spent, the rest next heartbeat");
                break;
            }
            match self.table.take(&lease, &self.worker) {
                Ok(Some(taken)) => {
                    tracing::debug!(lease = %taken.key, "lease taken");
                    events.push(Event::Gained {
                        key: taken.key.clone(),
                        at: Instant::now(),
                    });
                    self.held.insert(
                        taken.key.clone(),
                        Held {
                            lease: taken,
                            valid_until: sent + self.failover,
                        },
                    );
                }
                Ok(None) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!("leases: {}", crate::error::causes(&e));
                }
                Err(e) => return Err(e),
            }
        }
        for lease in decided.claim {
            match self.table.claim(&lease, &self.worker) {
                Ok(Some(_)) => tracing::debug!(lease = %lease.key, "lease claimed"),
                Ok(None) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!("leases: {}", crate::error::causes(&e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }

    /// The first half of a heartbeat: renews the held leases, each with
    /// its progress from `status`.
    ///
    /// # Errors
    /// As [`LeaseKeeper::tick`].
    pub fn renew(&mut self, status: &HashMap<String, String>) -> Result<Vec<Event>, EngineError> {
        let mut events = Vec::new();
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in keys {
            let Some(held) = self.held.get(&key) else {
                continue;
            };
            let sent = Instant::now();
            let status = status.get(&key).map(String::as_str);
            match self.table.renew(&held.lease, &self.worker, status) {
                Ok(Some(lease)) => {
                    if lease.claim.as_deref().is_some_and(|c| c != self.worker) {
                        events.push(Event::Wanted { key: key.clone() });
                    }
                    self.held.insert(
                        key,
                        Held {
                            lease,
                            valid_until: sent + self.failover,
                        },
                    );
                }
                Ok(None) => {
                    let until = held.valid_until.min(sent);
                    tracing::info!(lease = %key, "lease lost to another worker");
                    self.held.remove(&key);
                    events.push(Event::Lost { key, until });
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!("leases: {}", crate::error::causes(&e));
                    if held.valid_until <= Instant::now() {
                        let until = held.valid_until;
                        self.held.remove(&key);
                        events.push(Event::Lost { key, until });
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }

    /// Hands lease `key` back (`ended`: a shard read to its end). Returns
    /// when this worker stopped holding it, or `None` if it did not hold it.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the write fails.
    pub fn release(&mut self, key: &str, ended: bool) -> Result<Option<Instant>, EngineError> {
        let Some(held) = self.held.remove(key) else {
            return Ok(None);
        };
        let sent = Instant::now();
        // Whatever the answer, this worker stops using it now.
        self.table.release(&held.lease, &self.worker, ended)?;
        Ok(Some(sent))
    }

    /// Records this worker's checkpoint of lease `key`: `false` when the
    /// lease is no longer this worker's.
    ///
    /// # Errors
    /// [`EngineError::Leases`] when the write fails.
    pub fn checkpoint(&mut self, key: &str, checkpoint: &str) -> Result<bool, EngineError> {
        let Some(held) = self.held.get(key) else {
            return Ok(false);
        };
        let sent = Instant::now();
        match self
            .table
            .checkpoint(&held.lease, &self.worker, checkpoint)?
        {
            Some(lease) => {
                self.held.insert(
                    key.to_string(),
                    Held {
                        lease,
                        valid_until: sent + self.failover,
                    },
                );
                Ok(true)
            }
            None => {
                self.held.remove(key);
                Ok(false)
            }
        }
    }
}
