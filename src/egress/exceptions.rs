//! The operator's lists, parsed: internal hosts, host:port pairs and networks ferry
//! may reach anyway (`FERRY_ALLOWED_PRIVATE_HOSTS`), and host patterns that name
//! allowed sources and trusted token realms.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use ipnet::IpNet;

/// One `FERRY_ALLOWED_PRIVATE_HOSTS` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exception {
    /// A network (`10.1.0.0/16`) or one address (`127.0.0.1`), on any port, whether
    /// written as a literal or reached through a name.
    Net(IpNet),
    /// One address literal on one port (`127.0.0.1:5000`, `[::1]:5000`).
    Address(SocketAddr),
    /// A host name, on any port or on one (`registry.internal`, `registry.internal:5000`),
    /// whatever internal address it resolves to.
    Name { name: String, port: Option<u16> },
}

impl Exception {
    /// Whether this entry lets `name` connect to `ip`, one of its addresses.
    pub(super) fn allows_resolved(&self, name: &str, ip: IpAddr) -> bool {
        match self {
            Self::Net(net) => net.contains(&ip),
            Self::Address(_) => false,
            Self::Name { name: listed, .. } => listed.eq_ignore_ascii_case(name),
        }
    }

    /// Whether this entry allows a URL whose host is the literal `ip`.
    pub(super) fn allows_literal(&self, ip: IpAddr, port: Option<u16>) -> bool {
        match self {
            Self::Net(net) => net.contains(&ip),
            Self::Address(address) => {
                address.ip().to_canonical() == ip && Some(address.port()) == port
            }
            Self::Name { .. } => false,
        }
    }

    /// For an entry naming `name`: the port it is limited to, if any.
    pub(super) fn name_port(&self, name: &str) -> Option<Option<u16>> {
        match self {
            Self::Name { name: listed, port } if listed.eq_ignore_ascii_case(name) => Some(*port),
            _ => None,
        }
    }
}

impl FromStr for Exception {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.contains('/') {
            return text
                .parse::<IpNet>()
                .map(|net| Self::Net(net.trunc()))
                .map_err(|_| format!("`{text}` is not a CIDR network such as 10.0.0.0/8"));
        }
        if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(Self::Net(IpNet::from(ip.to_canonical())));
        }
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(Self::Address(address));
        }
        let (name, port) = split_port(text)?;
        Ok(Self::Name { name, port })
    }
}

/// A host in an allow-list: `registry.example.com`, `registry.example.com:5000`,
/// or `*.example.com` for every host below a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    /// Whether `authority` (`host[:port]`) is covered by this pattern.
    pub fn matches_authority(&self, authority: &str) -> bool {
        let Ok((host, port)) = split_port(authority) else {
            return false;
        };
        let host_matches = if self.wildcard {
            host.ends_with(&format!(".{}", self.host))
        } else {
            host == self.host
        };
        host_matches && (self.port.is_none() || self.port == port)
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (host, port) = split_port(rest)?;
        Ok(Self {
            host,
            wildcard,
            port,
        })
    }
}

/// Splits `host[:port]` (IPv6 in brackets), lowercasing the host and dropping a
/// trailing dot.
fn split_port(text: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("`{text}` is not a host, host:port or network");
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            (host, Some(port.parse::<u16>().map_err(|_| bad())?))
        }
        _ => (text, None),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if !valid {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_parse_networks_addresses_and_names() {
        let net = |t: &str| Exception::Net(t.parse().unwrap());
        assert_eq!("10.0.0.0/8".parse(), Ok(net("10.0.0.0/8")));
        assert_eq!("10.1.2.3/8".parse(), Ok(net("10.0.0.0/8")));
        assert_eq!("127.0.0.1".parse(), Ok(net("127.0.0.1/32")));
        assert_eq!("::1".parse(), Ok(net("::1/128")));
        assert_eq!(
            "127.0.0.1:5000".parse(),
            Ok(Exception::Address("127.0.0.1:5000".parse().unwrap()))
        );
        assert_eq!(
            "[::1]:5000".parse(),
            Ok(Exception::Address("[::1]:5000".parse().unwrap()))
        );
        assert_eq!(
            "Registry.Internal.:5000".parse(),
            Ok(Exception::Name {
                name: "registry.internal".into(),
                port: Some(5000)
            })
        );
        for bad in ["10.0.0.0/33", "a b", "host:port", "", "x/y"] {
            assert!(bad.parse::<Exception>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_patterns_match_hosts_ports_and_subdomains() {
        let pattern = |t: &str| t.parse::<HostPattern>().unwrap();
        assert!(pattern("docker.io").matches_authority("Docker.IO"));
        assert!(pattern("docker.io").matches_authority("docker.io:443"));
        assert!(!pattern("docker.io").matches_authority("evil-docker.io"));
        assert!(pattern("reg.example:5000").matches_authority("reg.example:5000"));
        assert!(!pattern("reg.example:5000").matches_authority("reg.example"));
        assert!(pattern("*.example.com").matches_authority("a.b.example.com"));
        assert!(!pattern("*.example.com").matches_authority("example.com"));
        assert!(!pattern("*.example.com").matches_authority("badexample.com"));
    }
}
