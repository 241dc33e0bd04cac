//! The options page's site list: what a user types (`meet.example.com`, `*.example.org`, a pasted URL) as Chrome match patterns, with errors a user can act on.

/// Longest `chrome.storage.sync` item, bytes of key plus JSON value (`QUOTA_BYTES_PER_ITEM`).
const SYNC_ITEM_BYTES: usize = 8192;
/// Longest host name (RFC 1035), and longest label in it.
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a typed site cannot be measured: in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("the entry is empty")]
    Empty,
    #[error("“{0}”: only http and https pages can be measured (leave out the scheme for both)")]
    Scheme(String),
    #[error("“{0}”: leave out the user name and password")]
    UserInfo(String),
    #[error("“{entry}”: {problem}")]
    Host { entry: String, problem: HostError },
}

/// What is wrong with the host (and port) part of a typed site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("an IPv6 address needs its closing ]")]
    UnclosedIpv6,
    #[error("the port must be a number from 1 to 65535 (every port of the host is covered anyway)")]
    Port,
    #[error("there is no host name")]
    NoHost,
    #[error("“*” would mean every site: choose “All sites” instead")]
    EverySite,
    #[error("not a valid IPv6 address")]
    Ipv6,
    #[error("write an international name in its ASCII form (xn--…), as the address bar shows it")]
    NotAscii,
    #[error("a * may only stand for subdomains, as in *.example.org")]
    Wildcard,
    #[error("a host name has at most {MAX_HOST_LEN} characters")]
    TooLong,
    #[error("not a valid host name (letters, digits and hyphens, in dot-separated parts)")]
    Name,
}

/// The Chrome match pattern for one site a user typed: `*://host/*` (http and https), or
/// `http://host/*` / `https://host/*` when a scheme is given. `*.example.org` covers
/// example.org and every subdomain. A pasted URL keeps only its scheme and host: Chrome's
/// content-script patterns take no port (the pattern covers every port) and, with
/// `matchOriginAsFallback`, no path but `/*`.
pub fn normalize(input: &str) -> Result<String, SiteError> {
    let entry = input.trim();
    if entry.is_empty() {
        return Err(SiteError::Empty);
    }
    let (scheme, rest) = match entry.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if !matches!(scheme.as_str(), "http" | "https" | "*") {
                return Err(SiteError::Scheme(entry.to_owned()));
            }
            (scheme, rest)
        }
        None => ("*".to_string(), entry),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(SiteError::UserInfo(entry.to_owned()));
    }
    let in_entry = |problem| SiteError::Host {
        entry: entry.to_owned(),
        problem,
    };
    let host = strip_port(authority).map_err(in_entry)?;
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    check_host(&host).map_err(in_entry)?;
    Ok(format!("{scheme}://{host}/*"))
}

/// The host of `host[:port]` or `[v6][:port]`; a port is checked and dropped.
fn strip_port(authority: &str) -> Result<&str, HostError> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => (&authority[..=end], &authority[end + 1..]),
            None => return Err(HostError::UnclosedIpv6),
        }
    } else {
        match authority.find(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        }
    };
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(host),
        Some(p) if p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(host),
        _ => Err(HostError::Port),
    }
}

fn check_host(host: &str) -> Result<(), HostError> {
    if host.is_empty() {
        return Err(HostError::NoHost);
    }
    if host == "*" {
        return Err(HostError::EverySite);
    }
    if let Some(v6) = host.strip_prefix('[') {
        let inner = v6.strip_suffix(']').unwrap_or_default();
        let ok = inner.contains(':') && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        return if ok { Ok(()) } else { Err(HostError::Ipv6) };
    }
    if !host.is_ascii() {
        return Err(HostError::NotAscii);
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return Err(HostError::Wildcard);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(HostError::Name);
        }
    }
    Ok(())
}

/// How a stored pattern is shown: `meet.example.com`, `*.example.org`, or with the scheme
/// when it is limited to one (`https://meet.example.com`).
pub fn display(pattern: &str) -> String {
    let rest = pattern.strip_suffix("/*").unwrap_or(pattern);
    rest.strip_prefix("*://").unwrap_or(rest).to_string()
}

/// The entries of a typed text: one or several sites, separated by spaces, commas or newlines.
pub fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|e| !e.is_empty())
}

