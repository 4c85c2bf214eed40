//! Topic names and topic filters: validity, matching, and whether one set of
//! filters covers another filter (MQTT 5.0 section 4.7).

// Validity and matching are the codec's, so that the broker and its ACL never
// disagree about what a topic or filter is.
pub use codec::topic::{matches as filter_matches, valid_topic_filter, valid_topic_name};

/// Reports whether every topic that the valid filter `requested` matches is matched
/// by at least one of the valid filters in `allowed`.
///
/// The check is exact for the union: `a` together with `a/+/#` covers
/// `a/#`, although neither covers it alone.
pub fn filters_cover<S: AsRef<str>>(allowed: &[S], requested: &str) -> bool {
    let allowed_levels: Vec<Vec<&str>> = allowed
        .iter()
        .map(|filter| filter.as_ref().split('/').collect())
        .collect();
    let allowed_slices: Vec<&[&str]> = allowed_levels.iter().map(Vec::as_slice).collect();
    let requested_levels: Vec<&str> = requested.split('/').collect();
    covers_from(&allowed_slices, &requested_levels, 0)
}

/// Coverage of the remaining levels of `requested` by the remaining levels
/// of each allowed filter, `depth` levels into both.
fn covers_from(allowed: &[&[&str]], requested: &[&str], depth: usize) -> bool {
    // A requested first level such as `$SYS` is matched only by the same
    // literal level, never by a wildcard.
    let dollar_level = depth == 0
        && requested
            .first()
            .is_some_and(|level| level.starts_with('$'));
    if !dollar_level && allowed.iter().any(|filter| filter.first() == Some(&"#")) {
        return true;
    }

    match requested.first() {
        None => allowed.iter().any(|filter| filter.is_empty()),
        Some(&"#") => {
            // `#` matches this level ending the topic (the parent level,
            // except at the top) and every topic with one or more levels more.
            let parent_covered = depth == 0 || covers_from(allowed, &[], depth);
            parent_covered && covers_from(allowed, &["+", "#"], depth)
        }
        Some(level) => {
            let rest: Vec<&[&str]> = allowed
                .iter()
                .filter_map(|filter| {
                    let (first, rest) = filter.split_first()?;
                    let level_covered = if *level == "+" {
                        *first == "+"
                    } else {
                        first == level || (*first == "+" && !dollar_level)
                    };
                    level_covered.then_some(rest)
                })
                .collect();
            // Each step drops one level from every allowed filter, so the
            // recursion ends even when `#` expands into `+/#`.
            !rest.is_empty() && covers_from(&rest, &requested[1..], depth + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_validity() {
        let cases = [
            ("a", true),
            ("a/b", true),
            ("/", true),
            ("$SYS/x", true),
            ("", false),
            ("a/+", false),
            ("a/#", false),
            ("a\0b", false),
        ];
        for (topic, expected) in cases {
            assert_eq!(valid_topic_name(topic), expected, "topic {topic:?}");
        }
    }

    #[test]
    fn topic_filter_validity() {
        let cases = [
            ("#", true),
            ("+", true),
            ("a/+/b", true),
            ("a/#", true),
            ("+/+/#", true),
            ("a//b", true),
            ("", false),
            ("a/#/b", false),
            ("a#", false),
            ("a/b+", false),
            ("+a", false),
            ("#/", false),
        ];
        for (filter, expected) in cases {
            assert_eq!(valid_topic_filter(filter), expected, "filter {filter:?}");
        }
    }

    #[test]
    fn filter_matching() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/+", "a/", true),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("+/+", "/a", true),
            ("a/b", "a/b/c", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(
                filter_matches(filter, topic),
                expected,
                "{filter:?} on {topic:?}"
            );
        }
    }

    #[test]
    fn filter_coverage() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["site1/#"], "site1/#", true),
            (&["site1/#"], "site1", true),
            (&["site1/#"], "site1/a/b", true),
            (&["site1/#"], "site1/+", true),
            (&["site1/#"], "#", false),
            (&["site1/#"], "+/#", false),
            (&["site1/#"], "+", false),
            (&["site1/#"], "site2/#", false),
            (&["site1/+"], "site1/a", true),
            (&["site1/+"], "site1/+", true),
            (&["site1/+"], "site1/#", false),
            (&["site1/+"], "site1", false),
            (&["site1/+"], "site1/a/b", false),
            (&["site1/a"], "site1/+", false),
            (&["site1/a", "site1/b"], "site1/+", false),
            (&["+/temp"], "site1/temp", true),
            (&["+/temp"], "+/temp", true),
            (&["+/temp"], "#", false),
            (&["#"], "#", true),
            (&["#"], "a/b/+", true),
            (&["#"], "$SYS/#", false),
            (&["#"], "$SYS/broker/uptime", false),
            (&["+/#"], "$SYS/x", false),
            (&["$SYS/#"], "$SYS/broker/+", true),
            (&["$SYS/#"], "#", false),
            (&["$SYS/#"], "+/broker", false),
            (&["a", "a/+/#"], "a/#", true),
            (&["a/+/#"], "a/#", false),
            (&["a"], "a/#", false),
            (&["a/b/c"], "a/b/c", true),
            (&["a/b/c"], "a/b", false),
            (&["a/b"], "a/b/c", false),
            (&[], "a", false),
            (&["+/#"], "#", true),
            (&["+/#"], "$SYS/#", false),
            (&["a/+"], "a/$x", true),
        ];
        for (allowed, requested, expected) in cases {
            assert_eq!(
                filters_cover(allowed, requested),
                *expected,
                "{allowed:?} covering {requested:?}"
            );
        }
    }

    /// Coverage agrees with matching: whenever a filter is covered, every
    /// sample topic it matches is matched by an allowed filter.
    #[test]
    fn coverage_agrees_with_matching() {
        let filters = [
            "#", "+", "a", "a/#", "a/+", "a/b", "+/b", "a/+/#", "$SYS/#", "+/+",
        ];
        let topics = [
            "a", "b", "a/b", "a/c", "b/b", "a/b/c", "$SYS/x", "a/", "/b", "x/y/z",
        ];
        for requested in filters {
            for allowed in filters {
                if !filters_cover(&[allowed], requested) {
                    continue;
                }
                for topic in topics {
                    if filter_matches(requested, topic) {
                        assert!(
                            filter_matches(allowed, topic),
                            "{allowed:?} covers {requested:?} but misses {topic:?}"
                        );
                    }
                }
            }
        }
    }

    /// Builds every valid filter of up to `max_levels` levels over a small
    /// alphabet.
    fn all_filters(max_levels: usize) -> Vec<String> {
        let mut filters: Vec<String> = Vec::new();
        let mut frontier = vec![String::new()];
        for _ in 0..max_levels {
            let mut next = Vec::new();
            for prefix in &frontier {
                for level in ["a", "b", "$s", "+", "#"] {
                    let filter = if prefix.is_empty() {
                        level.to_string()
                    } else {
                        format!("{prefix}/{level}")
                    };
                    if valid_topic_filter(&filter) {
                        filters.push(filter.clone());
                        if level != "#" {
                            next.push(filter);
                        }
                    }
                }
            }
            frontier = next;
        }
        filters
    }

    /// Builds every topic of up to `max_levels` levels, with one level name
    /// (`c`) that no filter uses literally.
    fn all_topics(max_levels: usize) -> Vec<String> {
        let mut topics = Vec::new();
        let mut frontier = vec![String::new()];
        for _ in 0..max_levels {
            let mut next = Vec::new();
            for prefix in &frontier {
                for level in ["a", "b", "c", "$s"] {
                    let topic = if prefix.is_empty() {
                        level.to_string()
                    } else {
                        format!("{prefix}/{level}")
                    };
                    topics.push(topic.clone());
                    next.push(topic);
                }
            }
            frontier = next;
        }
        topics
    }

    /// Compares coverage with brute force: a filter is covered exactly when
    /// every sample topic it matches is matched by an allowed filter. Topics
    /// one level longer than the longest filter are enough to tell filters
    /// apart.
    #[test]
    fn coverage_matches_brute_force() {
        let filters = all_filters(3);
        let topics = all_topics(4);
        let pairs: Vec<Vec<&str>> = {
            let short: Vec<&str> = filters
                .iter()
                .map(String::as_str)
                .filter(|f| f.split('/').count() <= 2)
                .collect();
            let mut pairs = Vec::new();
            for (index, first) in short.iter().enumerate() {
                for second in &short[index + 1..] {
                    pairs.push(vec![*first, *second]);
                }
            }
            pairs
        };
        let singles = filters.iter().map(|filter| vec![filter.as_str()]);
        for allowed in singles.chain(pairs) {
            for requested in &filters {
                let expected = topics
                    .iter()
                    .filter(|topic| filter_matches(requested, topic))
                    .all(|topic| allowed.iter().any(|filter| filter_matches(filter, topic)));
                assert_eq!(
                    filters_cover(&allowed, requested),
                    expected,
                    "{allowed:?} covering {requested:?}"
                );
            }
        }
    }
}
