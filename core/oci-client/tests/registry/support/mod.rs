pub mod certs;
pub mod image;
pub mod stub;
pub mod token;
