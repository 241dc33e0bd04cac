//! What may leave the browser: meeting ids without query, fragment, port or IP address (or only their salted hash), TURN server names without addresses, and which collector URLs may receive them.

use url::{Host, Url};

/// What replaces an IP-literal host (IPv4, IPv6, or a numeric form such as `0x7f000001` that
/// URL parsing reads as IPv4) in a meeting id or TURN server name: no address leaves the browser.
pub const IP_LITERAL: &str = "ip-literal";

/// The host of a parsed URL as it may be uploaded: a DNS name in lower case, or [`IP_LITERAL`].
fn public_host(host: Host<&str>) -> String {
    match host {
        Host::Domain(name) => name.to_ascii_lowercase(),
        Host::Ipv4(_) | Host::Ipv6(_) => IP_LITERAL.to_string(),
    }
}

/// The meeting id of a page: its scheme, host and path, with query string, fragment,
/// credentials and port removed and an IP-literal host replaced by [`IP_LITERAL`]. The page URL
/// is parsed as the browser parses it (WHATWG), so `http://2130706433/` is an IPv4 address too.
/// Returns `None` for a string that is not an absolute http(s) URL with a host.
pub fn meeting_id(page_url: &str) -> Option<String> {
    let url = Url::parse(page_url).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = public_host(url.host()?);
    Some(format!("{}://{host}{}", url.scheme(), url.path()))
}

/// What a hashed meeting id starts with (a page's meeting id starts with its scheme).
pub const HASHED_MEETING_PREFIX: &str = "h-";

