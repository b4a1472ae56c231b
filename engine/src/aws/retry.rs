//! One retry policy for every AWS call: which failures are retried, how
//! long to wait (exponential backoff with full jitter), how often to warn,
//! and when to give up.
//!
//! Throttling and transient faults (the endpoint gone, timeouts, 5xx) are
//! retried; everything else, and an expired shard iterator (the caller
//! renews it), comes back at once as an [`AwsError`] that keeps the SDK's
//! error as its `source()`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use rand::Rng;

use super::{AwsError, BoxError};

/// What to do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Throttled (ProvisionedThroughputExceeded, LimitExceeded, KMS
    /// throttling): back off and retry.
    Throttled,
    /// The shard iterator expired: get a new one from the last position.
    ExpiredIterator,
    /// Network trouble, timeouts, 5xx: back off and retry.
    Transient,
    /// Anything else: stop with the error.
    Fatal,
}

impl Fault {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, Fault::Throttled | Fault::Transient)
    }
}

/// Classifies a failed SDK call.
pub fn classify<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Fault {
    match error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Fault::Transient
        }
        SdkError::ServiceError(service) => match service.err().code() {
            Some(
                "ProvisionedThroughputExceededException"
                | "LimitExceededException"
                | "ThrottlingException"
                | "KMSThrottlingException"
                | "SlowDown"
                | "RequestLimitExceeded",
            ) => Fault::Throttled,
            Some("ExpiredIteratorException") => Fault::ExpiredIterator,
            Some("InternalFailure" | "InternalFailureException" | "ServiceUnavailable") => {
                Fault::Transient
            }
            _ => Fault::Fatal,
        },
        _ => Fault::Fatal,
    }
}

/// Retries counted by cause, shared by the calls of one reader or writer.
#[derive(Debug, Default)]
pub struct RetryCounts {
    /// Calls retried after throttling.
    pub throttled: AtomicU64,
    /// Calls retried after a transient fault.
    pub transient: AtomicU64,
}

impl RetryCounts {
    fn count(&self, fault: Fault) {
        let counter = match fault {
            Fault::Throttled => &self.throttled,
            _ => &self.transient,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a kind of call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry waits up to this long.
    pub base: Duration,
    /// No retry waits longer than this.
    pub cap: Duration,
    /// Give up after this many retries (`None`: never, for readers that
    /// must outlast a restarted endpoint).
    pub max_retries: Option<u32>,
    /// Warn once every this many retries (the first after a quarter).
    pub warn_every: u32,
}

impl RetryPolicy {
    /// Readers and writers of a stream: retry forever, a pause per
    /// restarted endpoint rather than a failed job.
    pub const PATIENT: RetryPolicy = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        max_retries: None,
        warn_every: 20,
    };
    /// One-off calls at start (listing shards, describing the stream): give
    /// up after about three minutes so a wrong endpoint fails the run.
    pub const BOUNDED: RetryPolicy = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        max_retries: Some(40),
        warn_every: 10,
    };

    /// Checkpoint uploads: a few retries over about ten seconds, then the
    /// upload fails and the next checkpoint tries again.
    pub const BRIEF: RetryPolicy = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(2),
        max_retries: Some(8),
        warn_every: 4,
    };

    /// A fresh backoff under this policy.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: *self,
            attempt: 0,
        }
    }
}

/// Exponential backoff with full jitter: the n-th retry waits a uniformly
/// random time in `[0, min(cap, base * 2^n)]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    /// The wait before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .policy
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.policy.cap);
        self.attempt = self.attempt.saturating_add(1);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Retries so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Whether the retries are used up.
    pub fn exhausted(&self) -> bool {
        self.policy.max_retries.is_some_and(|m| self.attempt >= m)
    }

    /// Whether this retry should be logged (once every `warn_every`).
    pub fn should_warn(&self) -> bool {
        let every = self.policy.warn_every.max(1);
        self.attempt % every == (every / 4).max(1)
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Waits before retrying after `fault`, counting it in `counts` and
    /// warning now and then about `what`.
    pub async fn wait(&mut self, fault: Fault, what: &str, counts: Option<&RetryCounts>) {
        if let Some(counts) = counts {
            counts.count(fault);
        }
        if self.should_warn() {
            tracing::warn!("{what} keeps failing ({fault:?}), retrying");
        }
        tokio::time::sleep(self.next_delay()).await;
    }
}

/// Calls `op` until it succeeds, retrying throttling and transient faults
/// under `backoff`'s policy.
///
/// # Errors
/// [`AwsError::Call`] with the SDK error as its source, when the fault is
/// not retryable (an expired iterator included: the caller renews it) or
/// the policy's retries are used up.
pub async fn retry<T, E, R, F, Fut>(
    backoff: &mut Backoff,
    call: &'static str,
    counts: Option<&RetryCounts>,
    op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    retry_or(backoff, call, counts, op, |_| None).await
}

/// [`retry`], except that an error `settle` maps to a value is an answer,
/// not a failure (a resource that does not exist, one registered meanwhile).
///
/// # Errors
/// As [`retry`].
pub async fn retry_or<T, E, R, F, Fut>(
    backoff: &mut Backoff,
    call: &'static str,
    counts: Option<&RetryCounts>,
    mut op: F,
    settle: impl Fn(&SdkError<E, R>) -> Option<T>,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    loop {
        match op().await {
            Ok(out) => return Ok(out),
            Err(e) => {
                if let Some(answer) = settle(&e) {
                    return Ok(answer);
                }
                let fault = classify(&e);
                if !fault.is_retryable() || backoff.exhausted() {
                    return Err(AwsError::Call {
                        call,
                        fault,
                        source: BoxError::from(e),
                    });
                }
                backoff.wait(fault, call, counts).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        let policy = RetryPolicy {
            cap: Duration::from_secs(2),
            ..RetryPolicy::PATIENT
        };
        let mut b = policy.backoff();
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        // Full jitter: waits well below the ceiling happen too.
        assert!(delays[10..].iter().any(|d| *d < Duration::from_millis(500)));
        assert_eq!(b.attempts(), 200);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn a_bounded_policy_runs_out() {
        let mut b = RetryPolicy::BOUNDED.backoff();
        for _ in 0..40 {
            assert!(!b.exhausted());
            b.attempt += 1;
        }
        assert!(b.exhausted());
        assert!(!RetryPolicy::PATIENT.backoff().exhausted());
    }

    #[test]
    fn warnings_come_once_per_cadence() {
        let mut b = RetryPolicy::PATIENT.backoff();
        let mut warned = 0;
        for _ in 0..100 {
            b.attempt += 1;
            warned += usize::from(b.should_warn());
        }
        assert_eq!(warned, 5);
    }
}
