//! Building the AWS clients (Kinesis, S3) from one shared configuration.
//!
//! The client uses the standard AWS chains for credentials and region. For
//! a loopback `endpoint` (an emulator) it uses fixed dummy credentials and
//! `us-east-1` unless the environment provides others, so that nothing ever
//! probes the EC2 metadata address from a test. The SDK's own retries are
//! off: every caller retries through [`crate::aws::retry`] and counts what
//! it retried.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

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

/// Builds a Kinesis client for `endpoint`.
pub async fn connect(endpoint: &Endpoint) -> Client {
    Client::new(&sdk_config(endpoint).await)
}

/// The SDK configuration for `endpoint`: the standard chains, kflow's
/// timeouts, no SDK retries, rustls over ring.
pub async fn sdk_config(endpoint: &Endpoint) -> aws_config::SdkConfig {
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
    loader.load().await
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
}
