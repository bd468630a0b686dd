//! Who the client is behind a reverse proxy: `PIGGYBACK_TRUSTED_PROXIES` (values in,
//! values out; the gateway applies the verdict to the request).
//!
//! Behind a proxy every request comes from the proxy's `REMOTE_ADDR`, and a TLS proxy
//! talks plain HTTP to the server. The proxy says who the client was and which scheme it
//! used in `Forwarded` (RFC 7239) or `X-Forwarded-For` and `X-Forwarded-Proto`; anybody
//! else can send those headers too, so they are believed only when `REMOTE_ADDR` is a
//! trusted proxy, and then only as far back as the chain of trusted proxies goes: the
//! client is the right-most address that is not a trusted proxy (each proxy appends the
//! address it saw, so everything left of that was written by the client itself).

use std::net::IpAddr;

/// One entry of `PIGGYBACK_TRUSTED_PROXIES`: an address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `192.0.2.7`, `10.0.0.0/8`, `::1`, `2001:db8::/32`.
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| CidrError::NotAnAddress(s.to_owned()))?;
        let network = canonical(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(CidrError::Prefix { entry: s.to_owned(), max }),
            },
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let masked = |bits: u128, width: u32| {
            let shift = width - u32::from(self.prefix);
            if shift >= 128 { 0 } else { bits >> shift }
        };
        match (self.network, canonical(addr)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u128::from(u32::from(n)), 32) == masked(u128::from(u32::from(a)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(u128::from(n), 128) == masked(u128::from(a), 128),
            _ => false,
        }
    }
}

/// Why an entry of `PIGGYBACK_TRUSTED_PROXIES` is not an address or a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The entry, which is not an IP address (before any `/`).
    NotAnAddress(String),
    /// The entry, whose prefix length is not 0 to `max` (32 or 128).
    Prefix { entry: String, max: u8 },
}

impl std::fmt::Display for CidrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CidrError::NotAnAddress(entry) => write!(f, "`{entry}` is not an address or a CIDR block"),
            CidrError::Prefix { entry, max } => write!(f, "`{entry}` has a prefix length that is not 0 to {max}"),
        }
    }
}

impl std::error::Error for CidrError {}

