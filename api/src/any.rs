//! `google.protobuf.Any` as containerd writes it: the bare proto full name as the type URL (no
//! `type.googleapis.com/` prefix), which is what containerd's `typeurl` registry resolves.

use prost::{Message, Name};
use prost_types::Any;

/// Packs `msg` with its bare full name (e.g. `containerd.events.NamespaceCreate`) as type URL.
pub fn to_any<M: Message + Name>(msg: &M) -> Any {
    Any {
        type_url: M::full_name(),
        value: msg.encode_to_vec(),
    }
}

/// Unpacks `any` if its type URL names `M` (bare or with a `…/` prefix).
pub fn from_any<M: Message + Name + Default>(any: &Any) -> Option<M> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    (name == M::full_name())
        .then(|| M::decode(any.value.as_slice()).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NamespaceCreate;

    #[test]
    fn type_urls_are_bare_names() {
        let a = to_any(&NamespaceCreate {
            name: "x".into(),
            labels: Default::default(),
        });
        assert_eq!(a.type_url, "containerd.events.NamespaceCreate");
        let back: NamespaceCreate = from_any(&a).unwrap();
        assert_eq!(back.name, "x");
    }
}
