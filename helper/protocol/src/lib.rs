//! Message types shared by the Karapace core and karapace-helper.
