//! The options page's site list: what a user types (`meet.example.com`, `*.example.org`, a pasted URL) as Chrome match patterns, with errors a user can act on.

/// Longest `chrome.storage.sync` item, bytes of key plus JSON value (`QUOTA_BYTES_PER_ITEM`).
const SYNC_ITEM_BYTES: usize = 8192;
/// Longest host name (RFC 1035), and longest label in it.
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// The Chrome match pattern for one site a user typed: `*://host/*` (http and https), or
/// `http://host/*` / `https://host/*` when a scheme is given. `*.example.org` covers
/// example.org and every subdomain. A pasted URL keeps only its scheme and host: Chrome's
/// content-script patterns take no port (the pattern covers every port) and, with
/// `matchOriginAsFallback`, no path but `/*`.
pub fn normalize(input: &str) -> Result<String, String> {
    let entry = input.trim();
    if entry.is_empty() {
        return Err("the entry is empty".into());
    }
    let (scheme, rest) = match entry.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if !matches!(scheme.as_str(), "http" | "https" | "*") {
                return Err(format!(
                    "“{entry}”: only http and https pages can be measured (leave out the scheme for both)"
                ));
            }
            (scheme, rest)
        }
        None => ("*".to_string(), entry),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("“{entry}”: leave out the user name and password"));
    }
    let host = strip_port(authority).map_err(|e| format!("“{entry}”: {e}"))?;
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    check_host(&host).map_err(|e| format!("“{entry}”: {e}"))?;
    Ok(format!("{scheme}://{host}/*"))
}

/// The host of `host[:port]` or `[v6][:port]`; a port is checked and dropped.
fn strip_port(authority: &str) -> Result<&str, String> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => (&authority[..=end], &authority[end + 1..]),
            None => return Err("an IPv6 address needs its closing ]".into()),
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
        _ => Err("the port must be a number from 1 to 65535 (every port of the host is covered anyway)".into()),
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("there is no host name".into());
    }
    if host == "*" {
        return Err("“*” would mean every site: choose “All sites” instead".into());
    }
    if let Some(v6) = host.strip_prefix('[') {
        let inner = v6.strip_suffix(']').unwrap_or_default();
        let ok = inner.contains(':') && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        return if ok {
            Ok(())
        } else {
            Err("not a valid IPv6 address".into())
        };
    }
    if !host.is_ascii() {
        return Err("write an international name in its ASCII form (xn--…), as the address bar shows it".into());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return Err("a * may only stand for subdomains, as in *.example.org".into());
    }
    if name.len() > MAX_HOST_LEN {
        return Err(format!("a host name has at most {MAX_HOST_LEN} characters"));
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
            return Err("not a valid host name (letters, digits and hyphens, in dot-separated parts)".into());
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
        let err = |s: &str| normalize(s).unwrap_err();
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
