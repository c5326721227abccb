//! Base images: aliases, image servers, download, verification and cache.