/// Parses the setting: entries separated by commas or spaces.
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, CidrError> {
    s.split([',', ' ']).filter(|e| !e.is_empty()).map(Cidr::parse).collect()
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`, as dual-stack servers report
/// it) is the IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

/// The forwarding headers of a request, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardingHeaders {
    pub forwarded: Option<String>,
    pub x_forwarded_for: Option<String>,
    pub x_forwarded_proto: Option<String>,
}

/// The client as far as it can be believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address (`REMOTE_ADDR` unless a trusted proxy forwarded it).
    pub addr: Option<String>,
    /// The scheme the client used was https.
    pub https: bool,
}

/// Resolves the client of a request that came from `remote_addr` over `https`.
pub fn client(remote_addr: Option<&str>, https: bool, headers: &ForwardingHeaders, trusted: &[Cidr]) -> Client {
    let direct = Client { addr: remote_addr.map(str::to_owned), https };
    let is_trusted = |a: IpAddr| trusted.iter().any(|c| c.contains(a));
    let Some(peer) = remote_addr.and_then(parse_addr) else { return direct };
    if !is_trusted(peer) {
        return direct;
    }
    // RFC 7239 wins over the older headers when the proxy sends it.
    let (hops, proto): (Vec<String>, Option<String>) = match &headers.forwarded {
        Some(f) => {
            let elements = forwarded_elements(f);
            let hops = elements.iter().filter_map(|e| e.for_.clone()).collect();
            let proto = elements.last().and_then(|e| e.proto.clone());
            (hops, proto)
        }
        None => {
            let hops = headers
                .x_forwarded_for
                .as_deref()
                .map(|x| x.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect())
                .unwrap_or_default();
            let proto = headers.x_forwarded_proto.as_deref().and_then(|p| p.rsplit(',').next()).map(str::trim);
            (hops, proto.map(str::to_owned))
        }
    };
    // Walk back from the nearest hop while the hops are trusted proxies.
    let mut addr = peer;
    for hop in hops.iter().rev() {
        match parse_addr(hop) {
            Some(a) => {
                addr = a;
                if !is_trusted(a) {
                    break;
                }
            }
            // `unknown` or an obfuscated name: nothing further back can be believed.
            None => break,
        }
    }
    let https = match proto {
        Some(p) => p.eq_ignore_ascii_case("https"),
        None => https,
    };
    Client { addr: Some(canonical(addr).to_string()), https }
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, quoted or not.
fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(canonical(a));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let inside = rest.split(']').next()?;
        return inside.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = s.rsplit_once(':')?;
    if port.bytes().all(|b| b.is_ascii_digit()) {
        return host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4);
    }
    None
}

#[derive(Debug, Default)]
struct Element {
    for_: Option<String>,
    proto: Option<String>,
}

/// The elements of a `Forwarded` header: `for=…;proto=…, for=…`.
fn forwarded_elements(header: &str) -> Vec<Element> {
    header
        .split(',')
        .map(|element| {
            let mut e = Element::default();
            for pair in element.split(';') {
                let Some((k, v)) = pair.split_once('=') else { continue };
                let v = v.trim().trim_matches('"').to_owned();
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => e.for_ = Some(v),
                    "proto" => e.proto = Some(v),
                    _ => {}
                }
            }
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: Option<&str>, proto: Option<&str>, forwarded: Option<&str>) -> ForwardingHeaders {
        ForwardingHeaders {
            forwarded: forwarded.map(str::to_owned),
            x_forwarded_for: xff.map(str::to_owned),
            x_forwarded_proto: proto.map(str::to_owned),
        }
    }

    fn trusted() -> Vec<Cidr> {
        parse_list("127.0.0.1, 10.0.0.0/8 ::1").unwrap()
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.200.3.4".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()), "IPv4-mapped IPv6 is IPv4");
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x", "10.0.0"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(Some("198.51.100.9"), Some("https"), Some("for=198.51.100.9;proto=https"));
        let c = client(Some("203.0.113.5"), false, &h, &trusted());
        assert_eq!(c, Client { addr: Some("203.0.113.5".into()), https: false });
        let c = client(Some("203.0.113.5"), false, &h, &[]);
        assert_eq!(c.addr.as_deref(), Some("203.0.113.5"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_the_scheme() {
        let h = headers(Some("198.51.100.9"), Some("https"), None);
        let c = client(Some("127.0.0.1"), false, &h, &trusted());
        assert_eq!(c, Client { addr: Some("198.51.100.9".into()), https: true });
        let h = headers(Some("198.51.100.9"), Some("http"), None);
        assert!(!client(Some("127.0.0.1"), true, &h, &trusted()).https, "the proxy says the client used http");
        let h = headers(Some("198.51.100.9"), None, None);
        assert!(!client(Some("127.0.0.1"), false, &h, &trusted()).https);
    }

    #[test]
    fn addresses_the_client_wrote_itself_are_not_believed() {
        // The client sent `X-Forwarded-For: 1.2.3.4`; the proxy appended what it saw.
        let h = headers(Some("1.2.3.4, 198.51.100.9"), None, None);
        assert_eq!(client(Some("127.0.0.1"), false, &h, &trusted()).addr.as_deref(), Some("198.51.100.9"));
        // Two trusted proxies in a row.
        let h = headers(Some("1.2.3.4, 198.51.100.9, 10.1.2.3"), None, None);
        assert_eq!(client(Some("127.0.0.1"), false, &h, &trusted()).addr.as_deref(), Some("198.51.100.9"));
        // A spoofed trusted address to the left of the real client does not help.
        let h = headers(Some("10.9.9.9, 198.51.100.9"), None, None);
        assert_eq!(client(Some("127.0.0.1"), false, &h, &trusted()).addr.as_deref(), Some("198.51.100.9"));
        // Garbage where the proxy's entry should be: stop at the proxy.
        let h = headers(Some("198.51.100.9, unknown"), None, None);
        assert_eq!(client(Some("127.0.0.1"), false, &h, &trusted()).addr.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn forwarded_rfc_7239() {
        let h =
            headers(Some("6.6.6.6"), Some("http"), Some(r#"for=1.2.3.4, for="[2001:db8:cafe::17]:4711";proto=https"#));
        let c = client(Some("::1"), false, &h, &trusted());
        assert_eq!(c, Client { addr: Some("2001:db8:cafe::17".into()), https: true });
        let h = headers(None, None, Some("for=192.0.2.60:8080;proto=http;by=203.0.113.43"));
        let c = client(Some("::ffff:127.0.0.1"), true, &h, &trusted());
        assert_eq!(c, Client { addr: Some("192.0.2.60".into()), https: false });
    }
}
