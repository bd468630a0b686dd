//! `session`: logging in with a name and password (which sets the signed `pb_session`
//! cookie), logging out, and who is logged in. docs/SECURITY.md is the reference.
//!
//! Failed logins are throttled per user name and per client address, with the counts in
//! the database so they hold across processes; a wrong name and a wrong password cost
//! the same argon2 verification and get the same answer.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, Context, unknown_path};
use crate::http::{ApiError, Method, Reply, Request, SessionChange};
use crate::identity::{self, COOKIE_NAME};
use crate::model::User;
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
        ([], Method::Delete) => logout(req),
        ([], _) => Err(ApiError::method_not_allowed("GET, HEAD, POST, DELETE")),
        (["logout"], Method::Post) => logout(req),
        (["logout"], _) => Err(ApiError::method_not_allowed("POST")),
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
            return Err(refusal.clone().header("Set-Cookie", clearing_cookie(req)));
        }
        Caller::Refused(refusal) => return Err(refusal.clone()),
        Caller::Anonymous => return Ok(Reply::ok(json!({"session": null}))),
    };
    if req.meta.remote_user.is_some() {
        return Ok(Reply::ok(json!({"session": session_json(user, "remote_user", None)})));
    }
    let expires = req.meta.cookie.as_deref().and_then(|c| identity::cookie_value(c, COOKIE_NAME));
    let expires = expires.and_then(identity::stated_expiry);
    Ok(Reply::ok(json!({"session": session_json(user, "cookie", expires)})))
}

/// `POST /session {"name", "password"}`: 200 with the cookie, 401 `bad_credentials`, or
/// 429 `too_many_attempts` with `Retry-After`.
fn login(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let login: Login = req.json()?;
    // Without a key no cookie can be made: say so before spending a verification.
    let key = identity::session_key(ctx.config)?;
    let now = ctx.now;
    let throttles = throttle_keys(&login.name, req.meta.remote_addr.as_deref());
    for (key, limit) in &throttles {
        if let Some(wait) = ctx.store.rate_wait(key, *limit, LOGIN_WINDOW_SECS, now)? {
            return Err(ApiError::new(429, "too_many_attempts", "too many failed logins; wait and try again")
                .header("Retry-After", wait.to_string()));
        }
    }
    // Names that cannot exist are looked up as nobody, and verified against the dummy.
    let account = if text::valid_name(&login.name) { ctx.store.password_hash(&login.name)? } else { None };
    let stored = account.as_ref().and_then(|(_, hash)| hash.as_deref());
    // Exactly one argon2 verification whatever the name: `verify` uses the dummy hash
    // when there is no stored one.
    let matches = password::verify(&login.password, stored);
    let user = match account {
        Some((id, _)) if matches => ctx.store.user_by_id(id)?,
        _ => None,
    };
    let Some(user) = user else {
        for (key, limit) in &throttles {
            ctx.store.take_rate(key, *limit, LOGIN_WINDOW_SECS, now)?;
        }
        return Err(ApiError::new(401, "bad_credentials", "wrong name or password"));
    };
    // The name's failures are forgiven; the address's stay counted.
    ctx.store.clear_rate(&name_throttle(&user.name))?;
    let ttl = ctx.config.session_ttl;
    let expires = now + ttl;
    let mut cookie =
        format!("{COOKIE_NAME}={}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Lax", key.sign(user.id, expires));
    if req.meta.https {
        cookie.push_str("; Secure");
    }
    Ok(Reply::ok(json!({"session": session_json(&user, "cookie", Some(expires))}))
        .header("Set-Cookie", cookie)
        .session(SessionChange::Started(user)))
}

/// `POST /session/logout`, `DELETE /session`: clears the cookie, always 200.
fn logout(req: &Request) -> Result<Reply, ApiError> {
    req.ensure_acceptable_body()?;
    Ok(Reply::ok(json!({"session": null})).header("Set-Cookie", clearing_cookie(req)).session(SessionChange::Ended))
}

fn clearing_cookie(req: &Request) -> String {
    let secure = if req.meta.https { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}")
}

/// The throttle keys of a login attempt: the name's (when it could be a name; first)
/// and the client address's.
fn throttle_keys(name: &str, addr: Option<&str>) -> Vec<(String, u32)> {
    let mut keys = Vec::with_capacity(2);
    if text::valid_name(name) {
        keys.push((name_throttle(name), LOGIN_FAILURES_PER_NAME));
    }
    // REMOTE_ADDR comes from the web server; bound it all the same.
    let addr: String = addr.unwrap_or("unknown").chars().take(64).collect();
    keys.push((format!("login-addr:{addr}"), LOGIN_FAILURES_PER_ADDRESS));
    keys
}

fn name_throttle(name: &str) -> String {
    format!("login-name:{name}")
}

fn session_json(user: &User, via: &str, expires: Option<i64>) -> Value {
    json!({
        "name": user.name,
        "display_name": user.display_name,
        "via": via,
        "expires_at": expires.map(text::rfc3339),
    })
}
