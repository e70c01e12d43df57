//! Tests for CIDR parsing and the forwarding-header walk.

use super::*;
use axum::http::HeaderValue;

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|s| cidr(s)).collect()
}

/// Headers with the given (name, value) lines, in order.
fn headers(lines: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in lines {
        h.append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

/// The proxies of most tests: a private network and a documentation IPv6 range.
fn proxies() -> Vec<Cidr> {
    nets(&["10.0.0.0/8", "2001:db8:aaaa::/48"])
}

const PROXY: &str = "10.0.0.1";

fn resolve(lines: &[(&str, &str)]) -> IpAddr {
    client_ip(ip(PROXY), &headers(lines), &proxies())
}

// ---- CIDR parsing ----

#[test]
fn parses_ipv4_and_ipv6_networks() {
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(cidr("192.168.1.0/24").to_string(), "192.168.1.0/24");
    assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
    assert_eq!(cidr("::/0").to_string(), "::/0");
    assert_eq!(cidr("2001:DB8::/32"), cidr("2001:db8::/32"));
}

#[test]
fn bare_address_is_a_host_route() {
    assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
    assert_eq!(cidr("2001:db8::7").to_string(), "2001:db8::7/128");
    assert_eq!(cidr("192.0.2.7"), cidr("192.0.2.7/32"));
    assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
    assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
}

#[test]
fn refuses_bad_addresses() {
    for bad in [
        "",
        "/8",
        "10.0.0/8",
        "10.0.0.256/32",
        "example.com/8",
        "10.0.0.0 /8",
        "2001:db8:::/32",
    ] {
        assert!(
            matches!(bad.parse::<Cidr>(), Err(CidrError::Address { .. })),
            "{bad:?}: {:?}",
            bad.parse::<Cidr>()
        );
    }
}

#[test]
fn refuses_bad_prefixes() {
    for bad in [
        "10.0.0.0/",
        "10.0.0.0/x",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/ 8",
        "10.0.0.0/8/8",
        "10.0.0.0/0008",
    ] {
        assert!(
            matches!(bad.parse::<Cidr>(), Err(CidrError::Prefix { .. })),
            "{bad:?}: {:?}",
            bad.parse::<Cidr>()
        );
    }
}

#[test]
fn refuses_prefix_longer_than_the_family() {
    assert_eq!(
        "10.0.0.0/33".parse::<Cidr>(),
        Err(CidrError::PrefixTooLong {
            input: "10.0.0.0/33".into(),
            prefix: 33,
            max: 32,
            family: "IPv4",
        })
    );
    assert!(matches!(
        "2001:db8::/129".parse::<Cidr>(),
        Err(CidrError::PrefixTooLong {
            prefix: 129,
            max: 128,
            ..
        })
    ));
    assert!(matches!(
        "10.0.0.0/999".parse::<Cidr>(),
        Err(CidrError::PrefixTooLong { prefix: 999, .. })
    ));
    assert!("10.0.0.0/32".parse::<Cidr>().is_ok());
    assert!("2001:db8::/128".parse::<Cidr>().is_ok());
}

#[test]
fn refuses_host_bits_and_suggests_the_network() {
    let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
    assert_eq!(
        err,
        CidrError::HostBitsSet {
            input: "10.0.0.1/8".into(),
            prefix: 8,
            network: "10.0.0.0/8".into(),
        }
    );
    let message = err.to_string();
    assert!(message.contains("10.0.0.1/8"), "{message}");
    assert!(message.contains("10.0.0.0/8"), "{message}");
    assert!(matches!(
        "2001:db8::1/32".parse::<Cidr>(),
        Err(CidrError::HostBitsSet { network, .. }) if network == "2001:db8::/32"
    ));
    assert!(matches!(
        "0.0.0.1/0".parse::<Cidr>(),
        Err(CidrError::HostBitsSet { network, .. }) if network == "0.0.0.0/0"
    ));
}

#[test]
fn error_messages_name_the_input() {
    for bad in ["nonsense/8", "10.0.0.0/x", "10.0.0.0/40"] {
        let message = bad.parse::<Cidr>().unwrap_err().to_string();
        assert!(message.contains(bad), "{message}");
    }
}

// ---- contains ----

#[test]
fn contains_checks_the_prefix_bits() {
    let net = cidr("192.168.4.0/22");
    assert!(net.contains(ip("192.168.4.0")));
    assert!(net.contains(ip("192.168.7.255")));
    assert!(!net.contains(ip("192.168.8.0")));
    assert!(!net.contains(ip("192.168.3.255")));
    assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));

    let net6 = cidr("2001:db8:aaaa::/48");
    assert!(net6.contains(ip("2001:db8:aaaa:ffff::1")));
    assert!(!net6.contains(ip("2001:db8:aaab::1")));
    assert!(!net6.contains(ip("10.0.0.1")));
}

