//! Event topics, named as containerd names them.

/// `/namespaces/create`
pub const NAMESPACE_CREATE: &str = "/namespaces/create";
/// `/namespaces/update`
pub const NAMESPACE_UPDATE: &str = "/namespaces/update";
/// `/namespaces/delete` (published in the deleted namespace)
pub const NAMESPACE_DELETE: &str = "/namespaces/delete";
/// `/content/delete`
pub const CONTENT_DELETE: &str = "/content/delete";
/// `/content/create` (containerd 2.x; published on commit)
pub const CONTENT_CREATE: &str = "/content/create";

/// True if `topic` is a well-formed topic: `/`-separated, non-empty components of
/// `[A-Za-z0-9_.-]`.
#[must_use]
pub fn valid_topic(topic: &str) -> bool {
    topic.len() > 1
        && topic.starts_with('/')
        && topic[1..].split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn topics_validate() {
        assert!(super::valid_topic(super::CONTENT_DELETE));
        assert!(!super::valid_topic("content/delete"));
        assert!(!super::valid_topic("/a//b"));
        assert!(!super::valid_topic("/"));
    }
}
