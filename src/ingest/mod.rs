//! Sources: each turns bytes from the outside into events and submits them
//! to the store's writer, acknowledging the sender only after the commit.

pub mod bulk;
pub mod http;
pub mod syslog;
