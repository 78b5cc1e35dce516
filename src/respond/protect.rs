//! The addresses the responder never blocks, whoever asks.
//!
//! Blocking them would cut the node off from itself or its operators, or
//! is meaningless (no packet comes from them): loopback (`127.0.0.0/8`,
//! `::1`), link-local (`169.254.0.0/16`, `fe80::/10`), unspecified
//! (`0.0.0.0/8`, `::`), multicast (`224.0.0.0/4`, `ff00::/8`), broadcast
//! (`255.255.255.255` and each interface's subnet broadcast), the node's own
//! addresses, the reverse proxies of `auth.trusted_proxies` and the networks
//! of `response.allow`.
//!
//! The node's addresses are those of the network namespace secmon runs in:
//! enumerated at start and every minute from `/proc/net/if_inet6` (IPv6)
//! and the local routing table in `/proc/net/fib_trie` (IPv4: `host LOCAL`
//! and `link BROADCAST` entries), and checked again at the moment of a
//! decision by binding a socket to the address (which only a local address
//! allows, unless `ip_nonlocal_bind` is set), so an address added since the
//! last enumeration is protected too.

use std::collections::HashSet;
use std::io::{BufRead, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::RwLock;

use crate::config::Cidr;

/// Most of `/proc/net/fib_trie` read: on a router holding a full routing
/// table the main table comes first and can be large; past this the rest
/// (the local table) is not read and the bind check alone finds the node's
/// IPv4 addresses.
const MAX_FIB_TRIE_BYTES: u64 = 64 * 1024 * 1024;

/// Why an address is never blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    Loopback,
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    OwnAddress,
    TrustedProxy,
    AllowList,
}

impl Protection {
    /// The stable name (audit entries, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Protection::Loopback => "loopback",
            Protection::LinkLocal => "link_local",
            Protection::Unspecified => "unspecified",
            Protection::Multicast => "multicast",
            Protection::Broadcast => "broadcast",
            Protection::OwnAddress => "own_address",
            Protection::TrustedProxy => "trusted_proxy",
            Protection::AllowList => "allow_list",
        }
    }

    /// Why, in words.
    pub fn why(self) -> &'static str {
        match self {
            Protection::Loopback => "it is a loopback address",
            Protection::LinkLocal => "it is a link-local address",
            Protection::Unspecified => "it is an unspecified address",
            Protection::Multicast => "it is a multicast address",
            Protection::Broadcast => "it is a broadcast address",
            Protection::OwnAddress => "it is one of this node's own addresses",
            Protection::TrustedProxy => "it is a reverse proxy of auth.trusted_proxies",
            Protection::AllowList => "it is in response.allow",
        }
    }
}

/// The protection of `ip` by its address class alone (no configuration,
/// no interfaces). `ip` is taken as canonical: an IPv4-mapped IPv6 address
/// is its IPv4 address.
pub fn class(ip: IpAddr) -> Option<Protection> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some(Protection::Loopback)
            } else if v4.is_link_local() {
                Some(Protection::LinkLocal)
            } else if v4.octets()[0] == 0 {
                // 0.0.0.0/8: "this network", never a real source.
                Some(Protection::Unspecified)
            } else if v4.is_multicast() {
                Some(Protection::Multicast)
            } else if v4.is_broadcast() {
                Some(Protection::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some(Protection::Loopback)
            } else if v6.is_unicast_link_local() {
                Some(Protection::LinkLocal)
            } else if v6.is_unspecified() {
                Some(Protection::Unspecified)
            } else if v6.is_multicast() {
                Some(Protection::Multicast)
            } else {
                None
            }
        }
    }
}

/// The node's own addresses, as enumerated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnAddresses {
    pub local: HashSet<IpAddr>,
    /// IPv4 subnet broadcast addresses of the interfaces.
    pub broadcast: HashSet<IpAddr>,
    /// `ip_nonlocal_bind` is set (IPv4, IPv6): binding proves nothing.
    nonlocal_bind: (bool, bool),
}

