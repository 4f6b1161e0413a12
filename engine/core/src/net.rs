//! Network locations: CIDR ranges compiled into a longest-prefix-match table.
//!
//! Prefixes are either nested or disjoint, so a set of them can be flattened into sorted,
//! disjoint intervals where every address maps to its longest matching prefix. A lookup is
//! then one binary search, with no allocation and no pointer chasing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 prefix such as `10.20.0.0/16` or `2001:db8::/32`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a string is not a CIDR prefix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    Address(String),
    /// The length is not a number in range for the address family.
    #[error("prefix length in `{0}` must be 0-32 for IPv4 or 0-128 for IPv6")]
    Length(String),
    /// Bits below the prefix length are set, which usually means a typo.
    #[error("`{input}` has host bits set; did you mean `{suggestion}`?")]
    HostBits {
        /// What was written.
        input: String,
        /// The network address of that prefix.
        suggestion: String,
    },
}

impl Cidr {
    /// A prefix, or `None` if `len` is too long or `addr` has bits set past it.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let c = Self {
            addr: canonical(addr),
            len,
        };
        let max = if c.addr.is_ipv4() { 32 } else { 128 };
        (len <= max && c.network() == c.addr).then_some(c)
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.len))),
        }
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is the zero-length prefix.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask32(self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask128(self.len) == u128::from(n),
            _ => false,
        }
    }

    fn interval(&self) -> (Family, u128, u128) {
        match self.addr {
            IpAddr::V4(a) => {
                let start = u128::from(u32::from(a));
                let host = (1u128 << (32 - u32::from(self.len))) - 1;
                (Family::V4, start, start | host)
            }
            IpAddr::V6(a) => {
                let start = u128::from(a);
                let host = u128::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                (Family::V6, start, start | host)
            }
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are their IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `addr/len`, or a bare address meaning a single host.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr = canonical(IpAddr::from_str(a).map_err(|_| CidrError::Address(a.to_owned()))?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => l
                .parse::<u8>()
                .map_err(|_| CidrError::Length(s.to_owned()))?,
            Some(_) => return Err(CidrError::Length(s.to_owned())),
        };
        if len > max {
            return Err(CidrError::Length(s.to_owned()));
        }
        let c = Self { addr, len };
        if c.network() != addr {
            return Err(CidrError::HostBits {
                input: s.to_owned(),
                suggestion: format!("{}/{}", c.network(), len),
            });
        }
        Ok(c)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

/// Two locations claim exactly the same prefix, so neither can be the longer match.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("prefix {cidr} is claimed by two locations")]
pub struct Ambiguous {
    /// The prefix named twice.
    pub cidr: Cidr,
}

/// A longest-prefix-match table from addresses to values of type `T`.
#[derive(Clone, Debug)]
pub struct PrefixTable<T> {
    v4: Intervals<T>,
    v6: Intervals<T>,
}

#[derive(Clone, Debug)]
struct Intervals<T> {
    /// Sorted starts; each value holds from its start up to the next start.
    starts: Vec<u128>,
    values: Vec<Option<T>>,
}

impl<T: Copy + PartialEq> Intervals<T> {
    fn build(mut prefixes: Vec<(u128, u128, T, Cidr)>) -> Result<Self, Ambiguous> {
        // Wider prefixes first among equal starts, so nested ones are pushed after them.
        prefixes.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        for pair in prefixes.windows(2) {
            if let [a, b] = pair
                && a.0 == b.0
                && a.1 == b.1
                && a.2 != b.2
            {
                return Err(Ambiguous { cidr: b.3 });
            }
        }
        let mut bounds: Vec<(u128, Option<T>)> = Vec::with_capacity(prefixes.len() * 2);
        let mut open: Vec<(u128, T)> = Vec::new();
        let close =
            |open: &mut Vec<(u128, T)>, bounds: &mut Vec<(u128, Option<T>)>, upto: Option<u128>| {
                while let Some(&(end, _)) = open.last() {
                    if upto.is_some_and(|start| end >= start) {
                        break;
                    }
                    open.pop();
                    if let Some(next) = end.checked_add(1) {
                        bounds.push((next, open.last().map(|&(_, v)| v)));
                    }
                }
            };
        for (start, end, value, _) in prefixes {
            close(&mut open, &mut bounds, Some(start));
            bounds.push((start, Some(value)));
            open.push((end, value));
        }
        close(&mut open, &mut bounds, None);
        // Collapse equal starts (the last pushed is the most specific) and equal neighbours.
        let mut starts: Vec<u128> = Vec::with_capacity(bounds.len());
        let mut values: Vec<Option<T>> = Vec::with_capacity(bounds.len());
        for (start, value) in bounds {
            if starts.last() == Some(&start) {
                values.pop();
                starts.pop();
            }
            if values.last() == Some(&value) {
                continue;
            }
            starts.push(start);
            values.push(value);
        }
        Ok(Self { starts, values })
    }

    fn get(&self, addr: u128) -> Option<T> {
        let i = self.starts.partition_point(|&s| s <= addr);
        i.checked_sub(1)
            .and_then(|i| self.values.get(i).copied().flatten())
    }
}

impl<T: Copy + PartialEq> PrefixTable<T> {
    /// Compiles `(prefix, value)` pairs. The same prefix with two different values is an error.
    pub fn build(entries: impl IntoIterator<Item = (Cidr, T)>) -> Result<Self, Ambiguous> {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (cidr, value) in entries {
            let (family, start, end) = cidr.interval();
            match family {
                Family::V4 => v4.push((start, end, value, cidr)),
                Family::V6 => v6.push((start, end, value, cidr)),
            }
        }
        Ok(Self {
            v4: Intervals::build(v4)?,
            v6: Intervals::build(v6)?,
        })
    }

    /// The value of the longest prefix containing `ip`, if any.
    pub fn get(&self, ip: IpAddr) -> Option<T> {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.get(u128::from(u32::from(a))),
            IpAddr::V6(a) => self.v6.get(u128::from(a)),
        }
    }

    /// The number of disjoint intervals the table holds.
    pub fn intervals(&self) -> usize {
        self.v4.starts.len() + self.v6.starts.len()
    }
}

/// The key that groups addresses for per-source limits: an IPv4 address itself, or an IPv6
/// address's /64 (one customer's whole network on most providers).
pub fn source_key(ip: IpAddr) -> u128 {
    match canonical(ip) {
        IpAddr::V4(a) => u128::from(u32::from(a)) | (1u128 << 96),
        IpAddr::V6(a) => u128::from(a) & mask128(64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_errors() {
        assert_eq!(c("10.0.0.0/8").len(), 8);
        assert_eq!(c("10.1.2.3").len(), 32);
        assert_eq!(c("2001:db8::/32").len(), 32);
        assert_eq!(c("::/0").len(), 0);
        assert_eq!(c("::ffff:10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert!(
            matches!("10.0.0.1/8".parse::<Cidr>(), Err(CidrError::HostBits { suggestion, .. }) if suggestion == "10.0.0.0/8")
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Length(_))
        ));
        assert!(matches!(
            "10.0.0.0/+8".parse::<Cidr>(),
            Err(CidrError::Length(_))
        ));
        assert!(matches!(
            "10.0.0.0/".parse::<Cidr>(),
            Err(CidrError::Length(_))
        ));
        assert!(matches!(
            "10.0.0.0/٨".parse::<Cidr>(),
            Err(CidrError::Length(_))
        ));
        assert!(matches!(
            "ten/8".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Length(_))
        ));
    }

    #[test]
    fn longest_prefix_wins() {
        let t = PrefixTable::build([
            (c("10.0.0.0/8"), 1),
            (c("10.20.0.0/16"), 2),
            (c("10.20.30.0/24"), 3),
            (c("10.20.30.40"), 4),
            (c("2001:db8::/32"), 5),
            (c("2001:db8:20::/48"), 6),
        ])
        .unwrap();
        assert_eq!(t.get(ip("9.255.255.255")), None);
        assert_eq!(t.get(ip("10.0.0.0")), Some(1));
        assert_eq!(t.get(ip("10.19.255.255")), Some(1));
        assert_eq!(t.get(ip("10.20.0.0")), Some(2));
        assert_eq!(t.get(ip("10.20.30.39")), Some(3));
        assert_eq!(t.get(ip("10.20.30.40")), Some(4));
        assert_eq!(t.get(ip("10.20.30.41")), Some(3));
        assert_eq!(t.get(ip("10.20.31.0")), Some(2));
        assert_eq!(t.get(ip("10.21.0.0")), Some(1));
        assert_eq!(t.get(ip("11.0.0.0")), None);
        assert_eq!(t.get(ip("::ffff:10.20.30.40")), Some(4));
        assert_eq!(t.get(ip("2001:db8:20::1")), Some(6));
        assert_eq!(t.get(ip("2001:db8:21::1")), Some(5));
        assert_eq!(t.get(ip("2001:db9::")), None);
    }

    #[test]
    fn whole_space_and_edges() {
        let t = PrefixTable::build([
            (c("0.0.0.0/0"), 1),
            (c("255.255.255.255/32"), 2),
            (c("::/0"), 3),
        ])
        .unwrap();
        assert_eq!(t.get(ip("0.0.0.0")), Some(1));
        assert_eq!(t.get(ip("255.255.255.254")), Some(1));
        assert_eq!(t.get(ip("255.255.255.255")), Some(2));
        assert_eq!(
            t.get(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(3)
        );
    }

    #[test]
    fn same_prefix_twice() {
        assert!(PrefixTable::build([(c("10.0.0.0/8"), 1), (c("10.0.0.0/8"), 1)]).is_ok());
        let e = PrefixTable::build([(c("10.0.0.0/8"), 1), (c("10.0.0.0/8"), 2)]).unwrap_err();
        assert_eq!(e.cidr, c("10.0.0.0/8"));
    }

    #[test]
    fn source_keys_group_ipv6_by_64() {
        assert_eq!(
            source_key(ip("2001:db8:1:2:aaaa::1")),
            source_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:2::1")),
            source_key(ip("2001:db8:1:3::1"))
        );
        assert_ne!(source_key(ip("10.0.0.1")), source_key(ip("10.0.0.2")));
        assert_eq!(
            source_key(ip("10.0.0.1")),
            source_key(ip("::ffff:10.0.0.1"))
        );
        // An IPv4 key never equals an IPv6 /64 key.
        assert_ne!(source_key(ip("0.0.0.0")), source_key(ip("::")));
    }

    proptest! {
        /// The table agrees with a naive scan: the longest containing prefix wins.
        #[test]
        fn matches_naive_longest_prefix(
            prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..64),
        ) {
            let mut entries: Vec<(Cidr, u16)> = Vec::new();
            for (i, (a, len)) in prefixes.iter().enumerate() {
                let net = a & mask32(*len);
                let cidr = Cidr::new(IpAddr::V4(Ipv4Addr::from(net)), *len).unwrap();
                if entries.iter().all(|(c, _)| *c != cidr) {
                    entries.push((cidr, i as u16));
                }
            }
            let table = PrefixTable::build(entries.clone()).unwrap();
            for p in probes.iter().copied().chain(prefixes.iter().map(|(a, _)| *a)) {
                let addr = IpAddr::V4(Ipv4Addr::from(p));
                let naive = entries.iter().filter(|(c, _)| c.contains(addr)).max_by_key(|(c, _)| c.len()).map(|(_, v)| *v);
                prop_assert_eq!(table.get(addr), naive, "addr {}", addr);
            }
        }
    }
}
