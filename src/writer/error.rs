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
        match e.broker_response_code() {
            Some(1 | 2 | 14 | 16) => return SendError::Retriable(text),
            Some(13) => return SendError::Illegal(text),
            Some(17) => return SendError::TopicNotExist(text),
            Some(_) => return SendError::Failed(text),
            None => {}
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
}
