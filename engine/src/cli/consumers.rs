//! `kflow consumers list|deregister --stream S`: the enhanced fan-out
//! consumers registered on a stream. kflow registers a job's consumer on
//! its first run and never removes it; this is how a user does.

use crate::aws::consumer::{self, ConsumerInfo};
use crate::aws::{connect, AwsError, Endpoint, StreamId};

/// Why a consumers command failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsumersError {
    /// The command's runtime could not start.
    #[error("cannot start its runtime")]
    Runtime(#[source] std::io::Error),
    /// The service refused.
    #[error("stream {stream}")]
    Kinesis {
        /// The stream.
        stream: String,
        /// What failed.
        source: AwsError,
    },
}

fn block_on<T>(
    stream: &StreamId,
    endpoint: &Endpoint,
    call: impl AsyncFnOnce(&aws_sdk_kinesis::Client) -> Result<T, AwsError>,
) -> Result<T, ConsumersError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ConsumersError::Runtime)?;
    runtime.block_on(async {
        let client = connect(endpoint).await;
        call(&client)
            .await
            .map_err(|source| ConsumersError::Kinesis {
                stream: stream.to_string(),
                source,
            })
    })
}

/// The consumers of `stream` as a table (name, status, registered, ARN).
///
/// # Errors
/// [`ConsumersError`] when the stream cannot be described or listed.
pub fn list(stream: &StreamId, endpoint: &Endpoint) -> Result<String, ConsumersError> {
    let consumers = block_on(stream, endpoint, async |client| {
        consumer::list_consumers(client, stream).await
    })?;
    Ok(render(stream, &consumers))
}

/// Deregisters the consumer `name` of `stream`.
///
/// # Errors
/// [`ConsumersError`] when there is no such consumer or the call fails.
pub fn deregister(
    stream: &StreamId,
    endpoint: &Endpoint,
    name: &str,
) -> Result<String, ConsumersError> {
    block_on(stream, endpoint, async |client| {
        consumer::deregister(client, stream, name).await
    })?;
    Ok(format!(
        "deregistered consumer `{name}` of stream {stream} (its subscriptions end; \
         a job reading with it registers it again when it next starts)\n"
    ))
}

fn render(stream: &StreamId, consumers: &[ConsumerInfo]) -> String {
    if consumers.is_empty() {
        return format!("stream {stream}: no enhanced fan-out consumers\n");
    }
    let width = consumers
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:<8}  {:<24}  ARN\n",
        "NAME", "STATUS", "REGISTERED"
    );
    for c in consumers {
        let registered = c
            .created_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "-".to_string());
        out.push_str(&format!(
            "{:<width$}  {:<8}  {:<24}  {}\n",
            c.name, c.status, registered, c.arn
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_says_when_there_are_none() {
        let stream = StreamId::Name("clicks".into());
        assert_eq!(
            render(&stream, &[]),
            "stream clicks: no enhanced fan-out consumers\n"
        );
        let table = render(
            &stream,
            &[ConsumerInfo {
                name: "sessions-job".into(),
                arn: "arn:aws:kinesis:us-east-1:1:stream/clicks/consumer/sessions-job:1".into(),
                status: "ACTIVE".into(),
                created_ms: Some(1_764_547_200_000),
            }],
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME          STATUS"), "{table}");
        assert!(
            lines[1].starts_with("sessions-job  ACTIVE    2025-12-01T00:00:00Z"),
            "{table}"
        );
    }
}
