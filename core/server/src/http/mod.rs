//! A small HTTP/1.1 server side on blocking streams: request heads parsed by `httparse`, body
//! framing (Content-Length and chunked) with size limits, responses. Every limit here exists
//! because the peer is assumed hostile: heads are capped in size, count and time, and a body
//! can never be read past its framing or its limit.

pub mod body;
pub mod request;
pub mod response;
pub mod stream;