/// The meeting id the extension uploads for a page: [`meeting_id`], or, with a salt (an
/// organisation's own secret, the same for all its users; surrounding spaces ignored),
/// [`HASHED_MEETING_PREFIX`] and the first 32 hex digits (128 bits) of SHA-256 over the salt, a
/// newline and that meeting id. Everyone with the same salt in the same meeting sends the same id,
/// so the collector still groups them, but it never learns the page's address; an admin who knows
/// a meeting's address and the salt finds it with `collector meeting-id --salt SALT URL`.
pub fn uploaded_meeting_id(page_url: &str, salt: &str) -> Option<String> {
    let id = meeting_id(page_url)?;
    let salt = salt.trim();
    if salt.is_empty() {
        return Some(id);
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(b"\n")
        .chain_update(id.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{HASHED_MEETING_PREFIX}{hex}"))
}

/// A TURN server's name that may be uploaded: the host of a `turn:`/`turns:` url when it is a
/// DNS name; an IP literal (in any form URL parsing reads as one) is replaced by
/// [`IP_LITERAL`]. The port and parameters are dropped.
pub fn turn_server_name(url: &str) -> Option<String> {
    let rest = url.strip_prefix("turns:").or_else(|| url.strip_prefix("turn:"))?;
    let rest = rest.trim_start_matches("//");
    let hostport = rest.split(['?', '/', '#']).next()?;
    if hostport.is_empty() || hostport.contains('@') {
        return None;
    }
    // A turn: url is opaque to URL parsing; its host is parsed as an http URL's would be.
    let parsed = Url::parse(&format!("http://{hostport}/")).ok()?;
    Some(public_host(parsed.host()?))
}

/// Why a collector URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectorUrlError {
    #[error("The collector URL is not a valid http(s) URL.")]
    Invalid,
    #[error("The collector must use https:// (plain http:// is allowed only for this computer: localhost, 127.0.0.1 or [::1]).")]
    NeedsHttps,
}

/// Whether `host` is this computer (where plain http exposes nothing on the network).
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => {
            let name = name.to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// The collector's base URL (no trailing slash, query or fragment) when events may go there:
/// https anywhere, plain http only to a loopback host.
pub fn collector_base(collector_url: &str) -> Result<String, CollectorUrlError> {
    let url = Url::parse(collector_url.trim()).map_err(|_| CollectorUrlError::Invalid)?;
    let host = url.host().ok_or(CollectorUrlError::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => return Err(CollectorUrlError::NeedsHttps),
        _ => return Err(CollectorUrlError::Invalid),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CollectorUrlError::Invalid);
    }
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    Ok(base.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_salt_hashes_the_meeting_id_and_nothing_of_the_address_remains() {
        // Vectors from Python: hashlib.sha256(b"org-salt\nhttps://meet.example.com/abc").hexdigest()[:32]
        let url = "https://meet.example.com:8443/abc?pwd=secret#x";
        assert_eq!(
            uploaded_meeting_id(url, " org-salt ").as_deref(),
            Some("h-0d392e593d3e527a30427ad933d40b15")
        );
        assert_eq!(
            uploaded_meeting_id(url, "other").as_deref(),
            Some("h-f96f47f32a2e95a37045fb9838c25ea4")
        );
        // The same meeting from another page of it (query, port) hashes the same.
        assert_eq!(
            uploaded_meeting_id("https://meet.example.com/abc", "org-salt"),
            uploaded_meeting_id(url, "org-salt")
        );
        // No salt: the address as meeting_id gives it; not a page: nothing.
        assert_eq!(uploaded_meeting_id(url, "  "), meeting_id(url));
        assert_eq!(uploaded_meeting_id("chrome://settings", "org-salt"), None);
    }

    #[test]
    fn meeting_ids_drop_query_fragment_credentials_and_port() {
        assert_eq!(
            meeting_id("https://meet.example.com/abc?pwd=secret#x").as_deref(),
            Some("https://meet.example.com/abc")
        );
        assert_eq!(
            meeting_id("http://u:p@localhost:7878/demo").as_deref(),
            Some("http://localhost/demo")
        );
        assert_eq!(
            meeting_id("https://Meet.Example.com:8443/room").as_deref(),
            Some("https://meet.example.com/room")
        );
        assert_eq!(
            meeting_id("https://example.com").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(meeting_id("chrome://settings"), None);
        assert_eq!(meeting_id("garbage"), None);
        assert_eq!(meeting_id("file:///tmp/call.html"), None);
    }

    #[test]
    fn meeting_ids_replace_every_form_of_ip_literal() {
        for page in [
            "https://10.1.2.3:8443/room",
            "http://127.0.0.1:7878/demo",
            "https://[::1]/room",
            "https://[2001:db8::1]:443/room",
            "https://0x7f000001/room",
            "https://2130706433/room",
            "https://0177.0.0.1/room",
            "https://10.1/room",
        ] {
            let id = meeting_id(page).unwrap();
            let path = if page.contains("demo") { "/demo" } else { "/room" };
            let scheme = page.split(':').next().unwrap();
            assert_eq!(id, format!("{scheme}://ip-literal{path}"), "{page}");
        }
    }

    #[test]
    fn turn_names_hide_addresses() {
        assert_eq!(
            turn_server_name("turn:turn.example.com:3478?transport=udp").as_deref(),
            Some("turn.example.com")
        );
        assert_eq!(
            turn_server_name("turns:Relay.Example.com:443?transport=tcp").as_deref(),
            Some("relay.example.com")
        );
        for url in [
            "turn:127.0.0.1:3478?transport=tcp",
            "turn:[::1]:3478",
            "turn:0x7f000001:3478",
            "turn:2130706433?transport=udp",
            "turns:0177.1:443",
            "turn:10.1",
        ] {
            assert_eq!(turn_server_name(url).as_deref(), Some(IP_LITERAL), "{url}");
        }
        assert_eq!(turn_server_name("stun:stun.example.com"), None);
        assert_eq!(turn_server_name("turn:"), None);
        assert_eq!(turn_server_name("turn:user@host.example.com"), None);
    }

    #[test]
    fn collectors_need_https_unless_loopback() {
        assert_eq!(
            collector_base("https://vitals.example.com/").as_deref(),
            Ok("https://vitals.example.com")
        );
        assert_eq!(
            collector_base(" http://127.0.0.1:7878/ ").as_deref(),
            Ok("http://127.0.0.1:7878")
        );
        assert_eq!(
            collector_base("http://localhost:7878").as_deref(),
            Ok("http://localhost:7878")
        );
        assert_eq!(collector_base("http://[::1]:7878").as_deref(), Ok("http://[::1]:7878"));
        assert_eq!(
            collector_base("http://0x7f000001:7878").as_deref(),
            Ok("http://127.0.0.1:7878")
        );
        for remote in [
            "http://vitals.example.com",
            "http://10.1.2.3:7878",
            "http://[2001:db8::1]/",
        ] {
            assert_eq!(collector_base(remote), Err(CollectorUrlError::NeedsHttps), "{remote}");
        }
        for bad in [
            "",
            "vitals.example.com",
            "ftp://vitals.example.com",
            "https://u:p@vitals.example.com",
        ] {
            assert_eq!(collector_base(bad), Err(CollectorUrlError::Invalid), "{bad}");
        }
    }
}
