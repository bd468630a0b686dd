//! Who a wrapped program's answer is for, decided after the program answered: the
//! `X-Piggyback-User` it printed (ahead of any cookie and of `REMOTE_USER`), else, on a
//! site that does not bind cookies to its session, the request's cookie or trusted
//! `REMOTE_USER` as for our programs. And the `pb_session` cookie that follows: set,
//! bound to the site's session cookie (`PIGGYBACK_SITE_SESSION_COOKIE`), when the
//! program names the user; ended when it names nobody or someone else.
//!
//! [`decide`] takes values and returns values (the header lines to add, the member,
//! the lines to log); it is shared by the CGI wrapper and a FastCGI responder.

use serde_json::Value;

use crate::config::Config;
use crate::csrf;
use crate::gateway::{self, Cause, Env, Kept, LeftOut};
use crate::http::{Meta, Method};
use crate::identity::{self, CookieName, Key};
use crate::message_status::Announcing;
use crate::message_store::Store;
use crate::model::User;
use crate::msq::Queue;
use crate::msq::spool::Spool;
use crate::names::UserName;

use super::answer::{Answered, Attach, Carries, Named};
use super::settings::{Settings, Switch};

/// Who the answer is for, as far as the program's header says.
enum Who {
    /// A known (or just added) user; their session generation.
    User(User, i64),
    /// Nobody: no header on a binding site, an empty one, an unknown or refused name.
    Nobody,
    /// No header, on a site that does not bind: the request's own identity counts.
    Request,
}

/// Decides who the answer is for and what to add to it (see the module's comment).
/// `now` is unix seconds. The lines returned are for the log, one per cause.
/// `kept`: the database connection and session key a FastCGI wrapper keeps between
/// requests (a CGI wrapper's are new); nothing of a request's identity is in it.
pub fn decide(
    env: &Env,
    settings: &Settings,
    answered: &Answered<'_>,
    now: i64,
    kept: &mut Kept,
) -> (Attach, Vec<LeftOut>) {
    let mut notes = Vec::new();
    let config = match Config::from_lookup(|name| env.get(name).cloned()) {
        Ok(config) => config,
        Err(e) => {
            let left = LeftOut::new(Cause::Misconfigured, format!("site_messages left out: configuration: {e}"));
            // Without settings nothing can be checked; an explicit "nobody" still ends
            // the browser's cookies, which needs none.
            let meta = gateway::parse_request(env, std::io::empty()).meta;
            let headers =
                if answered.named == Named::Nobody { ending(&meta, &sent_names(&meta), None) } else { Vec::new() };
            let member = (answered.carries == Carries::Yes).then(|| Err(left.clone()));
            notes.push(left);
            return (Attach { headers: set_cookie(headers), member }, notes);
        }
    };
    let mut request = gateway::parse_request(env, std::io::empty());
    gateway::distrust_remote_user(&mut request.meta, &config);
    gateway::believe_proxies(&mut request.meta, &config);
    let meta = &request.meta;
    let binding_site = config.site_session_cookie.is_some();
    let needs_store = matches!(answered.named, Named::User(_))
        || (answered.carries == Carries::Yes && answered.named == Named::Absent && !binding_site);
    // The key a FastCGI wrapper keeps (one `stat` a request to notice a new key file),
    // as our FastCGI programs do; a CGI wrapper's `Kept` keeps none.
    // Its memory of the spool too: an empty `new/` costs one `stat` instead of a listing.
    let spool = kept.spool(&config);
    let (store, key_memory) = if needs_store {
        match kept.open(&config.db) {
            Ok((store, key_memory)) => (Some(store), key_memory),
            Err(e) => {
                let mut left = LeftOut::of_store(&e);
                left.line = format!("site_messages left out: PIGGYBACK_DB: {e}");
                notes.push(left.clone());
                let member = (answered.carries == Carries::Yes).then(|| Err(left));
                let headers = if binding_site || answered.named != Named::Absent {
                    ending(meta, &sent_names(meta), None)
                } else {
                    Vec::new()
                };
                return (Attach { headers: set_cookie(headers), member }, notes);
            }
        }
    } else {
        (None, None)
    };
    let who = match &answered.named {
        Named::User(raw) => match store.as_ref().map(|store| named_user(store, raw, settings, now)) {
            Some(Ok(who)) => who,
            Some(Err(left)) => {
                notes.push(left);
                Who::Nobody
            }
            None => Who::Nobody,
        },
        Named::Conflicting => {
            notes.push(LeftOut::new(
                Cause::RefusedName,
                "X-Piggyback-User: several lines naming different users, or not UTF-8: the answer names nobody",
            ));
            Who::Nobody
        }
        Named::Nobody => Who::Nobody,
        Named::Absent if binding_site => Who::Nobody,
        Named::Absent => Who::Request,
    };
    let key = || identity::session_key_remembered(&config, key_memory).map_err(|e| e.log.unwrap_or(e.message));
    let sent = sent_names(meta);
    let headers = match &who {
        Who::User(user, generation) => match &config.site_session_cookie {
            Some(site) => match site_session(answered.set_cookies.as_slice(), meta.cookie.as_deref(), site) {
                None => ending(meta, &sent, None),
                Some(value) => match key() {
                    Ok(key) => {
                        let bound = Bound { user, generation: *generation, binding: key.binding(site, &value) };
                        bound_cookie(meta, &sent, &key, &bound, config.session_ttl, now)
                    }
                    Err(why) => {
                        notes.push(LeftOut::new(Cause::Misconfigured, format!("no pb_session set: {why}")));
                        ending(meta, &sent, None)
                    }
                },
            },
            // Not binding: a cookie naming somebody else is ended.
            None => match key() {
                Ok(key) => ending(meta, &sent, Some((&key, user, now))),
                Err(_) => Vec::new(),
            },
        },
        Who::Nobody if binding_site || answered.named != Named::Absent => ending(meta, &sent, None),
        Who::Nobody | Who::Request => Vec::new(),
    };
    let member = match answered.carries {
        Carries::No => None,
        Carries::Yes => match who {
            Who::Nobody => None,
            Who::User(user, _) => store.as_ref().and_then(|store| member(store, &spool, &user, &request, &config, now)),
            Who::Request => {
                store.as_ref().and_then(|store| match gateway::identify(meta, store, &config, now, key_memory) {
                    Ok(Some(user)) => member(store, &spool, &user, &request, &config, now),
                    Ok(None) => None,
                    Err(e) => {
                        let detail = e.log.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
                        Some(Err(LeftOut::new(
                            Cause::Identity,
                            format!("identity refused ({}): {}{detail}", e.code, e.message),
                        )))
                    }
                })
            }
        },
    };
    if let Some(Err(left)) = &member {
        notes.push(left.clone());
    }
    (Attach { headers: set_cookie(headers), member }, notes)
}

