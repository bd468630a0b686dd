//! `session`: logging in with a name and password (which sets the signed `pb_session`
//! cookie), logging out, and who is logged in. docs/SECURITY.md is the reference.
//!
//! Failed logins are throttled per user name and per client address, with the counts in
//! the database so they hold across processes; a wrong name and a wrong password cost
//! the same argon2 verification and get the same answer.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, Context, unknown_path, user_name};
use crate::http::{ApiError, Method, Reply, Request, SessionChange};
use crate::identity::{self, Claims, CookieName, Verdict};
use crate::message_store::{Limit, Refusal};
use crate::model::User;
use crate::names::UserName;
use crate::{password, text};

/// Failed logins for one user name within [`LOGIN_WINDOW_SECS`] before 429.
pub const LOGIN_FAILURES_PER_NAME: u32 = 5;
/// Failed logins from one client address within [`LOGIN_WINDOW_SECS`] before 429.
pub const LOGIN_FAILURES_PER_ADDRESS: u32 = 20;
/// The throttles' fixed window.
pub const LOGIN_WINDOW_SECS: i64 = 15 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

pub fn session(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    match (req.path_segments().as_slice(), req.method) {
        ([], Method::Get | Method::Head) => current(ctx, req),
        ([], Method::Post) => login(ctx, req),
        ([], Method::Delete) => logout(ctx, req),
        ([], _) => Err(ApiError::method_not_allowed("GET, HEAD, POST, DELETE")),
        (["logout"], Method::Post) => logout(ctx, req),
        (["logout"], _) => Err(ApiError::method_not_allowed("POST")),
        (["logout-all"], Method::Post) => logout_everywhere(ctx, req),
        (["logout-all"], _) => Err(ApiError::method_not_allowed("POST")),
        _ => Err(unknown_path()),
    }
}

/// `GET /session`: `{"session": {...}}` for an identified caller, `{"session": null}`
/// for a caller with no identity, the refusal (401) for a refused one.
fn current(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let user = match &ctx.caller {
        Caller::Identified(user) => user,
        // A cookie that names nobody only gets in the way: tell the browser to drop it.
        Caller::Refused(refusal) if req.meta.remote_user.is_none() => {
            let mut refusal = refusal.clone();
            for cookie in clearing_cookies(req) {
                refusal = refusal.header("Set-Cookie", cookie);
            }
            return Err(refusal);
        }
        Caller::Refused(refusal) => return Err(refusal.clone()),
        Caller::Anonymous => return Ok(Reply::ok(json!({"session": null}))),
    };
    if req.meta.remote_user.is_some() {
        return Ok(Reply::ok(json!({"session": session_json(user, "remote_user", None)})));
    }
    // The expiry of the cookie that identified the caller, not of the first one sent.
    let expires = caller_claims(ctx, req).map(|c| c.expires);
    Ok(Reply::ok(json!({"session": session_json(user, "cookie", expires)})))
}

/// `POST /session {"name", "password"}`: 200 with the cookie, 401 `bad_credentials`, or
/// 429 `too_many_attempts` with `Retry-After`.
fn login(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let login: Login = req.json()?;
    // Without a key no cookie can be made: say so before spending a verification.
    let key = identity::session_key(ctx.config)?;
    let now = ctx.now;
    let addr: String = req.meta.remote_addr.as_deref().unwrap_or("unknown").chars().take(64).collect();
    // Counted before the verification, in one transaction, so parallel attempts cannot
    // all pass a check that reads the count before argon2 and counts after it.
    // A name no user can have is refused before anything is counted or verified:
    // the rule is public, so the answer tells nothing about who exists.
    let name = user_name(&login.name)?;
    let limits = login_limits(ctx, &name, &addr)?;
    if let Err(refusal) = ctx.store.take_limits(&limits, now)? {
        let wait = match refusal {
            Refusal::Wait(wait) => wait,
            Refusal::OverQuota | Refusal::Removed => LOGIN_WINDOW_SECS,
        };
        return Err(ApiError::new(429, "too_many_attempts", "too many failed logins; wait and try again")
            .header("Retry-After", wait.to_string()));
    }
    let account = ctx.store.password_hash(&name)?;
    let stored = account.as_ref().and_then(|(_, hash)| hash.as_deref());
    // Exactly one argon2 verification whatever the name: `verify` uses the dummy hash
    // when there is no stored one.
    let matches = password::verify(&login.password, stored);
    let found = match account {
        Some((id, _)) if matches => ctx.store.session_user(id)?,
        _ => None,
    };
    let Some(found) = found else {
        // Already counted.
        return Err(ApiError::new(401, "bad_credentials", "wrong name or password"));
    };
    // Only failures count: give back what this attempt took, and remember the address
    // so that a lock-out of the name does not stop its owner here.
    for limit in &limits {
        ctx.store.refund_limit(&limit.key)?;
    }
    ctx.store.remember_login_address(&name, &addr, now)?;
    let user = found.user;
    let ttl = ctx.config.session_ttl;
    let expires = now + ttl;
    let name = CookieName::for_scheme(req.meta.https);
    let claims = Claims { user: user.id, generation: Some(found.generation), session: None, expires, binding: None };
    let cookie = format!(
        "{}={}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Lax{}",
        name.as_str(),
        key.mint(&claims, name),
        secure(req)
    );
    Ok(Reply::ok(json!({"session": session_json(&user, "cookie", Some(expires))}))
        .header("Set-Cookie", cookie)
        .session(SessionChange::Started(user)))
}

