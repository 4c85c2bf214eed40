//! An index of every subscription of the namespace by topic level, so that
//! routing a message visits only the filters that can match its topic.
//!
//! The sessions remain the owners of the subscriptions and their options;
//! the tree stores only which client subscribed with which filter.

use std::collections::{BTreeMap, BTreeSet};

use crate::topic::{self, ParsedFilter};

/// A subscription as the tree stores it: the client id and the full filter,
/// with its `$share/{group}/` prefix if it has one.
pub type Subscriber = (String, String);

/// Subscriptions indexed by the levels of their topic filters.
#[derive(Debug, Default)]
pub struct SubscriptionTree {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    /// Child nodes by filter level, `+` and `#` included.
    children: BTreeMap<String, Node>,
    /// Subscriptions whose filter ends at this node.
    subscribers: BTreeSet<Subscriber>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty()
    }
}

impl SubscriptionTree {
    /// Adds a subscription. An invalid filter is not added.
    pub fn insert(&mut self, client_id: &str, filter: &str) {
        let Some(levels) = matching_filter(filter) else {
            return;
        };
        let mut node = &mut self.root;
        for level in levels.split('/') {
            node = node.children.entry(level.to_string()).or_default();
        }
        node.subscribers
            .insert((client_id.to_string(), filter.to_string()));
    }

    /// Removes a subscription, and the nodes that no longer lead anywhere.
    pub fn remove(&mut self, client_id: &str, filter: &str) {
        let Some(levels) = matching_filter(filter) else {
            return;
        };
        let subscriber = (client_id.to_string(), filter.to_string());
        let levels: Vec<&str> = levels.split('/').collect();
        remove_from(&mut self.root, &levels, &subscriber);
    }

    /// Returns every subscription whose filter matches `topic`, sorted by
    /// client id and filter.
    pub fn matches(&self, topic: &str) -> Vec<Subscriber> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut found = BTreeSet::new();
        // Filters that start with a wildcard do not match topics that start
        // with `$` (MQTT-4.7.2-1).
        let skip_wildcards = topic.starts_with('$');
        collect(&self.root, &levels, skip_wildcards, &mut found);
        found.into_iter().collect()
    }
}

/// Returns the filter that decides matching: the filter itself, or the part
/// after `$share/{group}/`. `None` for an invalid filter.
fn matching_filter(filter: &str) -> Option<&str> {
    match topic::parse_filter(filter) {
        ParsedFilter::Plain(plain) => Some(plain),
        ParsedFilter::Shared(shared) => Some(shared.filter),
        ParsedFilter::Invalid => None,
    }
}

fn remove_from(node: &mut Node, levels: &[&str], subscriber: &Subscriber) {
    let Some((first, rest)) = levels.split_first() else {
        node.subscribers.remove(subscriber);
        return;
    };
    let Some(child) = node.children.get_mut(*first) else {
        return;
    };
    remove_from(child, rest, subscriber);
    if child.is_empty() {
        node.children.remove(*first);
    }
}

fn collect(node: &Node, levels: &[&str], skip_wildcards: bool, found: &mut BTreeSet<Subscriber>) {
    if !skip_wildcards {
        // `#` matches the rest of the topic, and also its parent level:
        // `a/#` matches `a`.
        if let Some(rest) = node.children.get("#") {
            found.extend(rest.subscribers.iter().cloned());
        }
    }
    let Some((first, rest)) = levels.split_first() else {
        found.extend(node.subscribers.iter().cloned());
        return;
    };
    if !skip_wildcards {
        if let Some(any) = node.children.get("+") {
            collect(any, rest, false, found);
        }
    }
    if let Some(exact) = node.children.get(*first) {
        collect(exact, rest, false, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(tree: &SubscriptionTree, topic: &str) -> Vec<String> {
        tree.matches(topic)
            .into_iter()
            .map(|(client, _)| client)
            .collect()
    }

    #[test]
    fn tree_matches_like_the_matcher() {
        let filters = [
            "a/b", "a/+", "a/#", "#", "+/b", "+", "$SYS/#", "a/+/c", "/", "+/+",
        ];
        let topics = ["a", "a/b", "a/b/c", "b", "$SYS/x", "/", "a/", "$x"];
        let mut tree = SubscriptionTree::default();
        for filter in filters {
            tree.insert(filter, filter);
        }
        for topic in topics {
            let mut expected: Vec<String> = filters
                .iter()
                .filter(|filter| topic::matches(filter, topic))
                .map(|filter| filter.to_string())
                .collect();
            expected.sort();
            assert_eq!(clients(&tree, topic), expected, "topic {topic:?}");
        }
    }

    #[test]
    fn shared_filters_match_by_their_inner_filter() {
        let mut tree = SubscriptionTree::default();
        tree.insert("c1", "$share/g/a/+");
        assert_eq!(
            tree.matches("a/b"),
            [("c1".to_string(), "$share/g/a/+".to_string())]
        );
        assert!(tree.matches("$share/g/a/b").is_empty());
    }

    #[test]
    fn remove_prunes_empty_nodes() {
        let mut tree = SubscriptionTree::default();
        tree.insert("c1", "a/b/c");
        tree.insert("c2", "a/b/c");
        tree.remove("c1", "a/b/c");
        assert_eq!(clients(&tree, "a/b/c"), ["c2"]);
        tree.remove("c2", "a/b/c");
        assert!(tree.matches("a/b/c").is_empty());
        assert!(tree.root.is_empty());
    }
}
