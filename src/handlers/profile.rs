//! `profile`: a user's profile, and editing one's own.

use serde::Deserialize;
use serde_json::json;

use super::{MAX_BIO_CHARS, MAX_DISPLAY_NAME_CHARS, check_text, named_user, unknown_path};
use crate::gateway::Context;
use crate::http::{ApiError, Method, Reply, Request};
use crate::message_store::{Profile, UserId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    display_name: Option<String>,
    bio: Option<String>,
}

pub fn profile(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let me = ctx.user()?;
    if !req.path.is_empty() {
        return Err(unknown_path());
    }
    match req.method {
        Method::Get | Method::Head => {
            let id = match req.query_param("user") {
                None | Some("") => me.id,
                Some(name) => named_user(ctx, name)?.id,
            };
            Ok(Reply::ok(json!({"profile": profile_json(&load(ctx, id)?)})))
        }
        Method::Post => {
            let edit: Edit = req.json()?;
            if let Some(d) = &edit.display_name {
                check_text("display_name", d, MAX_DISPLAY_NAME_CHARS, true)?;
            }
            if let Some(b) = &edit.bio {
                check_text("bio", b, MAX_BIO_CHARS, false)?;
            }
            ctx.store.update_profile(me.id, edit.display_name.as_deref().map(str::trim), edit.bio.as_deref())?;
            Ok(Reply::ok(json!({"profile": profile_json(&load(ctx, me.id)?)})))
        }
        _ => Err(ApiError::method_not_allowed("GET, HEAD, POST")),
    }
}

fn load(ctx: &Context<'_>, id: UserId) -> Result<Profile, ApiError> {
    ctx.store.profile(id)?.ok_or_else(|| ApiError::new(404, "user_not_found", "no such user"))
}

fn profile_json(p: &Profile) -> serde_json::Value {
    json!({
        "name": p.name,
        "display_name": p.display_name,
        "bio": p.bio,
        "joined_at": p.joined_at,
        "friends": p.friends,
        "posts": p.posts,
    })
}
