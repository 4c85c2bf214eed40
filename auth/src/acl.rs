//! The access control list of one connection: what it may publish,
//! subscribe to and receive.

use serde::{Deserialize, Serialize};

use crate::filter::{filter_matches, filters_cover, valid_topic_filter, valid_topic_name};

/// Prefix of a shared subscription, `$share/{ShareName}/{filter}`
/// (MQTT 5.0 section 4.8.2).
const SHARED_PREFIX: &str = "$share/";

/// The topic filters one connection may publish to and subscribe to, with
/// the `%c` (client id) and `%u` (username) placeholders already replaced.
/// It serializes with serde, so that a Durable Object can keep it in a
/// socket attachment or a session row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    publish: Vec<String>,
    subscribe: Vec<String>,
    unrestricted: bool,
}

impl Acl {
    /// Builds the ACL of an anonymous client: every topic, except that
    /// publishing to `$` topics is refused to everyone.
    pub fn unrestricted() -> Acl {
        Acl {
            publish: Vec::new(),
            subscribe: Vec::new(),
            unrestricted: true,
        }
    }

    /// Builds an ACL from a grant's filters, replacing `%c` with `client_id`
    /// and `%u` with `username`.
    ///
    /// A filter is dropped, and so allows nothing, when a placeholder's value
    /// is absent or empty or contains `/`, `+`, `#` or NUL, because such a
    /// value would widen the filter beyond one level. Invalid filters are
    /// dropped too.
    pub fn new(
        publish: &[String],
        subscribe: &[String],
        client_id: &str,
        username: Option<&str>,
    ) -> Acl {
        let resolve = |filters: &[String]| {
            filters
                .iter()
                .filter_map(|filter| resolve_placeholders(filter, client_id, username))
                .filter(|filter| valid_topic_filter(filter))
                .collect()
        };
        Acl {
            publish: resolve(publish),
            subscribe: resolve(subscribe),
            unrestricted: false,
        }
    }

    /// Reports whether the client may publish to `topic`. Topics that start with `$`
    /// belong to the broker, so no client may publish to them.
    pub fn may_publish(&self, topic: &str) -> bool {
        if !valid_topic_name(topic) || topic.starts_with('$') {
            return false;
        }
        self.unrestricted
            || self
                .publish
                .iter()
                .any(|filter| filter_matches(filter, topic))
    }

    /// Reports whether the client may subscribe to `filter`: only when every topic
    /// the filter can match is covered by the allowed subscribe filters. A
    /// shared subscription is judged by the filter after its share name.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let filter = match filter.strip_prefix(SHARED_PREFIX) {
            Some(rest) => match rest.split_once('/') {
                Some((share_name, inner)) if valid_share_name(share_name) => inner,
                _ => return false,
            },
            None => filter,
        };
        if !valid_topic_filter(filter) {
            return false;
        }
        self.unrestricted || filters_cover(&self.subscribe, filter)
    }

    /// Reports whether a message on `topic` may be delivered to the client. This is
    /// the check for retained messages and `$SYS` topics, which reach a
    /// subscription that may have been granted under another ACL.
    pub fn may_receive(&self, topic: &str) -> bool {
        if !valid_topic_name(topic) {
            return false;
        }
        self.unrestricted
            || self
                .subscribe
                .iter()
                .any(|filter| filter_matches(filter, topic))
    }

    /// Reports whether this ACL allows every topic (an anonymous client).
    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    /// Returns the publish filters after placeholder replacement.
    pub fn publish_filters(&self) -> &[String] {
        &self.publish
    }

    /// Returns the subscribe filters after placeholder replacement.
    pub fn subscribe_filters(&self) -> &[String] {
        &self.subscribe
    }
}

fn valid_share_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#'])
}

