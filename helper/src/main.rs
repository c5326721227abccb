//! karapace-helper: the confined runtime helper.

fn main() {}
