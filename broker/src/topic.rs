//! Subscription filters as the broker sees them: plain or shared, and the
//! topics clients may not publish to. Validation and matching themselves are
//! the codec's ([`codec::topic`]).

pub use codec::topic::{matches, valid_topic_filter, valid_topic_name};

/// A shared subscription filter split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The share name: the subscribers of one group get each message once.
    pub group: &'a str,
    /// The topic filter after the share name.
    pub filter: &'a str,
}

/// The outcome of parsing a subscription filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedFilter<'a> {
    /// An ordinary topic filter.
    Plain(&'a str),
    /// `$share/{group}/{filter}`.
    Shared(SharedFilter<'a>),
    /// Not a valid filter.
    Invalid,
}

/// Splits a subscription filter into a plain or a shared filter and checks
/// it. A filter that starts with `$share/` but is not a valid shared filter
/// is invalid (MQTT-4.8.2-1, MQTT-4.8.2-2).
pub fn parse_filter(filter: &str) -> ParsedFilter<'_> {
    if filter.starts_with(codec::topic::SHARED_PREFIX) {
        return match codec::split_shared(filter) {
            Some((group, inner)) if valid_topic_filter(inner) => {
                ParsedFilter::Shared(SharedFilter {
                    group,
                    filter: inner,
                })
            }
            _ => ParsedFilter::Invalid,
        };
    }
    if filter == "$share" || !valid_topic_filter(filter) {
        return ParsedFilter::Invalid;
    }
    ParsedFilter::Plain(filter)
}

/// Reports whether a topic is under `$SYS`, which clients may not publish to.
pub fn is_system_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_filters_parse_group_and_filter() {
        assert_eq!(
            parse_filter("$share/g/a/+"),
            ParsedFilter::Shared(SharedFilter {
                group: "g",
                filter: "a/+"
            })
        );
        assert_eq!(parse_filter("a/+"), ParsedFilter::Plain("a/+"));
        assert_eq!(parse_filter("$share/g"), ParsedFilter::Invalid);
        assert_eq!(parse_filter("$share//a"), ParsedFilter::Invalid);
        assert_eq!(parse_filter("$share/g+/a"), ParsedFilter::Invalid);
        assert_eq!(parse_filter("$share/g/a#"), ParsedFilter::Invalid);
        assert_eq!(parse_filter("$share"), ParsedFilter::Invalid);
        assert_eq!(parse_filter("a/#/b"), ParsedFilter::Invalid);
    }

    #[test]
    fn system_topics_are_detected() {
        assert!(is_system_topic("$SYS"));
        assert!(is_system_topic("$SYS/broker/load"));
        assert!(!is_system_topic("$SYSTEM"));
        assert!(!is_system_topic("a/$SYS"));
    }
}
