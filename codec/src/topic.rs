//! Topic names, topic filters and how they match (MQTT section 4.7).

use crate::scan::{find_nul_or_wildcard, has_nul_or_wildcard};

/// The prefix of a shared subscription's topic filter (MQTT 5.0 section 4.8.2).
pub const SHARED_PREFIX: &str = "$share/";

/// True if `topic` is a valid topic name: 1 to 65535 bytes, no U+0000 and no
/// wildcard `+` or `#` (MQTT-3.3.2-2, MQTT-4.7.3-1, MQTT-4.7.3-2).
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= usize::from(u16::MAX)
        && !has_nul_or_wildcard(topic.as_bytes())
}

/// True if `filter` is a valid topic filter: 1 to 65535 bytes, no U+0000,
/// `+` only as a whole level (MQTT-4.7.1-2), and `#` only as the whole last
/// level (MQTT-4.7.1-1). A `$share/` filter is checked as an ordinary one;
/// see [`split_shared`] for its own syntax.
pub fn valid_topic_filter(filter: &str) -> bool {
    let bytes = filter.as_bytes();
    if bytes.is_empty() || bytes.len() > usize::from(u16::MAX) {
        return false;
    }
    // Jump from one NUL, `+` or `#` to the next, because the bytes between
    // them are valid anywhere. All the characters checked here are ASCII.
    let mut start = 0;
    while let Some(offset) = bytes.get(start..).and_then(find_nul_or_wildcard) {
        let index = start + offset;
        let whole_level = match index.checked_sub(1) {
            None => true,
            Some(previous) => bytes.get(previous) == Some(&b'/'),
        };
        let next = bytes.get(index + 1);
        let valid = match bytes.get(index) {
            Some(b'+') => whole_level && next.is_none_or(|&next| next == b'/'),
            Some(b'#') => whole_level && next.is_none(),
            _ => false,
        };
        if !valid {
            return false;
        }
        start = index + 1;
    }
    true
}

/// Splits a shared subscription filter `$share/{ShareName}/{filter}` into the
/// share name and the filter. Returns `None` for a filter without the
/// `$share/` prefix, and for one with the prefix whose share name is empty or
/// contains `+` or `#`, or that has no `/` and filter after the share name
/// (MQTT-4.8.2-1, MQTT-4.8.2-2).
pub fn split_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix(SHARED_PREFIX)?;
    let (share_name, filter) = rest.split_once('/')?;
    let wildcard = share_name.bytes().any(|byte| byte == b'+' || byte == b'#');
    if share_name.is_empty() || wildcard || filter.is_empty() {
        return None;
    }
    Some((share_name, filter))
}

/// True if the topic name `topic` matches the topic filter `filter`.
///
/// Both must be valid; a shared filter must be passed without its
/// `$share/{ShareName}/` prefix. Filters that start with a wildcard do not
/// match topics that start with `$` (MQTT-4.7.2-1). Matching compares bytes,
/// with no normalization (MQTT-4.7.3-4).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` also matches the parent level: "a/#" matches "a".
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(filter_level), Some(topic_level)) if filter_level == topic_level => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_rejects_wildcards_and_empty() {
        assert!(valid_topic_name("a/b"));
        assert!(valid_topic_name("/"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a/+"));
        assert!(!valid_topic_name("a/#"));
        assert!(!valid_topic_name("a\0"));
    }

    #[test]
    fn topic_filter_wildcards_must_be_whole_levels() {
        for valid in [
            "#",
            "+",
            "a/#",
            "+/+",
            "/+",
            "a/+/b",
            "sport/tennis/#",
            "a//b",
        ] {
            assert!(valid_topic_filter(valid), "{valid:?}");
        }
        for invalid in ["", "a#", "a/#/b", "#/a", "a+", "a/b+", "+a/b", "##", "a\0"] {
            assert!(!valid_topic_filter(invalid), "{invalid:?}");
        }
    }

    #[test]
    fn shared_filter_splits() {
        assert_eq!(split_shared("$share/g/a/b"), Some(("g", "a/b")));
        assert_eq!(split_shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(split_shared("$share//a"), None);
        assert_eq!(split_shared("$share/g"), None);
        assert_eq!(split_shared("$share/g/"), None);
        assert_eq!(split_shared("$share/g+/a"), None);
        assert_eq!(split_shared("a/b"), None);
    }

    #[test]
    fn matching_follows_levels() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "/a", true),
            ("+", "/a", false),
            ("a/b", "a/c", false),
            ("a", "a/b", false),
            ("a/b", "a", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter:?} {topic:?}");
        }
    }
}
