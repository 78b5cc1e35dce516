//! Plain data: the normalised [`Event`] and the [`Alert`]. No I/O here.

mod alert;
mod event;
mod labels;

pub use alert::{
    Alert, AlertAction, AlertChange, AlertStatus, AlertUpdate, MAX_HISTORY, MAX_LINKED_EVENTS,
};
pub use event::{Event, EventInputError, KNOWN_FIELDS, ip_text, push_ip_text};
pub use labels::Labels;