#[test]
fn ipv4_mapped_addresses_match_ipv4_networks() {
    let net = cidr("10.0.0.0/8");
    assert!(net.contains(ip("::ffff:10.1.2.3")));
    assert!(!net.contains(ip("::ffff:11.1.2.3")));
    // IPv4-compatible (deprecated) addresses are not mapped ones.
    assert!(!net.contains(ip("::10.1.2.3")));
}

#[test]
fn ipv4_addresses_match_ipv4_mapped_networks() {
    let net = cidr("::ffff:10.0.0.0/104");
    assert!(net.contains(ip("10.1.2.3")));
    assert!(net.contains(ip("::ffff:10.1.2.3")));
    assert!(!net.contains(ip("11.1.2.3")));
    assert!(cidr("::ffff:0:0/96").contains(ip("198.51.100.1")));
    assert!(cidr("::/0").contains(ip("198.51.100.1")));
    assert!(!cidr("2001:db8::/32").contains(ip("198.51.100.1")));
}

// ---- client_ip: untrusted peers ----

#[test]
fn untrusted_peer_ignores_every_header() {
    let h = headers(&[
        ("x-forwarded-for", "203.0.113.5"),
        ("forwarded", "for=198.51.100.9"),
    ]);
    assert_eq!(
        client_ip(ip("192.0.2.44"), &h, &proxies()),
        ip("192.0.2.44")
    );
    assert_eq!(client_ip(ip("192.0.2.44"), &h, &[]), ip("192.0.2.44"));
}

#[test]
fn trusted_peer_without_headers_is_the_client() {
    assert_eq!(resolve(&[]), ip(PROXY));
}

#[test]
fn mapped_peer_is_matched_and_returned_as_ipv4() {
    let h = headers(&[]);
    assert_eq!(
        client_ip(ip("::ffff:192.0.2.44"), &h, &proxies()),
        ip("192.0.2.44")
    );
    let h = headers(&[("x-forwarded-for", "203.0.113.5")]);
    assert_eq!(
        client_ip(ip("::ffff:10.0.0.1"), &h, &proxies()),
        ip("203.0.113.5")
    );
}

// ---- client_ip: X-Forwarded-For ----

#[test]
fn xff_single_hop() {
    assert_eq!(
        resolve(&[("x-forwarded-for", "203.0.113.5")]),
        ip("203.0.113.5")
    );
}

#[test]
fn xff_walks_right_to_left_past_trusted_hops() {
    assert_eq!(
        resolve(&[(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.5, 10.9.9.9, 2001:db8:aaaa::7,10.1.1.1"
        )]),
        ip("203.0.113.5")
    );
}

#[test]
fn xff_spoofed_left_part_does_not_win() {
    // A client wrote "1.2.3.4" itself; the proxy appended the real address.
    assert_eq!(
        resolve(&[("x-forwarded-for", "1.2.3.4, 203.0.113.5")]),
        ip("203.0.113.5")
    );
}

#[test]
fn xff_all_trusted_gives_the_leftmost() {
    assert_eq!(
        resolve(&[("x-forwarded-for", "10.3.3.3, 10.2.2.2, 2001:db8:aaaa::1")]),
        ip("10.3.3.3")
    );
}

