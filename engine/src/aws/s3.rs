//! S3 for the checkpoint store and the S3 sink: `s3://bucket/prefix`
//! locations, a client from the standard chain (path-style addressing when
//! an endpoint URL is configured, as emulators and most S3-compatible
//! stores need), and the few calls kflow makes, each retried under one
//! policy. The calls block: each thread that uses S3 owns an [`S3`] with a
//! current-thread runtime.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use hyper::body::Bytes;

use super::retry::{retry, RetryCounts, RetryPolicy};
use super::{AwsError, BoxError, Endpoint, Fault};

/// `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without a trailing `/` (may be empty).
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Option<S3Url> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        Some(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// S3's smallest part of a multipart upload (but the last).
pub const MIN_PART_BYTES: usize = 5 << 20;

/// A blocking S3 client.
pub struct S3 {
    runtime: tokio::runtime::Runtime,
    client: Client,
    policy: RetryPolicy,
    /// Calls retried.
    pub retries: RetryCounts,
}

impl S3 {
    /// A client from the standard chain; `policy` bounds each call's
    /// retries.
    ///
    /// # Errors
    /// [`AwsError::Runtime`] when its runtime cannot start.
    pub fn connect(policy: RetryPolicy) -> Result<S3, AwsError> {
        let endpoint_set = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        S3::build(&Endpoint::default(), endpoint_set, None, policy)
    }

    /// A client for an explicit endpoint URL (path-style addressing) with
    /// static credentials `(access key id, secret)`, for tools and tests.
    ///
    /// # Errors
    /// [`AwsError::Runtime`] when its runtime cannot start.
    pub fn connect_to(
        url: &str,
        credentials: (&str, &str),
        policy: RetryPolicy,
    ) -> Result<S3, AwsError> {
        let endpoint = Endpoint {
            region: Some("us-east-1".into()),
            url: Some(url.to_string()),
        };
        let keys = aws_sdk_s3::config::Credentials::new(
            credentials.0,
            credentials.1,
            None,
            None,
            "kflow-static",
        );
        S3::build(&endpoint, true, Some(keys), policy)
    }

    fn build(
        endpoint: &Endpoint,
        endpoint_set: bool,
        credentials: Option<aws_sdk_s3::config::Credentials>,
        policy: RetryPolicy,
    ) -> Result<S3, AwsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AwsError::Runtime)?;
        let config = runtime.block_on(super::client::sdk_config(endpoint));
        let mut s3_config =
            aws_sdk_s3::config::Builder::from(&config).force_path_style(endpoint_set);
        if let Some(credentials) = credentials {
            s3_config = s3_config.credentials_provider(credentials);
        }
        let s3_config = s3_config.build();
        Ok(S3 {
            runtime,
            client: Client::from_conf(s3_config),
            policy,
            retries: RetryCounts::default(),
        })
    }

    /// Writes an object.
    ///
    /// # Errors
    /// The call failed for good.
    pub fn put(&self, bucket: &str, key: &str, body: impl Into<Bytes>) -> Result<(), AwsError> {
        let mut backoff = self.policy.backoff();
        let body: Bytes = body.into();
        self.runtime.block_on(retry(
            &mut backoff,
            "PutObject",
            Some(&self.retries),
            || {
                self.client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(body.clone()))
                    .send()
            },
        ))?;
        Ok(())
    }

    /// Writes an object of any size: one PUT up to `part_bytes`, else a
    /// multipart upload in parts of `part_bytes` (at least 5 MiB, S3's
    /// smallest part), aborted if a part fails for good.
    ///
    /// # Errors
    /// A call failed for good.
    pub fn put_large(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
        part_bytes: usize,
    ) -> Result<(), AwsError> {
        let body: Bytes = body.into();
        let part_bytes = part_bytes.max(MIN_PART_BYTES);
        if body.len() <= part_bytes {
            return self.put(bucket, key, body);
        }
        let mut backoff = self.policy.backoff();
        let created = self.runtime.block_on(retry(
            &mut backoff,
            "CreateMultipartUpload",
            Some(&self.retries),
            || {
                self.client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .send()
            },
        ))?;
        let upload_id = created.upload_id().ok_or(AwsError::Missing {
            call: "CreateMultipartUpload",
            what: "upload id",
        })?;
        let parts = self.upload_parts(bucket, key, upload_id, &body, part_bytes);
        let completed = parts.and_then(|parts| {
            let mut backoff = self.policy.backoff();
            let upload = aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build();
            self.runtime.block_on(retry(
                &mut backoff,
                "CompleteMultipartUpload",
                Some(&self.retries),
                || {
                    self.client
                        .complete_multipart_upload()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .multipart_upload(upload.clone())
                        .send()
                },
            ))
        });
        if let Err(e) = completed {
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send();
            let _ = self.runtime.block_on(abort);
            return Err(e);
        }
        Ok(())
    }

    fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        body: &Bytes,
        part_bytes: usize,
    ) -> Result<Vec<aws_sdk_s3::types::CompletedPart>, AwsError> {
        let mut parts = Vec::new();
        for (i, start) in (0..body.len()).step_by(part_bytes).enumerate() {
            let number = i as i32 + 1;
            let chunk = body.slice(start..body.len().min(start + part_bytes));
            let mut backoff = self.policy.backoff();
            let out = self.runtime.block_on(retry(
                &mut backoff,
                "UploadPart",
                Some(&self.retries),
                || {
                    self.client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .body(ByteStream::from(chunk.clone()))
                        .send()
                },
            ))?;
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
        }
        Ok(parts)
    }

    /// Reads an object; `None` when it does not exist.
    ///
    /// # Errors
    /// The call failed for good, or the body broke off.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, AwsError> {
        let mut backoff = self.policy.backoff();
        self.runtime.block_on(async {
            loop {
                match self
                    .client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                {
                    Ok(out) => {
                        let body = out.body.collect().await.map_err(|e| AwsError::Call {
                            call: "GetObject",
                            fault: Fault::Transient,
                            source: BoxError::from(e),
                        })?;
                        return Ok(Some(body.into_bytes().to_vec()));
                    }
                    Err(e) if e.code() == Some("NoSuchKey") => return Ok(None),
                    Err(e) => {
                        let fault = super::classify(&e);
                        if !fault.is_retryable() || backoff.exhausted() {
                            return Err(AwsError::Call {
                                call: "GetObject",
                                fault,
                                source: BoxError::from(e),
                            });
                        }
                        backoff.wait(fault, "GetObject", Some(&self.retries)).await;
                    }
                }
            }
        })
    }

    /// Every object under `prefix`: `(key, size)`, in key order.
    ///
    /// # Errors
    /// The call failed for good.
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut backoff = self.policy.backoff();
            let page = self.runtime.block_on(retry(
                &mut backoff,
                "ListObjectsV2",
                Some(&self.retries),
                || {
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.clone())
                        .send()
                },
            ))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    out.push((key.to_string(), object.size().unwrap_or(0).max(0) as u64));
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() || page.is_truncated() != Some(true) {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes objects (a missing one is no error).
    ///
    /// # Errors
    /// A call failed for good.
    pub fn delete(&self, bucket: &str, keys: &[String]) -> Result<(), AwsError> {
        for key in keys {
            let mut backoff = self.policy.backoff();
            self.runtime.block_on(retry(
                &mut backoff,
                "DeleteObject",
                Some(&self.retries),
                || self.client.delete_object().bucket(bucket).key(key).send(),
            ))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse() {
        let url = S3Url::parse("s3://bucket/a/b/").expect("valid");
        assert_eq!(url.bucket, "bucket");
        assert_eq!(url.prefix, "a/b");
        assert_eq!(url.key("x"), "a/b/x");
        let bare = S3Url::parse("s3://bucket").expect("valid");
        assert_eq!(bare.key("x"), "x");
        assert!(S3Url::parse("s3://").is_none());
        assert!(S3Url::parse("file:///x").is_none());
    }
}
