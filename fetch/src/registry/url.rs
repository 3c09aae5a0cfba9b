//! The little URL handling the registry client needs: origins, hosts, redirect targets and
//! query encoding. Registry URLs are simple (`scheme://host[:port]/path?query`), so this avoids
//! a URL crate.

/// `scheme://host[:port]` of an absolute URL.
pub fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// `host[:port]` of an absolute URL (without user info).
pub fn host_port(url: &str) -> &str {
    let o = origin(url);
    let hp = o.find("://").map_or(o, |i| &o[i + 3..]);
    hp.rsplit('@').next().unwrap_or(hp)
}

/// The host name of `host[:port]` (IPv6 literals keep their brackets).
pub fn hostname(host_port: &str) -> &str {
    if host_port.starts_with('[') {
        return host_port.find(']').map_or(host_port, |i| &host_port[..=i]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// Resolves a `Location` header against the URL that returned it.
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{}{location}", origin(base));
    }
    // Relative to the directory of the current path.
    let path_end = base.find(['?', '#']).unwrap_or(base.len());
    let dir_end = base[..path_end].rfind('/').map_or(path_end, |i| i + 1);
    let dir_end = dir_end.max(origin(base).len());
    let mut out = base[..dir_end].to_string();
    if !out.ends_with('/') {
        out.push('/');
    }
    out.push_str(location);
    out
}

/// The URL without its query, for logs: presigned URLs carry signatures in the query.
pub fn redacted(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay as they are).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_hosts() {
        assert_eq!(origin("https://r.lan:5000/v2/x?y=1"), "https://r.lan:5000");
        assert_eq!(origin("http://r.lan"), "http://r.lan");
        assert_eq!(host_port("https://u:p@cdn.example/x"), "cdn.example");
        assert_eq!(hostname("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(hostname("[::1]:5000"), "[::1]");
    }

    #[test]
    fn redirect_targets() {
        let base = "https://r.lan/v2/a/blobs/sha256:1";
        assert_eq!(resolve(base, "https://cdn/x?sig=1"), "https://cdn/x?sig=1");
        assert_eq!(resolve(base, "//cdn/x"), "https://cdn/x");
        assert_eq!(resolve(base, "/other"), "https://r.lan/other");
        assert_eq!(resolve(base, "rel"), "https://r.lan/v2/a/blobs/rel");
        assert_eq!(resolve("https://r.lan", "rel"), "https://r.lan/rel");
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode("repository:library/busybox:pull"),
            "repository%3Alibrary%2Fbusybox%3Apull"
        );
        assert_eq!(redacted("https://s3/x?X-Amz-Signature=abc"), "https://s3/x");
    }
}
