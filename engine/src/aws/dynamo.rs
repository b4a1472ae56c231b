//! The DynamoDB calls of the lease table, blocking, each retried through
//! [`crate::aws::retry`]: create the table when missing, read it whole
//! (strongly consistent), and write one item under a condition.
//!
//! A conditional write whose condition does not hold is an answer, not an
//! error: [`Dynamo::update`] returns `None` for it, so callers can tell a
//! lease someone else changed from a call that failed.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use super::client::Endpoint;
use super::retry::{retry, RetryCounts, RetryPolicy};
use super::{AwsError, BoxError, Fault};

/// An item: attribute name to value.
pub type Item = HashMap<String, AttributeValue>;

/// A blocking DynamoDB client.
pub struct Dynamo {
    runtime: tokio::runtime::Runtime,
    client: Client,
    policy: RetryPolicy,
    /// Calls retried.
    pub retries: RetryCounts,
}

/// One conditional update of an item: `update` and `condition` are
/// DynamoDB expressions over `names` (`#n`) and `values` (`:v`).
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// The key attribute's name and value.
    pub key: (String, String),
    /// `SET ... REMOVE ...`.
    pub update: String,
    /// The condition that must hold (empty: none).
    pub condition: String,
    /// `#name` placeholders.
    pub names: HashMap<String, String>,
    /// `:value` placeholders.
    pub values: HashMap<String, AttributeValue>,
}

impl Dynamo {
    /// A client at `endpoint` (`None`: the standard chain, where
    /// `AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL` reach an
    /// emulator); `policy` bounds each call's retries.
    ///
    /// # Errors
    /// [`AwsError::Runtime`] when its runtime cannot start.
    pub fn connect(endpoint: Option<&str>, policy: RetryPolicy) -> Result<Dynamo, AwsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AwsError::Runtime)?;
        let url = endpoint.map(str::to_string).or_else(|| {
            ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|v| std::env::var(v).ok())
        });
        let endpoint = Endpoint { region: None, url };
        let config = runtime.block_on(super::client::sdk_config(&endpoint));
        Ok(Dynamo {
            runtime,
            client: Client::new(&config),
            policy,
            retries: RetryCounts::default(),
        })
    }

    /// Creates table `table` keyed by the string attribute `key`
    /// (on-demand capacity) unless it exists, and waits until it is active.
    ///
    /// # Errors
    /// A call failed for good, or the table stayed inactive for a minute.
    pub fn ensure_table(&self, table: &str, key: &str) -> Result<(), AwsError> {
        let attribute = AttributeDefinition::builder()
            .attribute_name(key)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| built("CreateTable", e))?;
        let schema = KeySchemaElement::builder()
            .attribute_name(key)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| built("CreateTable", e))?;
        let mut backoff = self.policy.backoff();
        let created = self.runtime.block_on(retry(
            &mut backoff,
            "CreateTable",
            Some(&self.retries),
            || async {
                let sent = self
                    .client
                    .create_table()
                    .table_name(table)
                    .attribute_definitions(attribute.clone())
                    .key_schema(schema.clone())
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
                    .await;
                match sent {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some("ResourceInUseException") => Ok(()),
                    Err(e) => Err(e),
                }
            },
        ));
        created?;
        for _ in 0..600 {
            let mut backoff = self.policy.backoff();
            let described = self.runtime.block_on(retry(
                &mut backoff,
                "DescribeTable",
                Some(&self.retries),
                || self.client.describe_table().table_name(table).send(),
            ))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(AwsError::Missing {
            call: "DescribeTable",
            what: "active table after a minute",
        })
    }

    /// Every item of `table`, read with strong consistency.
    ///
    /// # Errors
    /// A call failed for good.
    pub fn scan(&self, table: &str) -> Result<Vec<Item>, AwsError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut backoff = self.policy.backoff();
            let page =
                self.runtime
                    .block_on(retry(&mut backoff, "Scan", Some(&self.retries), || {
                        self.client
                            .scan()
                            .table_name(table)
                            .consistent_read(true)
                            .set_exclusive_start_key(start.clone())
                            .send()
                    }))?;
            items.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Applies `update` to one item of `table` if its condition holds:
    /// the item as it is after the write, or `None` when the condition
    /// did not hold (nothing was written).
    ///
    /// # Errors
    /// A call failed for good.
    pub fn update(&self, table: &str, update: &Update) -> Result<Option<Item>, AwsError> {
        let mut backoff = self.policy.backoff();
        self.runtime.block_on(retry(
            &mut backoff,
            "UpdateItem",
            Some(&self.retries),
            || async {
                let condition = (!update.condition.is_empty()).then(|| update.condition.clone());
                let sent = self
                    .client
                    .update_item()
                    .table_name(table)
                    .key(&update.key.0, AttributeValue::S(update.key.1.clone()))
                    .update_expression(&update.update)
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(
                        (!update.names.is_empty()).then(|| update.names.clone()),
                    )
                    .set_expression_attribute_values(
                        (!update.values.is_empty()).then(|| update.values.clone()),
                    )
                    .return_values(ReturnValue::AllNew)
                    .send()
                    .await;
                match sent {
                    Ok(out) => Ok(Some(out.attributes().cloned().unwrap_or_default())),
                    Err(e) if code(&e) == Some("ConditionalCheckFailedException") => Ok(None),
                    Err(e) => Err(e),
                }
            },
        ))
    }
}

/// The service's error code, if the call got that far.
fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// A request that could not be built (a bug: every field is set).
fn built(call: &'static str, e: aws_sdk_dynamodb::error::BuildError) -> AwsError {
    AwsError::Call {
        call,
        fault: Fault::Fatal,
        source: BoxError::from(e),
    }
}
