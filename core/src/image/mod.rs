//! Images: references, media types, index/manifest/config, platform matching, chain IDs.
