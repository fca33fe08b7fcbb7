//! Result codes of the wire contract and their byte-exact messages (wire.md §6).

/// A result code the proxy can answer with; each maps to one exact message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    /// Acknowledged.
    Ok = 0,
    /// Non-retriable or unclassified failure.
    Failed = 10,
    /// Validation failure or message illegal/too large.
    Illegal = 11,
    /// Deadline passed before the outcome was known.
    Timeout = 12,
    /// Topic not admitted on this node.
    NotWhitelisted = 13,
    /// Broker says the topic does not exist.
    TopicNotExist = 14,
    /// Rate limiter or overload refusal.
    RateLimited = 15,
    /// Delay request to a non-delay topic.
    TopicNotDelay = 18,
    /// Normal send to a delay topic.
    TopicIsDelay = 19,
    /// Node is draining.
    ShuttingDown = 20,
    /// No producer for the chosen cluster.
    NoProducer = 21,
    /// Bad or foreign uniqDelayMsgId.
    IllegalDelayId = 30,
    /// Bad dmsgtype.
    IllegalDelayType = 31,
    /// Bad delay action.
    IllegalDelayAction = 32,
    /// Delay timestamp out of range.
    IllegalDelayTimestamp = 33,
    /// Seq field of the id out of range.
    IllegalDelaySeq = 34,
    /// Bad loop times.
    IllegalLoopTimes = 35,
    /// Loop expire not after timestamp.
    IllegalExpire = 36,
    /// Fixed interval below 3 s.
    IllegalInterval = 37,
    /// Exponent base below 2.
    IllegalBase = 38,
}

impl Code {
    /// The numeric code sent on the wire.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The byte-exact message for this code.
    pub fn msg(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Failed => "FAILED: unknown reason.",
            Code::Illegal => "FAILED: Message is too large or illegal or the length is 0",
            Code::Timeout => "FAILED: Send timeout",
            Code::NotWhitelisted => "FAILED: Topic is not in the proxy white list",
            Code::TopicNotExist => "FAILED: Topic do not exist!",
            Code::RateLimited => "FAILED: Refused by the rate limiter.",
            Code::TopicNotDelay => "FAILED: Topic is not delay",
            Code::TopicIsDelay => "FAILED: Topic is delay",
            Code::ShuttingDown => "FAILED: Server is shutting down.",
            Code::NoProducer => "FAILED: no producer for cluster.",
            Code::IllegalDelayId => "FAILED: Illegal uniqDelayMsgId.",
            Code::IllegalDelayType => "FAILED: Illegal dMsgType.",
            Code::IllegalDelayAction => "FAILED: Illegal delay action.",
            Code::IllegalDelayTimestamp => "FAILED: Illegal delay timestamp.",
            Code::IllegalDelaySeq => "FAILED: Illegal delay innerTopicSeq.",
            Code::IllegalLoopTimes => "FAILED: Illegal delay loopTimes.",
            Code::IllegalExpire => {
                "FAILED: Illegal delay expire, expire must be greater than timestamp."
            }
            Code::IllegalInterval => {
                "FAILED: Illegal delay interval, interval can not be less than 3."
            }
            Code::IllegalBase => {
                "FAILED: Illegal delay exponent base, base can not be less than 2."
            }
        }
    }

    /// All codes, for tests and metrics.
    pub const ALL: [Code; 20] = [
        Code::Ok,
        Code::Failed,
        Code::Illegal,
        Code::Timeout,
        Code::NotWhitelisted,
        Code::TopicNotExist,
        Code::RateLimited,
        Code::TopicNotDelay,
        Code::TopicIsDelay,
        Code::ShuttingDown,
        Code::NoProducer,
        Code::IllegalDelayId,
        Code::IllegalDelayType,
        Code::IllegalDelayAction,
        Code::IllegalDelayTimestamp,
        Code::IllegalDelaySeq,
        Code::IllegalLoopTimes,
        Code::IllegalExpire,
        Code::IllegalInterval,
        Code::IllegalBase,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_never_in_forbidden_ranges() {
        for c in Code::ALL {
            let v = c.as_i32();
            assert!(v == 0 || v >= 10, "code {v} must not be 1-9 or negative");
            assert!(!(16..=17).contains(&v) && !(22..=29).contains(&v));
        }
    }

    #[test]
    fn messages_are_byte_exact() {
        assert_eq!(Code::Ok.msg(), "OK");
        assert_eq!(
            Code::Illegal.msg(),
            "FAILED: Message is too large or illegal or the length is 0"
        );
        assert_eq!(Code::TopicNotExist.msg(), "FAILED: Topic do not exist!");
        assert_eq!(
            Code::IllegalBase.msg(),
            "FAILED: Illegal delay exponent base, base can not be less than 2."
        );
    }
}
