//! Cross-site request refusal: a browser page of another site must not change state in
//! the user's name (values in, a verdict out; the gateway applies it to every program).
//!
//! A request that may change state (anything but GET and HEAD) is refused when
//! 1. its `Origin` is neither in `PIGGYBACK_ALLOWED_ORIGINS` nor the request's own
//!    host (`HTTP_HOST`, else `SERVER_NAME[:SERVER_PORT]`), or is an `http:` origin of
//!    a request that came over HTTPS; or
//! 2. its origin is not allowlisted and `Sec-Fetch-Site` is present and neither
//!    `same-origin` nor `none`.
//!
//! A request with neither header (curl, scripts, old browsers) passes: browsers send
//! `Origin` on every cross-site POST, and the JSON content type that state changes need
//! keeps plain HTML forms out anyway.

use url::Url;

use crate::http::{ApiError, Meta, Method};

/// `Ok` when the request may go on; 403 `cross_site` otherwise.
pub fn refuse_cross_site(method: Method, meta: &Meta, allowed_origins: &[String]) -> Result<(), ApiError> {
    if method.is_safe() {
        return Ok(());
    }
    match cross_site(meta, allowed_origins) {
        Some(why) => Err(refusal(why)),
        None => Ok(()),
    }
}

/// Why a request of any method came from another site by the rules above, or `None`.
/// The gateway also asks this of GET and HEAD: a cross-site page may load them (a
/// top-level link carries the Lax cookie), and must not use up announcements.
pub fn cross_site(meta: &Meta, allowed_origins: &[String]) -> Option<&'static str> {
    if let Some(origin) = &meta.origin {
        match judge_origin(origin, meta, allowed_origins) {
            Verdict::Allowlisted => return None,
            Verdict::SameHost => {}
            Verdict::Foreign => return Some("the request's Origin is not this site"),
        }
    }
    if let Some(site) = &meta.sec_fetch_site
        && !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"))
    {
        return Some("the request came from another site (Sec-Fetch-Site)");
    }
    None
}

/// Whether the request shows that a page's script made it, not a navigation (a link,
/// a typed address, a form, a frame), which could come from another site's page without
/// a trace on plain http, where browsers send no `Sec-Fetch-*` headers. Where
/// `Sec-Fetch-Mode` is sent it decides (`cors` or `same-origin`); elsewhere only a
/// header no navigation can carry proves it: `X-Piggyback-Ack`, which piggyback.js
/// sends on its own requests, or `X-Requested-With`. A cross-site script cannot add
/// either without a CORS preflight, which no program here grants.
pub fn from_page_script(meta: &Meta) -> bool {
    match &meta.sec_fetch_mode {
        Some(mode) => mode.eq_ignore_ascii_case("cors") || mode.eq_ignore_ascii_case("same-origin"),
        None => meta.ack.is_some() || meta.requested_with.is_some(),
    }
}

fn refusal(message: &str) -> ApiError {
    ApiError::new(403, "cross_site", format!("{message}; requests that change state must come from this site"))
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allowlisted,
    SameHost,
    Foreign,
}

fn judge_origin(origin: &str, meta: &Meta, allowed: &[String]) -> Verdict {
    // `null` (sandboxed frames, some redirects) and anything else unparsable is foreign.
    let Ok(url) = Url::parse(origin.trim()) else { return Verdict::Foreign };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Verdict::Foreign;
    }
    let serialized = url.origin().ascii_serialization();
    if allowed.iter().any(|a| normalize(a).as_deref() == Some(serialized.as_str())) {
        return Verdict::Allowlisted;
    }
    if meta.https && url.scheme() == "http" {
        return Verdict::Foreign;
    }
    // The request's host read with the origin's scheme, so that default ports compare
    // equal (`example.com:443` and `https://example.com`) and case and IDNA fold alike.
    let Some(host) = &meta.host else { return Verdict::Foreign };
    match Url::parse(&format!("{}://{}", url.scheme(), host.trim())) {
        Ok(own)
            if own.host_str() == url.host_str()
                && own.port() == url.port()
                && own.path() == "/"
                && own.username().is_empty() =>
        {
            Verdict::SameHost
        }
        _ => Verdict::Foreign,
    }
}

