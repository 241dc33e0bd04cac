//! What may leave the browser: meeting ids without query or fragment, TURN server names without addresses.

/// The meeting id of a page: its origin and path, with query string, fragment and any
/// credentials removed. Returns `None` for a string that is not an absolute http(s) URL.
pub fn meeting_id(page_url: &str) -> Option<String> {
    let (scheme, rest) = page_url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host}{path}"))
}

/// A TURN server's name that may be uploaded: the host of a `turn:`/`turns:` url when it is a
/// DNS name; an IP literal is replaced by "ip-literal" so no address leaves the browser. The
/// port and parameters are dropped.
pub fn turn_server_name(url: &str) -> Option<String> {
    let rest = url.strip_prefix("turns:").or_else(|| url.strip_prefix("turn:"))?;
    let rest = rest.trim_start_matches("//");
    let hostport = rest.split(['?', '/']).next()?;
    if hostport.starts_with('[') {
        return Some("ip-literal".into());
    }
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    if host.is_empty() {
        return None;
    }
    if host.parse::<std::net::IpAddr>().is_ok() || host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Some("ip-literal".into());
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meeting_ids_drop_query_fragment_and_credentials() {
        assert_eq!(
            meeting_id("https://meet.example.com/abc?pwd=secret#x").as_deref(),
            Some("https://meet.example.com/abc")
        );
        assert_eq!(
            meeting_id("http://u:p@localhost:7878/demo").as_deref(),
            Some("http://localhost:7878/demo")
        );
        assert_eq!(
            meeting_id("https://example.com").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(meeting_id("chrome://settings"), None);
        assert_eq!(meeting_id("garbage"), None);
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
        assert_eq!(
            turn_server_name("turn:127.0.0.1:3478?transport=tcp").as_deref(),
            Some("ip-literal")
        );
        assert_eq!(turn_server_name("turn:[::1]:3478").as_deref(), Some("ip-literal"));
        assert_eq!(turn_server_name("stun:stun.example.com"), None);
    }
}
