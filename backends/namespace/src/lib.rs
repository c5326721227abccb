//! Linux-namespace runtime backend driven by karapace-helper.