/// Replaces `%c` and `%u` in `filter`; `None` when a value needed is unsafe.
fn resolve_placeholders(filter: &str, client_id: &str, username: Option<&str>) -> Option<String> {
    let mut resolved = String::with_capacity(filter.len());
    let mut rest = filter;
    while let Some(at) = rest.find('%') {
        resolved.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let value = match after.chars().next() {
            Some('c') => Some(client_id),
            Some('u') => Some(username?),
            _ => None,
        };
        match value {
            Some(value) => {
                if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
                    return None;
                }
                resolved.push_str(value);
                rest = &after[1..];
            }
            None => {
                resolved.push('%');
                rest = after;
            }
        }
    }
    resolved.push_str(rest);
    Some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(filters: &[&str]) -> Vec<String> {
        filters.iter().map(|filter| filter.to_string()).collect()
    }

    fn acl(publish: &[&str], subscribe: &[&str]) -> Acl {
        Acl::new(
            &strings(publish),
            &strings(subscribe),
            "dev1",
            Some("alice"),
        )
    }

    #[test]
    fn placeholders_are_replaced() {
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            (
                "devices/%c/#",
                "dev1",
                Some("alice"),
                Some("devices/dev1/#"),
            ),
            ("users/%u/+", "dev1", Some("alice"), Some("users/alice/+")),
            ("%u/%c", "dev1", Some("alice"), Some("alice/dev1")),
            ("users/%u", "dev1", None, None),
            ("users/%u", "dev1", Some(""), None),
            ("devices/%c", "a/b", None, None),
            ("devices/%c", "#", None, None),
            ("devices/%c", "+", None, None),
            ("100%/x", "dev1", None, Some("100%/x")),
            ("%x/%", "dev1", None, Some("%x/%")),
        ];
        for (filter, client_id, username, expected) in cases {
            assert_eq!(
                resolve_placeholders(filter, client_id, *username).as_deref(),
                *expected,
                "{filter:?} with client id {client_id:?} and username {username:?}"
            );
        }
    }

    #[test]
    fn publish_checks() {
        let acl = acl(&["site1/#", "devices/%c/out"], &[]);
        let cases = [
            ("site1/a", true),
            ("site1", true),
            ("site2/a", false),
            ("devices/dev1/out", true),
            ("devices/dev2/out", false),
            ("site1/+", false),
            ("$SYS/x", false),
            ("", false),
        ];
        for (topic, expected) in cases {
            assert_eq!(acl.may_publish(topic), expected, "publish to {topic:?}");
        }
    }

    #[test]
    fn subscribe_checks() {
        let acl = acl(&[], &["site1/#", "devices/%c/in", "$SYS/broker/#"]);
        let cases = [
            ("site1/#", true),
            ("site1/+/temp", true),
            ("#", false),
            ("+/#", false),
            ("devices/dev1/in", true),
            ("devices/+/in", false),
            ("$SYS/broker/uptime", true),
            ("$SYS/#", false),
            ("$share/g1/site1/#", true),
            ("$share/g1/#", false),
            ("$share//site1/#", false),
            ("$share/g1", false),
            ("site1/#/x", false),
        ];
        for (filter, expected) in cases {
            assert_eq!(
                acl.may_subscribe(filter),
                expected,
                "subscribe to {filter:?}"
            );
        }
    }

    #[test]
    fn receive_checks() {
        let acl = acl(&[], &["site1/#"]);
        assert!(acl.may_receive("site1/a"));
        assert!(!acl.may_receive("site2/a"));
        assert!(!acl.may_receive("$SYS/broker/uptime"));
    }

    #[test]
    fn unrestricted_acl() {
        let acl = Acl::unrestricted();
        assert!(acl.may_publish("a/b"));
        assert!(!acl.may_publish("$SYS/x"));
        assert!(acl.may_subscribe("#"));
        assert!(acl.may_subscribe("$SYS/#"));
        assert!(acl.may_receive("$SYS/broker/uptime"));
        assert!(!acl.may_subscribe("a/#/b"));
    }

    #[test]
    fn serde_round_trip() {
        let acl = acl(&["devices/%c/out"], &["site1/#"]);
        let json = serde_json::to_string(&acl).unwrap();
        let restored: Acl = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, acl);
        assert_eq!(restored.publish_filters(), ["devices/dev1/out"]);
    }

    #[test]
    fn empty_acl_allows_nothing() {
        let acl = acl(&[], &[]);
        assert!(!acl.may_publish("a"));
        assert!(!acl.may_subscribe("a"));
        assert!(!acl.may_receive("a"));
    }
}
