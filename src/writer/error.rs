//! Send failures and their result codes: the one place where outcomes map to codes.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::proto::Code;

/// Prefix of the text of retriable errors that had no broker response.
const CONNECTION: &str = "connection: ";

/// Why a send did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The deadline passed before an outcome was known.
    #[error("deadline passed")]
    Timeout,
    /// The broker rejected the message as illegal or too large.
    #[error("message illegal or too large: {0}")]
    Illegal(String),
    /// The topic or partition does not exist.
    #[error("topic does not exist: {0}")]
    TopicNotExist(String),
    /// A fast failure worth retrying (only while time is left).
    #[error("retriable: {0}")]
    Retriable(String),
    /// Any other failure.
    #[error("failed: {0}")]
    Failed(String),
}

impl SendError {
    /// The result code a client sees for this failure.
    pub fn code(&self) -> Code {
        match self {
            SendError::Timeout => Code::Timeout,
            SendError::Illegal(_) => Code::Illegal,
            SendError::TopicNotExist(_) => Code::TopicNotExist,
            // A retriable error that is final means attempts ran out (forwarding.md §4.3).
            SendError::Retriable(_) | SendError::Failed(_) => Code::Failed,
        }
    }

    /// Whether this failure means the broker could not be reached (routes are refreshed).
    pub fn is_connection(&self) -> bool {
        matches!(self, SendError::Retriable(m) if m.starts_with(CONNECTION))
    }

    /// Classifies a rocketmq-client-rust send error (forwarding.md §4.3).
    pub fn from_rocketmq(e: &rocketmq_client_rust::ClientError) -> SendError {
        let text = e.to_string();
        if let Some(code) = e.broker_response_code() {
            // The library drops the broker's remark: the code is all that names the cause.
            let text = format!("{} (broker code {code}): {text}", rocketmq_cause(code));
            return match code {
                1 | 2 | 14 | 16 => SendError::Retriable(text),
                13 => SendError::Illegal(text),
                17 => SendError::TopicNotExist(text),
                _ => SendError::Failed(text),
            };
        }
        match e.descriptor().class().as_str() {
            "timeout" => SendError::Timeout,
            // No response: the request may not have reached a broker; retried.
            "io" | "unavailable" => SendError::Retriable(format!("{CONNECTION}{text}")),
            "routing" => SendError::TopicNotExist(text),
            "validation" => SendError::Illegal(text),
            _ => SendError::Failed(text),
        }
    }

    /// Classifies a failed route lookup: a name server without the topic is 14.
    pub fn from_rocketmq_route(e: &rocketmq_client_rust::ClientError) -> SendError {
        let text = e.to_string();
        // The library reports "no route" (the name server's TOPIC_NOT_EXIST) as an invalid
        // argument with a redacted message; unreachable name servers are io/timeout classes.
        if e.broker_response_code() == Some(17) || e.descriptor().class().as_str() == "validation" {
            return SendError::TopicNotExist(text);
        }
        match SendError::from_rocketmq(e) {
            SendError::Failed(t) => SendError::Retriable(t),
            other => other,
        }
    }

    /// Classifies a librdkafka error (forwarding.md §4.3).
    pub fn from_kafka(e: &KafkaError) -> SendError {
        let text = e.to_string();
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidRecord) => {
                SendError::Illegal(text)
            }
            Some(
                RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition,
            ) => SendError::TopicNotExist(text),
            Some(RDKafkaErrorCode::QueueFull) => SendError::Retriable(text),
            Some(RDKafkaErrorCode::MessageTimedOut) => SendError::Timeout,
            _ => SendError::Failed(text),
        }
    }
}