/// An allowlist entry in the form browsers send `Origin` in.
fn normalize(entry: &str) -> Option<String> {
    Url::parse(entry).ok().map(|u| u.origin().ascii_serialization()).filter(|s| s != "null")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(origin: Option<&str>, site: Option<&str>, host: &str, https: bool) -> Meta {
        Meta {
            origin: origin.map(str::to_owned),
            sec_fetch_site: site.map(str::to_owned),
            host: Some(host.to_owned()).filter(|h| !h.is_empty()),
            https,
            ..Meta::default()
        }
    }

    fn verdict(origin: Option<&str>, site: Option<&str>, host: &str, https: bool) -> Result<(), u16> {
        let allowed = vec!["https://app.example.org".to_owned(), "http://localhost:3000/".to_owned()];
        refuse_cross_site(Method::Post, &meta(origin, site, host, https), &allowed).map_err(|e| e.status)
    }

    #[test]
    fn safe_methods_always_pass() {
        let m = meta(Some("https://evil.test"), Some("cross-site"), "example.com", true);
        assert!(refuse_cross_site(Method::Get, &m, &[]).is_ok());
        assert!(refuse_cross_site(Method::Head, &m, &[]).is_ok());
        assert!(refuse_cross_site(Method::Delete, &m, &[]).is_err());
        assert!(refuse_cross_site(Method::Other, &m, &[]).is_err());
    }

    #[test]
    fn a_cross_site_get_is_recognised_though_it_passes() {
        let link = meta(None, Some("cross-site"), "example.com", true);
        assert!(refuse_cross_site(Method::Get, &link, &[]).is_ok());
        assert!(cross_site(&link, &[]).is_some());
        let foreign = meta(Some("https://evil.test"), None, "example.com", true);
        assert!(cross_site(&foreign, &[]).is_some());
        assert!(cross_site(&meta(None, Some("same-origin"), "example.com", true), &[]).is_none());
        assert!(cross_site(&meta(None, None, "example.com", true), &[]).is_none());
    }

    #[test]
    fn only_a_scripts_request_proves_it_came_from_a_page_script() {
        let with = |mode: Option<&str>, ack: bool, xrw: bool| Meta {
            sec_fetch_mode: mode.map(str::to_owned),
            ack: ack.then_some(crate::http::Ack::Shown(vec![])),
            requested_with: xrw.then(|| "XMLHttpRequest".to_owned()),
            ..Meta::default()
        };
        assert!(!from_page_script(&with(None, false, false)), "plain http, a link: nothing proves a script");
        assert!(from_page_script(&with(None, true, false)));
        assert!(from_page_script(&with(None, false, true)));
        assert!(from_page_script(&with(Some("cors"), false, false)));
        assert!(from_page_script(&with(Some("same-origin"), false, false)));
        assert!(!from_page_script(&with(Some("navigate"), true, false)), "Sec-Fetch-Mode decides where it is sent");
        assert!(!from_page_script(&with(Some("no-cors"), false, false)));
    }

    #[test]
    fn no_headers_pass() {
        assert_eq!(verdict(None, None, "example.com", false), Ok(()));
        assert_eq!(verdict(None, None, "", false), Ok(()));
    }

    #[test]
    fn same_origin_passes() {
        assert_eq!(verdict(Some("https://example.com"), Some("same-origin"), "example.com", true), Ok(()));
        assert_eq!(verdict(Some("https://Example.COM"), None, "example.com:443", true), Ok(()));
        assert_eq!(verdict(Some("http://example.com:8080"), None, "example.com:8080", false), Ok(()));
        assert_eq!(verdict(Some("http://[::1]:8080"), None, "[::1]:8080", false), Ok(()));
        // TLS ended at a proxy: the CGI request itself is plain HTTP.
        assert_eq!(verdict(Some("https://example.com"), Some("same-origin"), "example.com", false), Ok(()));
        assert_eq!(verdict(None, Some("none"), "example.com", false), Ok(()));
    }

    #[test]
    fn other_origins_are_refused() {
        for origin in [
            "https://evil.test",
            "https://example.com.evil.test",
            "https://example.com:8443",
            "null",
            "file://",
            "not a url",
            "",
        ] {
            assert_eq!(verdict(Some(origin), None, "example.com", true), Err(403), "{origin}");
        }
        assert_eq!(verdict(Some("http://example.com"), None, "example.com", true), Err(403));
        assert_eq!(verdict(Some("https://example.com"), None, "", false), Err(403));
        assert_eq!(verdict(Some("https://example.com"), None, "example.com/x", false), Err(403));
        assert_eq!(verdict(Some("https://example.com"), None, "user@example.com", false), Err(403));
    }

    #[test]
    fn sec_fetch_site_other_than_same_origin_is_refused() {
        for site in ["cross-site", "same-site", "CROSS-SITE", "weird"] {
            assert_eq!(verdict(None, Some(site), "example.com", false), Err(403), "{site}");
            assert_eq!(verdict(Some("https://example.com"), Some(site), "example.com", true), Err(403), "{site}");
        }
    }

    #[test]
    fn allowlisted_origins_pass_whatever_sec_fetch_site_says() {
        assert_eq!(verdict(Some("https://app.example.org"), Some("cross-site"), "example.com", true), Ok(()));
        assert_eq!(verdict(Some("https://APP.example.org:443"), None, "example.com", true), Ok(()));
        assert_eq!(verdict(Some("http://localhost:3000"), Some("same-site"), "localhost:8080", false), Ok(()));
        assert_eq!(verdict(Some("http://app.example.org"), None, "example.com", false), Err(403));
    }
}