/// Each line as a `Set-Cookie` header.
fn set_cookie(lines: Vec<String>) -> Vec<(&'static str, String)> {
    lines.into_iter().map(|line| ("Set-Cookie", line)).collect()
}

/// The user `raw` names, added when `PIGGYBACK_WRAP_CREATE_USERS=1` and unknown.
fn named_user(store: &Store, raw: &str, settings: &Settings, now: i64) -> Result<Who, LeftOut> {
    let refused = |why: String| LeftOut::new(Cause::RefusedName, format!("X-Piggyback-User {raw:?} refused: {why}"));
    let name = UserName::parse(raw).map_err(|e| refused(e.to_string()))?;
    let store_error = |e: crate::message_store::StoreError| LeftOut::of_store(&e);
    let user = match store.user_by_name(&name).map_err(store_error)? {
        Some(user) => user,
        None if settings.create_users == Switch::On => {
            match store.add_user(&name, name.as_str(), None, now).map_err(store_error)? {
                Ok(_) => store.user_by_name(&name).map_err(store_error)?.ok_or_else(|| refused("just added".into()))?,
                Err(_) => return Err(refused("it looks like another user's name".into())),
            }
        }
        None => {
            return Err(LeftOut::new(
                Cause::UnknownUser,
                format!(
                    "X-Piggyback-User {name}: no such user (add it with `piggyback user add`, or set \
                     PIGGYBACK_WRAP_CREATE_USERS=1)"
                ),
            ));
        }
    };
    let generation = store.session_user(user.id).map_err(store_error)?.map(|s| s.generation).unwrap_or(0);
    Ok(Who::User(user, generation))
}

/// `site_messages` for `user`, announcing as a request of theirs would.
fn member(
    store: &Store,
    spool: &Spool,
    user: &User,
    request: &crate::http::Request,
    config: &Config,
    now: i64,
) -> Option<Result<Value, LeftOut>> {
    if request.method == Method::Head {
        return None;
    }
    gateway::drain(&Queue::new(store, spool.clone()), now);
    // As for our programs: a request from another site reports counts, announces nothing.
    let announcing = match csrf::cross_site(&request.meta, &config.allowed_origins) {
        Some(_) => Announcing::CountsOnly,
        None => Announcing::Claim,
    };
    gateway::site_messages(store, user, request.meta.ack.as_ref(), config, now, announcing).transpose()
}