impl OwnAddresses {
    /// Reads the addresses of this network namespace from `/proc`. What
    /// cannot be read is left out (and logged): the bind check still runs.
    pub fn enumerate() -> OwnAddresses {
        let mut own = OwnAddresses::default();
        match std::fs::read_to_string("/proc/net/if_inet6") {
            Ok(text) => own.local.extend(parse_if_inet6(&text)),
            // No IPv6 in this kernel or namespace: nothing to add.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc/net/if_inet6: the node's IPv6 addresses are found by binding only")
            }
        }
        match std::fs::File::open("/proc/net/fib_trie") {
            Ok(file) => {
                let reader = std::io::BufReader::new(file.take(MAX_FIB_TRIE_BYTES));
                let (local, broadcast) = parse_fib_trie(reader);
                own.local.extend(local.into_iter().map(IpAddr::V4));
                own.broadcast.extend(broadcast.into_iter().map(IpAddr::V4));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc/net/fib_trie: the node's IPv4 addresses are found by binding only")
            }
        }
        let flag = |path: &str| {
            std::fs::read_to_string(path).is_ok_and(|v| v.trim() != "0" && !v.trim().is_empty())
        };
        own.nonlocal_bind = (
            flag("/proc/sys/net/ipv4/ip_nonlocal_bind"),
            flag("/proc/sys/net/ipv6/ip_nonlocal_bind"),
        );
        own
    }

    /// Whether `ip` (canonical) is one of the node's addresses: enumerated,
    /// or bindable now.
    fn protection(&self, ip: IpAddr) -> Option<Protection> {
        if self.local.contains(&ip) {
            return Some(Protection::OwnAddress);
        }
        if self.broadcast.contains(&ip) {
            return Some(Protection::Broadcast);
        }
        let nonlocal = if ip.is_ipv4() {
            self.nonlocal_bind.0
        } else {
            self.nonlocal_bind.1
        };
        // Binding an address that is not the node's fails (EADDRNOTAVAIL).
        (!nonlocal && UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())
            .then_some(Protection::OwnAddress)
    }
}

/// The addresses of `/proc/net/if_inet6`: one line per address, its 32 hex
/// digits first.
pub fn parse_if_inet6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            (hex.len() == 32)
                .then(|| u128::from_str_radix(hex, 16).ok())
                .flatten()
                .map(|bits| IpAddr::V6(Ipv6Addr::from(bits)))
        })
        .collect()
}

/// The local (`/32 host LOCAL`) and subnet broadcast (`/32 link BROADCAST`)
/// addresses of `/proc/net/fib_trie`: each leaf (`|-- 192.0.2.2`) is
/// followed by its routes' lines.
pub fn parse_fib_trie(reader: impl BufRead) -> (HashSet<Ipv4Addr>, HashSet<Ipv4Addr>) {
    let (mut local, mut broadcast) = (HashSet::new(), HashSet::new());
    let mut leaf: Option<Ipv4Addr> = None;
    for line in reader.lines().map_while(Result::ok) {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|--") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("+--") {
            leaf = None;
        } else if let Some(ip) = leaf
            && line.starts_with("/32 ")
        {
            if line.ends_with("host LOCAL") {
                local.insert(ip);
            } else if line.ends_with("link BROADCAST") {
                broadcast.insert(ip);
            }
        }
    }
    (local, broadcast)
}

/// The never-blocked set: address classes, the node's addresses, trusted
/// proxies, the allow-list.
pub struct Protected {
    allow: Vec<Cidr>,
    proxies: Vec<Cidr>,
    own: RwLock<OwnAddresses>,
}

impl Protected {
    pub fn new(allow: Vec<Cidr>, proxies: Vec<Cidr>, own: OwnAddresses) -> Protected {
        Protected {
            allow,
            proxies,
            own: RwLock::new(own),
        }
    }

