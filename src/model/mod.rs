//! Plain data: the normalised [`Event`]. No I/O here.

mod event;

pub use event::{Event, EventInputError};