/// What a RocketMQ broker's response code to a put means, for logs (the codes of the broker's
/// `ResponseCode`, and the reasons its send processor gives for each).
pub fn rocketmq_cause(code: i32) -> &'static str {
    match code {
        1 => "broker system error",
        2 => "broker busy (page cache or request queue full)",
        10 => "stored but not flushed to disk in time (FLUSH_DISK_TIMEOUT)",
        11 => "stored but no slave to replicate it (SLAVE_NOT_AVAILABLE)",
        12 => "stored but not replicated to the slave in time (FLUSH_SLAVE_TIMEOUT)",
        13 => "message illegal",
        14 => "broker not writable: its disk is full, it is a slave, or it is shutting down (SERVICE_NOT_AVAILABLE)",
        16 => "no permission to write this topic on the broker",
        17 => "topic does not exist on the broker",
        _ => "broker refused the put",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_map_to_spec_codes() {
        let c = |code| SendError::from_kafka(&KafkaError::MessageProduction(code)).code();
        assert_eq!(c(RDKafkaErrorCode::MessageSizeTooLarge), Code::Illegal);
        assert_eq!(c(RDKafkaErrorCode::InvalidRecord), Code::Illegal);
        assert_eq!(
            c(RDKafkaErrorCode::UnknownTopicOrPartition),
            Code::TopicNotExist
        );
        assert_eq!(c(RDKafkaErrorCode::UnknownPartition), Code::TopicNotExist);
        assert_eq!(c(RDKafkaErrorCode::UnknownTopic), Code::TopicNotExist);
        assert_eq!(c(RDKafkaErrorCode::MessageTimedOut), Code::Timeout);
        assert_eq!(c(RDKafkaErrorCode::QueueFull), Code::Failed);
        assert_eq!(c(RDKafkaErrorCode::TopicAuthorizationFailed), Code::Failed);
        assert_eq!(SendError::Timeout.code(), Code::Timeout);
    }

    #[test]
    fn rocketmq_broker_codes_map_to_spec_codes() {
        use rocketmq_client_rust::ClientError;
        let c = |code| {
            SendError::from_rocketmq(&ClientError::broker_operation_failed("send", code, "x"))
        };
        for retriable in [1, 2, 14, 16] {
            assert!(
                matches!(c(retriable), SendError::Retriable(_)),
                "{retriable}"
            );
            assert_eq!(c(retriable).code(), Code::Failed, "attempts ran out: 10");
        }
        assert_eq!(c(13).code(), Code::Illegal);
        assert_eq!(c(17).code(), Code::TopicNotExist);
        assert!(
            matches!(c(25), SendError::Failed(_)),
            "any other code: 10, no retry"
        );
        let t = SendError::from_rocketmq(&ClientError::timeout("send", 5));
        assert_eq!(t, SendError::Timeout);
        let route = SendError::from_rocketmq_route(&ClientError::illegal_argument("no route"));
        assert_eq!(route.code(), Code::TopicNotExist);
    }

    #[test]
    fn rocketmq_refusals_name_their_cause() {
        use rocketmq_client_rust::ClientError;
        let text = |code| {
            SendError::from_rocketmq(&ClientError::broker_operation_failed("send", code, "x"))
                .to_string()
        };
        // A full disk (issue 20 part 5): the broker answers every put 14.
        let full = text(14);
        assert!(full.contains("disk is full"), "{full}");
        assert!(full.contains("broker code 14"), "{full}");
        assert_eq!(
            SendError::from_rocketmq(&ClientError::broker_operation_failed("send", 14, "x")).code(),
            Code::Failed,
            "the wire answer stays 10 (wire.md §6: messages are byte-exact)"
        );
        assert!(text(2).contains("broker busy"), "{}", text(2));
        assert!(text(1).contains("system error"), "{}", text(1));
        assert!(text(16).contains("no permission"), "{}", text(16));
        for (code, what) in [
            (10, "FLUSH_DISK_TIMEOUT"),
            (11, "SLAVE_NOT_AVAILABLE"),
            (12, "FLUSH_SLAVE_TIMEOUT"),
        ] {
            assert!(rocketmq_cause(code).contains(what), "{code}");
        }
        assert!(text(25).contains("broker code 25"), "{}", text(25));
    }
}