/// Whether `sites` fits in one `chrome.storage.sync` item (stored under the key `sites`).
pub fn fits_sync_storage(sites: &[String]) -> bool {
    let json = serde_json::to_string(sites).unwrap_or_default();
    "sites".len() + json.len() <= SYNC_ITEM_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_subdomain_wildcards_become_patterns_for_http_and_https() {
        assert_eq!(normalize("meet.example.com").unwrap(), "*://meet.example.com/*");
        assert_eq!(normalize("  *.Example.ORG  ").unwrap(), "*://*.example.org/*");
        assert_eq!(normalize("localhost").unwrap(), "*://localhost/*");
        assert_eq!(normalize("127.0.0.1").unwrap(), "*://127.0.0.1/*");
        assert_eq!(normalize("xn--mnchen-3ya.de").unwrap(), "*://xn--mnchen-3ya.de/*");
        assert_eq!(normalize("meet.example.com.").unwrap(), "*://meet.example.com/*");
    }

    #[test]
    fn pasted_urls_keep_scheme_and_host_only() {
        assert_eq!(
            normalize("https://Meet.Example.com:8443/abc-defg?pwd=x#y").unwrap(),
            "https://meet.example.com/*"
        );
        assert_eq!(normalize("http://localhost:7878/demo").unwrap(), "http://localhost/*");
        assert_eq!(normalize("*://*.example.org/*").unwrap(), "*://*.example.org/*");
        assert_eq!(normalize("localhost:3000").unwrap(), "*://localhost/*");
        assert_eq!(normalize("[::1]:7878").unwrap(), "*://[::1]/*");
        assert_eq!(normalize("HTTPS://[2001:DB8::1]/x").unwrap(), "https://[2001:db8::1]/*");
    }

    #[test]
    fn invalid_entries_get_an_error_naming_the_entry_and_the_fix() {
        let err = |s: &str| normalize(s).unwrap_err().to_string();
        assert!(err("").contains("empty"));
        assert!(err("ftp://files.example.com").contains("only http and https"));
        assert!(err("file:///home/me").contains("only http and https"));
        assert!(err("meet.*.com").contains("only stand for subdomains"));
        assert!(err("*example.com").contains("only stand for subdomains"));
        assert!(err("*").contains("All sites"));
        assert!(err("*://*/*").contains("All sites"));
        assert!(err("münchen.de").contains("xn--"));
        assert!(err("localhost:0").contains("port"));
        assert!(err("localhost:99999").contains("port"));
        assert!(err("localhost:http").contains("port"));
        assert!(err("user:pw@example.com").contains("user name"));
        assert!(err("foo..bar").contains("not a valid host name"));
        assert!(err("-a.example.com").contains("not a valid host name"));
        assert!(err("exa mple.com").contains("not a valid host name"));
        assert!(err("[::1").contains("closing ]"));
        assert!(err("[zz]").contains("IPv6"));
        assert!(err("https://").contains("no host"));
        assert!(err(&format!("{}.com", "a".repeat(64))).contains("not a valid host name"));
        assert!(err(&format!("{}.com", vec!["a".repeat(60); 5].join("."))).contains("at most 253"));
        assert!(err("meet.*.com").starts_with("“meet.*.com”"));
    }

    #[test]
    fn display_shows_what_the_user_would_type() {
        assert_eq!(display("*://meet.example.com/*"), "meet.example.com");
        assert_eq!(display("*://*.example.org/*"), "*.example.org");
        assert_eq!(display("https://meet.example.com/*"), "https://meet.example.com");
    }

    #[test]
    fn entries_split_on_spaces_commas_and_newlines() {
        let got: Vec<_> = entries(" a.com, b.org\n*.c.net;;d.io ").collect();
        assert_eq!(got, ["a.com", "b.org", "*.c.net", "d.io"]);
    }

    #[test]
    fn the_list_must_fit_one_sync_storage_item() {
        let site = |i: usize| format!("*://meet-{i:04}.example.com/*");
        let short: Vec<String> = (0..100).map(site).collect();
        assert!(fits_sync_storage(&short));
        let long: Vec<String> = (0..400).map(site).collect();
        assert!(!fits_sync_storage(&long));
    }
}
