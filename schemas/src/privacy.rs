//! Privacy policy for the IP address SDKs send as the `forwarded_for` attribute.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The attribute the policy applies to (seed's production attribute schema).
pub const IP_ATTRIBUTE: &str = "forwarded_for";

/// What happens to `attributes.forwarded_for` before the event is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpPolicy {
    /// Store as sent.
    #[default]
    Keep,
    /// Zero the host part: IPv4 to /24, IPv6 to /48. Values that are not IP addresses
    /// are dropped, since they cannot be truncated safely.
    Truncate,
    /// Replace with `sha256:<hex>` of salt + address, so equal IPs stay joinable.
    Hash,
    /// Remove the attribute.
    Drop,
}

impl IpPolicy {
    pub const NAMES: [&'static str; 4] = ["keep", "truncate", "hash", "drop"];

    /// Applies the policy to `attributes` in place. `X-Forwarded-For`-style lists
    /// (`"a, b"`) are handled item by item. A value that is not a string (an array, an
    /// object, a number) is never kept under `truncate` or `hash`: `truncate` drops it
    /// (it cannot be truncated safely) and `hash` hashes its JSON text.
    pub fn apply(self, attributes: &mut Map<String, Value>, salt: &str) {
        let Some(original) = attributes.get(IP_ATTRIBUTE) else {
            return;
        };
        match self.rewrite(original, salt) {
            IpRewrite::Keep => {}
            IpRewrite::Replace(value) => {
                attributes.insert(IP_ATTRIBUTE.to_owned(), Value::String(value));
            }
            IpRewrite::Remove => {
                attributes.shift_remove(IP_ATTRIBUTE);
            }
        }
    }

    /// What the policy makes of the attribute's value (see [`IpPolicy::apply`]).
    pub(crate) fn rewrite(self, original: &Value, salt: &str) -> IpRewrite {
        let replaced = match (self, original) {
            (IpPolicy::Keep, _) => return IpRewrite::Keep,
            (IpPolicy::Drop, _) => None,
            (IpPolicy::Truncate, Value::String(text)) => text
                .split(',')
                .map(|item| truncate_ip(item.trim()))
                .collect::<Option<Vec<_>>>()
                .map(|items| items.join(", ")),
            (IpPolicy::Truncate, _) => None,
            (IpPolicy::Hash, Value::String(text)) => Some(hash_ip(text, salt)),
            (IpPolicy::Hash, other) => Some(hash_ip(&other.to_string(), salt)),
        };
        replaced.map_or(IpRewrite::Remove, IpRewrite::Replace)
    }
}

/// What [`IpPolicy::rewrite`] decided for the attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IpRewrite {
    Keep,
    /// Store this string instead.
    Replace(String),
    /// Remove the attribute.
    Remove,
}

fn truncate_ip(text: &str) -> Option<String> {
    match IpAddr::from_str(text).ok()? {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(std::net::Ipv4Addr::new(a, b, c, 0).to_string())
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

fn hash_ip(text: &str, salt: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(text.trim().as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

impl FromStr for IpPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "keep" => Ok(IpPolicy::Keep),
            "truncate" => Ok(IpPolicy::Truncate),
            "hash" => Ok(IpPolicy::Hash),
            "drop" => Ok(IpPolicy::Drop),
            other => Err(format!(
                "unknown IP policy '{other}': expected one of {}",
                IpPolicy::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for IpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            IpPolicy::Keep => "keep",
            IpPolicy::Truncate => "truncate",
            IpPolicy::Hash => "hash",
            IpPolicy::Drop => "drop",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(ip: &str) -> Map<String, Value> {
        match json!({"forwarded_for": ip, "platform": "web"}) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn truncate_zeroes_host_bits_of_each_listed_address() {
        let mut a = attrs("192.168.1.77, 2001:db8:abcd:12::1");
        IpPolicy::Truncate.apply(&mut a, "");
        assert_eq!(a["forwarded_for"], json!("192.168.1.0, 2001:db8:abcd::"));
    }

    #[test]
    fn truncate_drops_values_that_are_not_addresses() {
        let mut a = attrs("unknown");
        IpPolicy::Truncate.apply(&mut a, "");
        assert!(!a.contains_key("forwarded_for"));
        assert_eq!(a["platform"], json!("web"));
    }

    #[test]
    fn hash_is_salted_and_stable() {
        let (mut a, mut b, mut c) = (attrs("10.0.0.1"), attrs("10.0.0.1"), attrs("10.0.0.1"));
        IpPolicy::Hash.apply(&mut a, "s1");
        IpPolicy::Hash.apply(&mut b, "s1");
        IpPolicy::Hash.apply(&mut c, "s2");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a["forwarded_for"].as_str().unwrap().starts_with("sha256:"));
    }

    #[test]
    fn values_that_are_not_strings_are_never_kept_under_truncate_or_hash() {
        for value in [
            json!(["10.0.0.1", "10.0.0.2"]),
            json!({"ip": "10.0.0.1"}),
            json!(167772161),
            json!(true),
            json!(null),
        ] {
            let mut truncated = Map::new();
            truncated.insert("forwarded_for".into(), value.clone());
            IpPolicy::Truncate.apply(&mut truncated, "");
            assert!(!truncated.contains_key("forwarded_for"), "truncate kept {value}");

            let mut hashed = Map::new();
            hashed.insert("forwarded_for".into(), value.clone());
            IpPolicy::Hash.apply(&mut hashed, "a-salt-of-sixteen-bytes");
            let stored = hashed["forwarded_for"].as_str().unwrap_or_default();
            assert!(stored.starts_with("sha256:"), "hash kept {value} as {stored}");
            assert!(!stored.contains("10.0.0"), "{stored}");
        }
    }

    #[test]
    fn drop_and_keep() {
        let mut a = attrs("10.0.0.1");
        IpPolicy::Keep.apply(&mut a, "");
        assert_eq!(a["forwarded_for"], json!("10.0.0.1"));
        IpPolicy::Drop.apply(&mut a, "");
        assert!(!a.contains_key("forwarded_for"));
    }

    #[test]
    fn parses_names() {
        for name in IpPolicy::NAMES {
            assert_eq!(name.parse::<IpPolicy>().unwrap().to_string(), name);
        }
        assert!("mask".parse::<IpPolicy>().is_err());
    }
}