/// `POST /session/logout`, `DELETE /session`: ends the caller's session (a captured
/// copy of the cookie stops working too) and clears the cookie, always 200.
fn logout(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    req.ensure_acceptable_body()?;
    if ctx.caller.identified().is_some()
        && let Some(Claims { user, session: Some(id), expires, .. }) = caller_claims(ctx, req)
    {
        ctx.store.end_session(user, &id, expires, ctx.now)?;
    }
    let mut reply = Reply::ok(json!({"session": null})).session(SessionChange::Ended);
    for cookie in clearing_cookies(req) {
        reply = reply.header("Set-Cookie", cookie);
    }
    Ok(reply)
}

/// `POST /session/logout-all`: ends every session of the caller, on every device.
fn logout_everywhere(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    req.ensure_acceptable_body()?;
    let me = ctx.require_user()?;
    ctx.store.end_all_sessions(me.id)?;
    let mut reply = Reply::ok(json!({"session": null})).session(SessionChange::Ended);
    for cookie in clearing_cookies(req) {
        reply = reply.header("Set-Cookie", cookie);
    }
    Ok(reply)
}

/// What the caller's valid session cookie says (the one that identified it).
fn caller_claims(ctx: &Context<'_>, req: &Request) -> Option<Claims> {
    let key = identity::session_key(ctx.config).ok()?;
    match identity::judge(req.meta.cookie.as_deref(), &key, ctx.now) {
        Verdict::Valid(claims) => Some(claims),
        _ => None,
    }
}

/// Set-Cookie values that drop the session cookie: on https both names, since a
/// browser upgraded from plain http may still hold the old one.
fn clearing_cookies(req: &Request) -> Vec<String> {
    let names: &[CookieName] =
        if req.meta.https { &[CookieName::Host, CookieName::Plain] } else { &[CookieName::Plain] };
    names
        .iter()
        .map(|name| format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}", name.as_str(), secure(req)))
        .collect()
}

fn secure(req: &Request) -> &'static str {
    if req.meta.https { "; Secure" } else { "" }
}

/// The limits a login attempt from `addr` counts against: the address's, and the
/// name's, or, from an address the name has logged in from before, that pair's. So one
/// address cannot lock out more than a few names, and a name locked out by guesses from
/// elsewhere still logs in from where its owner logged in before.
fn login_limits(ctx: &Context<'_>, name: &UserName, addr: &str) -> Result<Vec<Limit>, ApiError> {
    let key = if ctx.store.known_login_address(name, addr)? {
        format!("login-pair:{name}@{addr}")
    } else {
        format!("login-name:{name}")
    };
    Ok(vec![
        Limit::new(format!("login-addr:{addr}"), LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_SECS),
        Limit::new(key, LOGIN_FAILURES_PER_NAME, LOGIN_WINDOW_SECS),
    ])
}

fn session_json(user: &User, via: &str, expires: Option<i64>) -> Value {
    json!({
        "name": user.name,
        "display_name": user.display_name,
        "via": via,
        "expires_at": expires.map(text::rfc3339),
    })
}