    /// Why `ip` is never blocked, or `None` when it may be.
    pub fn check(&self, ip: IpAddr) -> Option<Protection> {
        let ip = ip.to_canonical();
        if let Some(p) = class(ip) {
            return Some(p);
        }
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Some(Protection::AllowList);
        }
        if self.proxies.iter().any(|c| c.contains(ip)) {
            return Some(Protection::TrustedProxy);
        }
        let own = self
            .own
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        own.protection(ip)
    }

    /// Replaces the node's addresses with a new enumeration.
    pub fn refresh(&self, own: OwnAddresses) {
        *self
            .own
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = own;
    }

    /// How many addresses of the node are known (for the start-up log).
    pub fn own_count(&self) -> usize {
        let own = self
            .own
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        own.local.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::try_from(s.to_owned()).unwrap()
    }

    /// (address, its protection by class).
    const CLASSES: &[(&str, Option<Protection>)] = &[
        ("127.0.0.1", Some(Protection::Loopback)),
        ("127.8.9.10", Some(Protection::Loopback)),
        ("::1", Some(Protection::Loopback)),
        ("::ffff:127.0.0.1", Some(Protection::Loopback)),
        ("169.254.169.254", Some(Protection::LinkLocal)),
        ("fe80::1", Some(Protection::LinkLocal)),
        ("febf:ffff::1", Some(Protection::LinkLocal)),
        ("0.0.0.0", Some(Protection::Unspecified)),
        ("0.1.2.3", Some(Protection::Unspecified)),
        ("::", Some(Protection::Unspecified)),
        ("224.0.0.1", Some(Protection::Multicast)),
        ("239.255.255.250", Some(Protection::Multicast)),
        ("ff02::1", Some(Protection::Multicast)),
        ("255.255.255.255", Some(Protection::Broadcast)),
        ("::ffff:255.255.255.255", Some(Protection::Broadcast)),
        ("203.0.113.7", None),
        ("10.1.2.3", None),
        ("::ffff:203.0.113.7", None),
        ("2001:db8::7", None),
        ("fec0::1", None),
    ];

    #[test]
    fn address_classes_that_are_never_blocked() {
        for (addr, expected) in CLASSES {
            assert_eq!(class(ip(addr)), *expected, "{addr}");
        }
    }

    #[test]
    fn the_never_block_set_covers_config_and_own_addresses() {
        let own = OwnAddresses {
            local: [ip("192.0.2.2"), ip("fd00::2")].into(),
            broadcast: [ip("192.0.2.255")].into(),
            // Binding proves nothing here, so only the enumeration counts.
            nonlocal_bind: (true, true),
        };
        let set = Protected::new(
            vec![cidr("10.0.0.0/24")],
            vec![cidr("172.16.5.0/30"), cidr("2001:db8:1::/48")],
            own,
        );
        let cases = [
            ("127.0.0.1", Some(Protection::Loopback)),
            ("10.0.0.200", Some(Protection::AllowList)),
            ("::ffff:10.0.0.9", Some(Protection::AllowList)),
            ("10.0.1.1", None),
            ("172.16.5.2", Some(Protection::TrustedProxy)),
            ("172.16.5.4", None),
            ("2001:db8:1:2::3", Some(Protection::TrustedProxy)),
            ("192.0.2.2", Some(Protection::OwnAddress)),
            ("::ffff:192.0.2.2", Some(Protection::OwnAddress)),
            ("fd00::2", Some(Protection::OwnAddress)),
            ("192.0.2.255", Some(Protection::Broadcast)),
            ("192.0.2.3", None),
            ("203.0.113.7", None),
        ];
        for (addr, expected) in cases {
            assert_eq!(set.check(ip(addr)), expected, "{addr}");
        }
        // A new enumeration replaces the old one.
        set.refresh(OwnAddresses {
            local: [ip("192.0.2.3")].into(),
            nonlocal_bind: (true, true),
            ..OwnAddresses::default()
        });
        assert_eq!(set.check(ip("192.0.2.3")), Some(Protection::OwnAddress));
        assert_eq!(set.check(ip("192.0.2.2")), None);
    }

    #[test]
    fn this_machines_addresses_are_found_and_protected() {
        let own = OwnAddresses::enumerate();
        // Every machine this runs on has IPv4 loopback in its local table.
        assert!(own.local.contains(&ip("127.0.0.1")), "{own:?}");
        let set = Protected::new(Vec::new(), Vec::new(), own.clone());
        for addr in &own.local {
            assert!(set.check(*addr).is_some(), "{addr} is the node's");
        }
        // Not enumerated but bindable: found by the bind check (127.0.0.2
        // is loopback by class anyway, so use the enumeration's own).
        let probe_only = OwnAddresses {
            nonlocal_bind: own.nonlocal_bind,
            ..OwnAddresses::default()
        };
        if let Some(addr) = own
            .local
            .iter()
            .find(|a| class(**a).is_none() && a.is_ipv4())
            && !own.nonlocal_bind.0
        {
            assert_eq!(
                probe_only.protection(*addr),
                Some(Protection::OwnAddress),
                "{addr}"
            );
        }
        assert_eq!(probe_only.protection(ip("203.0.113.77")), None);
    }

    #[test]
    fn proc_files_parse() {
        let if_inet6 = "\
fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
garbage
";
        assert_eq!(
            parse_if_inet6(if_inet6),
            [ip("fd00::2"), ip("fe80::fc:ff:fe00:1"), ip("::1")]
        );
        let fib_trie = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     |-- 198.51.100.9
        /32 host LOCAL
";
        let (local, broadcast) = parse_fib_trie(fib_trie.as_bytes());
        let mut local: Vec<_> = local.into_iter().collect();
        local.sort();
        assert_eq!(
            local,
            ["127.0.0.1", "192.0.2.2", "198.51.100.9"].map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
        let mut broadcast: Vec<_> = broadcast.into_iter().collect();
        broadcast.sort();
        assert_eq!(
            broadcast,
            ["127.255.255.255", "192.0.2.255"].map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
    }
}