#[test]
fn xff_garbage_stops_at_the_last_trusted_hop() {
    assert_eq!(
        resolve(&[("x-forwarded-for", "203.0.113.5, garbage, 10.2.2.2")]),
        ip("10.2.2.2")
    );
    // Garbage next to the peer: nothing beyond the peer can be vouched for.
    assert_eq!(
        resolve(&[("x-forwarded-for", "203.0.113.5, unknown")]),
        ip(PROXY)
    );
    assert_eq!(
        resolve(&[("x-forwarded-for", "203.0.113.5, 10.0.0.7:x")]),
        ip(PROXY)
    );
}

#[test]
fn xff_garbage_left_of_the_client_does_not_matter() {
    assert_eq!(
        resolve(&[("x-forwarded-for", "<script>, 203.0.113.5, 10.2.2.2")]),
        ip("203.0.113.5")
    );
}

#[test]
fn xff_several_lines_form_one_list() {
    assert_eq!(
        resolve(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.5"),
            ("x-forwarded-for", "10.4.4.4"),
            ("x-forwarded-for", "10.5.5.5"),
        ]),
        ip("203.0.113.5")
    );
}

#[test]
fn xff_tolerates_ports_brackets_spaces_and_empty_elements() {
    assert_eq!(
        resolve(&[("x-forwarded-for", "203.0.113.5:51234 ,10.1.1.1:80")]),
        ip("203.0.113.5")
    );
    assert_eq!(
        resolve(&[("x-forwarded-for", "[2001:db8::5]:443, [2001:db8:aaaa::9]")]),
        ip("2001:db8::5")
    );
    assert_eq!(
        resolve(&[("x-forwarded-for", "\t2001:db8::5 ,  , 10.1.1.1,")]),
        ip("2001:db8::5")
    );
}

#[test]
fn xff_mapped_client_is_returned_as_ipv4() {
    assert_eq!(
        resolve(&[("x-forwarded-for", "::ffff:203.0.113.5, ::ffff:10.1.1.1")]),
        ip("203.0.113.5")
    );
}

#[test]
fn empty_xff_leaves_the_peer() {
    assert_eq!(resolve(&[("x-forwarded-for", "")]), ip(PROXY));
    assert_eq!(resolve(&[("x-forwarded-for", " , ")]), ip(PROXY));
}

// ---- client_ip: Forwarded ----

#[test]
fn forwarded_simple_and_with_other_parameters() {
    assert_eq!(
        resolve(&[("forwarded", "for=203.0.113.5")]),
        ip("203.0.113.5")
    );
    assert_eq!(
        resolve(&[(
            "forwarded",
            "proto=https;For=203.0.113.5;by=10.0.0.1;host=scim.example.com"
        )]),
        ip("203.0.113.5")
    );
    assert_eq!(
        resolve(&[("forwarded", "FOR = 203.0.113.5 ; proto=http;")]),
        ip("203.0.113.5")
    );
}

