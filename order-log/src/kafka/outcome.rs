//! What a librdkafka error says about whether a record reached the log.
//!
//! librdkafka knows each message's persistence status (`NOT_PERSISTED`,
//! `POSSIBLY_PERSISTED`, `PERSISTED`), but rdkafka 0.39 drops it when it turns
//! a delivery report into an owned result, and reading it from the raw
//! message needs `unsafe`, which this workspace forbids. So the decision is
//! made from the error code alone, following librdkafka's own action table
//! (`rd_kafka_handle_Produce_error` and `rd_kafka_err_action` in
//! `rdkafka_request.c`): only codes that it always marks `NOT_PERSISTED` and
//! permanent are a definite failure; every other code is unknown.
//!
//! The notable consequence: `MessageTimedOut` is **not** a failure. A message
//! that times out while its produce request is in flight "may be written to
//! the topic log by the broker, even though a delivery report with error
//! `ERR__MSG_TIMED_OUT` will be raised" (librdkafka INTRODUCTION.md, the
//! idempotent producer section); its status is `POSSIBLY_PERSISTED`.

use engine::ports::AppendError;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// The final word on one record, as far as the producer can know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The broker acknowledged the record with acks=all: it is in the log.
    Delivered,
    /// The record is definitely not in the log: its unit may be returned.
    Failed(String),
    /// The record may or may not be in the log, and the producer will never
    /// learn more (for example a message timeout while in flight). Keep the
    /// unit held; only reconciliation against the topic can settle it.
    Unknown(String),
}

/// Maps a refusal by `send_result`: the message never entered librdkafka's
/// queue, so it is definitely not written.
pub(crate) fn enqueue_error(err: &KafkaError) -> AppendError {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => AppendError::Overloaded,
        _ => AppendError::Failed(format!("not queued by the Kafka producer: {err}")),
    }
}

/// Maps an error in a delivery report: `Failed` only for codes librdkafka
/// treats as permanent and not persisted, `Unknown` for everything else.
pub(crate) fn delivery_error(err: &KafkaError) -> Settled {
    match err.rdkafka_error_code() {
        Some(code) if definitely_not_written(code) => {
            Settled::Failed(format!("refused by Kafka: {err}"))
        }
        _ => Settled::Unknown(format!("Kafka delivery outcome unknown: {err}")),
    }
}

fn definitely_not_written(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        // Local: never sent. `PurgeQueue` is a purge of messages still queued
        // (a producer dropped at shutdown), unlike `PurgeInflight`.
        C::UnknownTopic
            | C::UnknownPartition
            | C::PurgeQueue
            | C::InvalidArgument
            // Broker answers that reject the whole batch; librdkafka marks
            // them permanent and not persisted.
            | C::MessageSizeTooLarge
            | C::MessageBatchTooLarge
            | C::InvalidRecord
            | C::InvalidTopic
            | C::InvalidRequiredAcks
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::UnsupportedForMessageFormat
            | C::PolicyViolation
    )
}

/// Turns a final report into what `append` returns.
pub(crate) fn append_result(settled: &Settled) -> Result<(), AppendError> {
    match settled {
        Settled::Delivered => Ok(()),
        Settled::Failed(why) => Err(AppendError::Failed(why.clone())),
        Settled::Unknown(why) => Err(AppendError::Unknown(why.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageProduction(code)
    }

    #[test]
    fn a_full_queue_sheds_load_and_other_refusals_fail() {
        assert_eq!(
            enqueue_error(&produce(RDKafkaErrorCode::QueueFull)),
            AppendError::Overloaded
        );
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::UnknownTopic,
        ] {
            assert!(matches!(
                enqueue_error(&produce(code)),
                AppendError::Failed(_)
            ));
        }
    }

    #[test]
    fn a_message_timeout_is_unknown_not_failed() {
        // Possibly persisted when it timed out in flight (librdkafka docs).
        assert!(matches!(
            delivery_error(&produce(RDKafkaErrorCode::MessageTimedOut)),
            Settled::Unknown(_)
        ));
    }

    #[test]
    fn possibly_written_codes_are_unknown() {
        for code in [
            RDKafkaErrorCode::PurgeInflight,
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::NotEnoughReplicasAfterAppend,
        ] {
            assert!(
                matches!(delivery_error(&produce(code)), Settled::Unknown(_)),
                "{code:?}"
            );
        }
        // An error without a librdkafka code says nothing either.
        assert!(matches!(
            delivery_error(&KafkaError::Canceled),
            Settled::Unknown(_)
        ));
    }

    #[test]
    fn rejected_batches_fail() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::PurgeQueue,
        ] {
            assert!(
                matches!(delivery_error(&produce(code)), Settled::Failed(_)),
                "{code:?}"
            );
        }
    }

    #[test]
    fn append_results_follow_the_settlement() {
        assert_eq!(append_result(&Settled::Delivered), Ok(()));
        assert!(matches!(
            append_result(&Settled::Failed("x".into())),
            Err(AppendError::Failed(_))
        ));
        assert!(matches!(
            append_result(&Settled::Unknown("x".into())),
            Err(AppendError::Unknown(_))
        ));
    }
}
