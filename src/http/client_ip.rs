//! Which address a request really comes from: the TCP peer, or, behind trusted proxies, the
//! first untrusted hop their `Forwarded` / `X-Forwarded-For` headers name.
//!
//! Only proxies the operator lists are believed, and the hop chain is read from the right, so a
//! client can prepend whatever it likes without changing the answer.

use axum::http::{header, HeaderMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The most forwarding-chain elements looked at: a chain longer than any real proxy path
/// is an attack on our CPU time, not a topology.
const MAX_HOPS: usize = 64;

/// The de facto header, for proxies that do not speak RFC 7239.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// An IPv4 or IPv6 network in CIDR notation ("10.0.0.0/8", "2001:db8::/32"; a bare address is a
/// host route /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string is not a network in CIDR notation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error(
        "`{input}` is not an IPv4 or IPv6 address (expected e.g. `10.0.0.0/8` or `2001:db8::/32`)"
    )]
    Address { input: String },
    #[error("the prefix length in `{input}` is not a number from 0 to 128")]
    Prefix { input: String },
    #[error(
        "the prefix /{prefix} in `{input}` is longer than the {max} bits of an {family} address"
    )]
    PrefixTooLong {
        input: String,
        prefix: u32,
        max: u8,
        family: &'static str,
    },
    #[error("`{input}` has host bits set after the /{prefix} prefix; did you mean `{network}`?")]
    HostBitsSet {
        input: String,
        prefix: u8,
        network: String,
    },
}

impl Cidr {
    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the
    /// IPv4 address it maps, so dual-stack listeners and IPv4 lists agree.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => masked_v4(ip, self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked_v6(ip, self.prefix) == u128::from(net),
            // An IPv6 network can cover IPv4 addresses through their mapped form
            // (`::ffff:10.0.0.0/104`, `::ffff:0:0/96`, `::/0`).
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                masked_v6(ip.to_ipv6_mapped(), self.prefix) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn masked_v4(ip: Ipv4Addr, prefix: u8) -> u32 {
    // A shift by the full width is not defined for integers; /0 masks everything away.
    u32::from(ip) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn masked_v6(ip: Ipv6Addr, prefix: u8) -> u128 {
    u128::from(ip) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let network = IpAddr::from_str(addr).map_err(|_| CidrError::Address {
            input: input.to_string(),
        })?;
        let (max, family) = match network {
            IpAddr::V4(_) => (32u8, "IPv4"),
            IpAddr::V6(_) => (128u8, "IPv6"),
        };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                // `u32::from_str` would also take "+8"; a prefix is plain digits.
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::Prefix {
                        input: input.to_string(),
                    });
                }
                let n: u32 = p.parse().map_err(|_| CidrError::Prefix {
                    input: input.to_string(),
                })?;
                match u8::try_from(n) {
                    Ok(n) if n <= max => n,
                    _ => {
                        return Err(CidrError::PrefixTooLong {
                            input: input.to_string(),
                            prefix: n,
                            max,
                            family,
                        })
                    }
                }
            }
        };
        let masked = match network {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(masked_v4(ip, prefix))),
            IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(masked_v6(ip, prefix))),
        };
        // "10.0.0.1/8" is more often a typo for a host than a wish for the network; say so
        // rather than silently trusting sixteen million addresses.
        if masked != network {
            return Err(CidrError::HostBitsSet {
                input: input.to_string(),
                prefix,
                network: format!("{masked}/{prefix}"),
            });
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The client address of a request: the TCP peer, unless the peer is a trusted proxy, in which
/// case the proxies' forwarding headers are believed.
///
/// The hop chain comes from `Forwarded` (RFC 7239) when the request has one, else from
/// `X-Forwarded-For`. It is walked from the nearest proxy leftwards, skipping trusted proxies; the
/// first untrusted address is the client. An element that is not an address (`unknown`, an
/// obfuscated `_name`, garbage) ends the walk at the last trusted hop, since nothing left of it
/// can be vouched for. When every hop is trusted, the leftmost one is the client. At most
/// `MAX_HOPS` elements are examined.
///
/// The trusted proxies must overwrite or append to the header this reads: a proxy that passes a
/// client's own `Forwarded` through while adding only `X-Forwarded-For` lets that client choose
/// its address.
///
/// IPv4-mapped IPv6 addresses are returned as the IPv4 address they map.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    // Headers from a peer we don't trust are the client's own words about itself.
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = header_lines(headers, header::FORWARDED.as_str());
    // An empty `Forwarded` says nothing and should not hide an `X-Forwarded-For`.
    let (lines, parse): (_, fn(&str) -> Option<IpAddr>) = if forwarded
        .iter()
        .any(|l| l.split(',').any(|e| !e.trim().is_empty()))
    {
        (forwarded, forwarded_for)
    } else {
        (header_lines(headers, X_FORWARDED_FOR), node_address)
    };
    // Commas are split on without regard to quotes: no address, port, protocol or host
    // contains one (RFC 7239 §6), and a client's unbalanced quote must not swallow the
    // elements the proxies append after it.
    let from_right = lines.iter().rev().flat_map(|line| line.rsplit(','));
    let mut last_trusted = peer;
    for element in from_right.take(MAX_HOPS) {
        // Empty list elements are legal filler (RFC 9110 §5.6.1) and carry no hop.
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        match parse(element).map(|ip| ip.to_canonical()) {
            Some(ip) if is_trusted(ip) => last_trusted = ip,
            Some(ip) => return ip,
            None => return last_trusted,
        }
    }
    last_trusted
}

/// The lines of a header that are valid UTF-8, in the order received; the others are treated as
/// absent.
fn header_lines<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .collect()
}

/// The address in one `Forwarded` element's `for=` parameter. An element without exactly one
/// `for=`, or whose node is not an address, yields `None`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    // As with commas, semicolons never occur inside a legitimate value.
    for pair in element.split(';').filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair.split_once('=')?;
        if key.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None; // a parameter may appear once per element (RFC 7239 §4)
            }
            found = Some(value.trim());
        }
    }
    let value = found?;
    let value = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    node_address(value)
}

/// The address of a node as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`. Obfuscated identifiers are not addresses.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip = Ipv6Addr::from_str(ip).ok()?;
        return match after {
            "" => Some(IpAddr::V6(ip)),
            _ => after
                .strip_prefix(':')
                .filter(|p| is_port(p))
                .map(|_| IpAddr::V6(ip)),
        };
    }
    if let Ok(ip) = IpAddr::from_str(node) {
        return Some(ip);
    }
    // With a port, only IPv4 is unambiguous; IPv6 with a port must be bracketed.
    let (host, port) = node.split_once(':')?;
    let ip = Ipv4Addr::from_str(host).ok()?;
    is_port(port).then_some(IpAddr::V4(ip))
}

/// A port number or an obfuscated port (RFC 7239 §6.3: `_` then letters, digits, `.`, `_`, `-`).
fn is_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(obf) => {
            !obf.is_empty()
                && obf
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
        None => port.parse::<u16>().is_ok() && port.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests;