#[test]
fn forwarded_quoted_bracketed_and_with_ports() {
    assert_eq!(
        resolve(&[("forwarded", r#"for="[2001:db8::1]:4711""#)]),
        ip("2001:db8::1")
    );
    assert_eq!(
        resolve(&[("forwarded", r#"for="[2001:db8::1]""#)]),
        ip("2001:db8::1")
    );
    assert_eq!(
        resolve(&[("forwarded", r#"for="192.0.2.1:8080""#)]),
        ip("192.0.2.1")
    );
    assert_eq!(
        resolve(&[("forwarded", r#"for="192.0.2.1:_abc""#)]),
        ip("192.0.2.1")
    );
    assert_eq!(resolve(&[("forwarded", "for=192.0.2.1")]), ip("192.0.2.1"));
}

#[test]
fn forwarded_walks_right_to_left_over_elements_and_lines() {
    let lines = [
        ("forwarded", "for=198.51.100.1, for=203.0.113.5"),
        (
            "forwarded",
            r#"for="[2001:db8:aaaa::3]:8443";proto=https, for=10.2.2.2"#,
        ),
        ("forwarded", "for=10.3.3.3;by=10.0.0.1"),
    ];
    assert_eq!(resolve(&lines), ip("203.0.113.5"));
}

#[test]
fn forwarded_all_trusted_gives_the_leftmost() {
    assert_eq!(
        resolve(&[("forwarded", "for=10.9.9.9, for=10.8.8.8")]),
        ip("10.9.9.9")
    );
}

#[test]
fn forwarded_obfuscated_and_unknown_nodes_stop_the_walk() {
    assert_eq!(
        resolve(&[("forwarded", "for=203.0.113.5, for=_hidden, for=10.2.2.2")]),
        ip("10.2.2.2")
    );
    assert_eq!(
        resolve(&[("forwarded", r#"for=203.0.113.5, for="_hidden""#)]),
        ip(PROXY)
    );
    assert_eq!(
        resolve(&[("forwarded", "for=203.0.113.5, for=unknown")]),
        ip(PROXY)
    );
}

#[test]
fn forwarded_malformed_elements_stop_the_walk() {
    for bad in [
        "proto=https",                  // no for=
        "for=10.2.2.2;for=10.3.3.3",    // for= twice
        r#"for="10.2.2.2"#,             // unbalanced quote
        "for=[2001:db8:aaaa::1",        // unclosed bracket
        "for=[2001:db8:aaaa::1]:http",  // port not a number
        "for=[10.2.2.2]",               // IPv4 in brackets
        "for=2001:db8:aaaa::1:70000:1", // not an address
        "junk",                         // not a pair
    ] {
        let value = format!("for=203.0.113.5, {bad}");
        assert_eq!(resolve(&[("forwarded", &value)]), ip(PROXY), "{bad}");
    }
}

#[test]
fn forwarded_unbalanced_quote_cannot_swallow_appended_hops() {
    // The client opened a quote; the proxy appended the real address on the same line.
    assert_eq!(
        resolve(&[("forwarded", r#"for="1.2.3.4, for=203.0.113.5"#)]),
        ip("203.0.113.5")
    );
}

#[test]
fn forwarded_is_preferred_over_xff() {
    assert_eq!(
        resolve(&[
            ("x-forwarded-for", "198.51.100.77"),
            ("forwarded", "for=203.0.113.5"),
        ]),
        ip("203.0.113.5")
    );
}

#[test]
fn empty_forwarded_falls_back_to_xff() {
    assert_eq!(
        resolve(&[("forwarded", " , "), ("x-forwarded-for", "203.0.113.5")]),
        ip("203.0.113.5")
    );
}

#[test]
fn invalid_utf8_lines_are_absent() {
    let mut h = HeaderMap::new();
    h.append(
        "forwarded",
        HeaderValue::from_bytes(b"for=\xff\xfe").unwrap(),
    );
    h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.5"));
    assert_eq!(client_ip(ip(PROXY), &h, &proxies()), ip("203.0.113.5"));

    let mut h = HeaderMap::new();
    h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.5"));
    h.append(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"\xc3\x28").unwrap(),
    );
    assert_eq!(client_ip(ip(PROXY), &h, &proxies()), ip("203.0.113.5"));
}

// ---- client_ip: bounded work ----

/// `n` trusted hops, preceded by an untrusted client.
fn long_chain(n: usize) -> String {
    let mut hops = vec!["203.0.113.5".to_string()];
    hops.extend((0..n).map(|i| format!("10.0.{}.{}", i / 256, i % 256)));
    hops.join(", ")
}

#[test]
fn walk_reaches_a_client_within_the_bound() {
    // 63 trusted hops and the client: 64 elements, all looked at.
    assert_eq!(
        resolve(&[("x-forwarded-for", &long_chain(MAX_HOPS - 1))]),
        ip("203.0.113.5")
    );
}

#[test]
fn walk_stops_after_the_bound() {
    // 64 trusted hops hide the client: the leftmost hop looked at is the answer.
    assert_eq!(
        resolve(&[("x-forwarded-for", &long_chain(MAX_HOPS))]),
        ip("10.0.0.0")
    );
    let forwarded: Vec<String> = (0..200).map(|i| format!("for=10.1.0.{i}")).collect();
    assert_eq!(
        resolve(&[("forwarded", &forwarded.join(","))]),
        ip(&format!("10.1.0.{}", 200 - MAX_HOPS))
    );
}
