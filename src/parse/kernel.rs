//! Kernel messages that matter for security besides the firewall's
//! ([`super::firewall`]): USB devices plugged in (`drivers/usb/core/hub.c`),
//! processes killed by a segmentation fault (`arch/x86/mm/fault.c`) and by
//! the OOM killer (`mm/oom_kill.c`).
//!
//! Dataset `kernel`:
//!
//! | action | category | outcome | text |
//! |---|---|---|---|
//! | `usb_device_connected` | host | unknown | `usb 1-1: new high-speed USB device number 2 using xhci_hcd` |
//! | `usb_device_info` | host | unknown | `usb 1-1: New USB device found, idVendor=0781, idProduct=5581, ...`, `usb 1-1: Product: X`, `Manufacturer: X`, `SerialNumber: X` |
//! | `usb_device_disconnected` | host | unknown | `usb 1-1: USB disconnect, device number 2` |
//! | `process_segfault` | process | failure | `name[pid]: segfault at ADDR ip IP sp SP error N in lib[...]` |
//! | `oom_kill` | process | unknown | `Out of memory: Killed process PID (name) ...`, `Killed process PID (name) ...`, `oom-kill:...,task=name,pid=PID,...`, `name invoked oom-killer: ...` |
//!
//! The USB port goes to `usb.port`, vendor and product ids to
//! `usb.vendor_id` / `usb.product_id`, names to `usb.product`,
//! `usb.manufacturer`, `usb.serial`. For a segfault or an OOM kill,
//! `process.name` and `process.pid` are the process that died (not the
//! kernel that logged it).

use serde_json::Value;

use super::{kv, set_field};
use crate::model::Event;

/// Parses one kernel message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    // `[12345.678901] ` from dmesg-style lines.
    let m = match msg.trim().strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map_or(rest, |(_, m)| m),
        None => msg.trim(),
    };
    if let Some(rest) = m.strip_prefix("usb ") {
        return usb(rest, event);
    }
    if let Some((who, rest)) = m.split_once(": segfault at ") {
        set_process(event, who);
        set_field(event, "kernel.segfault", Value::from(rest));
        return done(event, "process", "process_segfault", "failure");
    }
    let killed = m
        .strip_prefix("Out of memory: ")
        .map(|r| {
            r.strip_prefix("Killed process ")
                .or_else(|| r.strip_prefix("Kill process "))
        })
        .unwrap_or_else(|| m.strip_prefix("Killed process "));
    if let Some(rest) = killed {
        // `PID (name) ...`
        if let Some((pid, rest)) = rest.split_once(" (")
            && let Some((name, _)) = rest.split_once(')')
        {
            event.process_name = Some(name.to_owned());
            event.process_pid = pid.parse().ok();
        }
        return done(event, "process", "oom_kill", "unknown");
    }
    if let Some(rest) = m.strip_prefix("oom-kill:") {
        let fields = rest.replace(',', " ");
        if let Some(name) = kv(&fields, "task") {
            event.process_name = Some(name.to_owned());
        }
        event.process_pid = kv(&fields, "pid").and_then(|p| p.parse().ok());
        return done(event, "process", "oom_kill", "unknown");
    }
    if let Some((name, _)) = m.split_once(" invoked oom-killer: ") {
        event.process_name = Some(name.to_owned());
        return done(event, "process", "oom_kill", "unknown");
    }
    false
}

fn usb(rest: &str, event: &mut Event) -> bool {
    let Some((port, text)) = rest.split_once(": ") else {
        return false;
    };
    if !port
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return false;
    }
    set_field(event, "usb.port", Value::from(port));
    if text.starts_with("new ") && text.contains(" USB device number ") {
        return done(event, "host", "usb_device_connected", "unknown");
    }
    if text.starts_with("USB disconnect") {
        return done(event, "host", "usb_device_disconnected", "unknown");
    }
    if let Some(ids) = text.strip_prefix("New USB device found, ") {
        let ids = ids.replace(',', " ");
        for (key, field) in [
            ("idVendor", "usb.vendor_id"),
            ("idProduct", "usb.product_id"),
        ] {
            if let Some(v) = kv(&ids, key) {
                set_field(event, field, Value::from(v));
            }
        }
        return done(event, "host", "usb_device_info", "unknown");
    }
    for (prefix, field) in [
        ("Product: ", "usb.product"),
        ("Manufacturer: ", "usb.manufacturer"),
        ("SerialNumber: ", "usb.serial"),
    ] {
        if let Some(v) = text.strip_prefix(prefix) {
            set_field(event, field, Value::from(v));
            return done(event, "host", "usb_device_info", "unknown");
        }
    }
    false
}

/// `name[pid]` of the process a message is about.
fn set_process(event: &mut Event, who: &str) {
    match who.strip_suffix(']').and_then(|w| w.rsplit_once('[')) {
        Some((name, pid)) => {
            event.process_name = Some(name.to_owned());
            event.process_pid = pid.parse().ok();
        }
        None => event.process_name = Some(who.to_owned()),
    }
}

done_in!("kernel");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usb_segfault_oom() {
        let mut e = Event::default();
        assert!(parse(
            "usb 1-1: New USB device found, idVendor=0781, idProduct=5581, bcdDevice= 1.00",
            &mut e
        ));
        assert_eq!(
            super::super::get_field(&e, "usb.vendor_id"),
            Some(&Value::from("0781"))
        );
        let mut e = Event::default();
        assert!(parse(
            "[ 1234.5] nginx[4242]: segfault at 0 ip 00007f sp 00007ffd error 4 in libc.so.6[7f+1a]",
            &mut e
        ));
        assert_eq!(
            (e.process_name.as_deref(), e.process_pid),
            (Some("nginx"), Some(4242))
        );
        let mut e = Event::default();
        assert!(parse(
            "Out of memory: Killed process 1234 (java) total-vm:100kB, anon-rss:50kB",
            &mut e
        ));
        assert_eq!(
            (e.action.as_deref(), e.process_pid),
            (Some("oom_kill"), Some(1234))
        );
        let mut e = Event::default();
        assert!(parse(
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task=java,pid=77,uid=0",
            &mut e
        ));
        assert_eq!(e.process_name.as_deref(), Some("java"));
    }
}
