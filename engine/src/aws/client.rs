//! Building a Kinesis client, and deciding what to do when a call fails.
//!
//! The client uses the standard AWS chains for credentials and region. For
//! a loopback `endpoint` (an emulator) it uses fixed dummy credentials and
//! `us-east-1` unless the environment provides others, so that nothing ever
//! probes the EC2 metadata address from a test. The SDK's own retries are
//! off: every caller retries with [`Backoff`] and counts what it retried.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use rand::Rng;

/// Where to reach Kinesis.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// Region; `None`: the standard chain.
    pub region: Option<String>,
    /// Endpoint URL override (`AWS_ENDPOINT_URL` also works through the
    /// chain).
    pub url: Option<String>,
}

impl Endpoint {
    /// Whether the endpoint is on this machine (an emulator).
    pub fn is_loopback(&self) -> bool {
        let Some(url) = &self.url else {
            return false;
        };
        let host = url
            .split("://")
            .nth(1)
            .unwrap_or(url)
            .split(['/', '?'])
            .next()
            .unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
    }
}

/// Builds a client for `endpoint`.
pub async fn connect(endpoint: &Endpoint) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(url) = &endpoint.url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &endpoint.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if endpoint.is_loopback() {
        if endpoint.region.is_none() && std::env::var_os("AWS_REGION").is_none() {
            loader = loader.region(Region::new("us-east-1"));
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(Credentials::new(
                "kflow-local",
                "kflow-local",
                None,
                None,
                "kflow-loopback",
            ));
        }
    }
    Client::new(&loader.load().await)
}

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
                | "KMSThrottlingException",
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

/// The code and message of a failed call, for logs and errors.
pub fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    aws_sdk_kinesis::error::DisplayErrorContext(error).to_string()
}

/// Exponential backoff with full jitter: the n-th retry waits a random time
/// up to `min(cap, base * 2^n)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base`, never waiting longer than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The wait before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 4..=millis))
    }

    /// Retries so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Compares two Kinesis sequence numbers (decimal strings of up to 128
/// bits, so compared by length, then digits).
pub fn sequence_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_recognised() {
        let e = |url: &str| Endpoint {
            region: None,
            url: Some(url.into()),
        };
        assert!(e("http://127.0.0.1:4567").is_loopback());
        assert!(e("http://localhost:1234/").is_loopback());
        assert!(e("http://[::1]:80").is_loopback());
        assert!(!e("https://kinesis.us-east-1.amazonaws.com").is_loopback());
        assert!(!Endpoint::default().is_loopback());
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        assert_eq!(b.attempts(), 20);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(sequence_cmp("9", "10"), Less);
        assert_eq!(
            sequence_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692540925702759324208523137515618"
            ),
            Less
        );
        assert_eq!(sequence_cmp("123", "123"), Equal);
    }
}