/// The session cookie names the browser sent.
fn sent_names(meta: &Meta) -> Vec<CookieName> {
    let Some(header) = meta.cookie.as_deref() else { return Vec::new() };
    let mut names = Vec::new();
    for name in [CookieName::Host, CookieName::Plain] {
        if identity::cookie_values(header, name.as_str()).next().is_some() {
            names.push(name);
        }
    }
    names
}

/// The value of the site's session cookie this answer leaves the browser with: the one
/// the program sets in it (a login starts a new session), else the request's; `None`
/// when the program deletes it or there is none.
pub fn site_session(set_cookies: &[&str], request_cookies: Option<&str>, site: &str) -> Option<String> {
    let set = set_cookies.iter().rev().find_map(|line| {
        let (pair, attributes) = line.split_once(';').unwrap_or((line, ""));
        let (name, value) = pair.split_once('=')?;
        (name.trim() == site).then(|| (value.trim().trim_matches('"'), attributes))
    });
    match set {
        Some((value, attributes)) => {
            let deleted = value.is_empty()
                || value == "deleted"
                || attributes.split(';').any(|a| {
                    a.split_once('=').is_some_and(|(k, v)| {
                        k.trim().eq_ignore_ascii_case("max-age") && v.trim().parse::<i64>().is_ok_and(|n| n <= 0)
                    })
                });
            (!deleted).then(|| value.to_owned())
        }
        None => request_cookies.and_then(|c| identity::cookie_value(c, site)).map(str::to_owned),
    }
}

/// A bound cookie to keep or set.
struct Bound<'a> {
    user: &'a User,
    generation: i64,
    binding: String,
}

/// The lines that leave the browser with a `pb_session` bound to the site session for
/// the user: none when it already has a valid one with more than half its life left,
/// else a new one; a cookie of the other name is ended.
fn bound_cookie(meta: &Meta, sent: &[CookieName], key: &Key, bound: &Bound<'_>, ttl: i64, now: i64) -> Vec<String> {
    let name = CookieName::for_scheme(meta.https);
    let fresh = meta.cookie.as_deref().is_some_and(|header| {
        identity::cookie_values(header, name.as_str()).any(|value| {
            key.verify(value, name, now).is_ok_and(|c| {
                c.user == bound.user.id
                    && c.generation == Some(bound.generation)
                    && c.binding.as_deref() == Some(bound.binding.as_str())
                    && c.expires - now > ttl / 2
            })
        })
    });
    let others: Vec<CookieName> = sent.iter().copied().filter(|n| *n != name).collect();
    let mut lines = ending(meta, &others, None);
    if !fresh {
        let claims = identity::Claims {
            user: bound.user.id,
            generation: Some(bound.generation),
            session: None,
            expires: now + ttl,
            binding: Some(bound.binding.clone()),
        };
        lines.push(format!(
            "{}={}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Lax{}",
            name.as_str(),
            key.mint(&claims, name),
            if name == CookieName::Host || meta.https { "; Secure" } else { "" }
        ));
    }
    lines
}

/// Expired `Set-Cookie` lines for the session cookies the browser sent; with
/// `keeping`, only for those that do not name that user.
fn ending(meta: &Meta, sent: &[CookieName], keeping: Option<(&Key, &User, i64)>) -> Vec<String> {
    sent.iter()
        .filter(|name| match keeping {
            None => true,
            Some((key, user, now)) => meta.cookie.as_deref().is_some_and(|header| {
                identity::cookie_values(header, name.as_str())
                    .any(|v| key.verify(v, **name, now).is_ok_and(|c| c.user != user.id))
            }),
        })
        .map(|name| {
            let secure = if *name == CookieName::Host || meta.https { "; Secure" } else { "" };
            format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}", name.as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_session_is_the_one_the_answer_leaves() {
        let request = Some("a=1; PHPSESSID=old");
        assert_eq!(site_session(&[], request, "PHPSESSID").as_deref(), Some("old"));
        assert_eq!(site_session(&["PHPSESSID=new; path=/; HttpOnly"], request, "PHPSESSID").as_deref(), Some("new"));
        for deleted in [
            "PHPSESSID=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/",
            "PHPSESSID=; path=/",
            "PHPSESSID=x; Max-Age=-1",
        ] {
            assert_eq!(site_session(&[deleted], request, "PHPSESSID"), None, "{deleted}");
        }
        assert_eq!(site_session(&["other=1"], None, "PHPSESSID"), None);
        assert_eq!(site_session(&[], Some("XPHPSESSID=1"), "PHPSESSID"), None);
    }
}
