//! Send failures and their result codes: the one place where outcomes map to codes.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::proto::Code;

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
}
