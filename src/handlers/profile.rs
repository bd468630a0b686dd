//! `profile`: a user's profile, and editing one's own.

use serde::Deserialize;
use serde_json::json;

use super::{BIO, Context, DISPLAY_NAME, check_text, named_user, unknown_path};
use crate::http::{ApiError, Method, Reply, Request};
use crate::message_store::Profile;
use crate::model::{Preview, UserId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    display_name: Option<String>,
    bio: Option<String>,
    /// What toasts may show: `full`, `subject` or `sender` (the caller's own choice).
    message_preview: Option<String>,
}

pub fn profile(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let me = ctx.require_user()?;
    if !req.path.is_empty() {
        return Err(unknown_path());
    }
    match req.method {
        Method::Get | Method::Head => {
            let id = match req.query_param("user") {
                None | Some("") => me.id,
                Some(name) => named_user(ctx, name)?.id,
            };
            let profile = load(ctx, id)?;
            let value = if id == me.id {
                own_profile_json(&profile)
            } else {
                let mut value = profile_json(&profile);
                // Posts are for the author's friends: nobody else learns even how many.
                if !ctx.store.are_friends(me.id, id)? {
                    value["posts"] = serde_json::Value::Null;
                }
                value
            };
            Ok(Reply::ok(json!({"profile": value})))
        }
        Method::Post => {
            let edit: Edit = req.json()?;
            if let Some(d) = &edit.display_name {
                check_text(d, &DISPLAY_NAME)?;
            }
            if let Some(b) = &edit.bio {
                check_text(b, &BIO)?;
            }
            let preview = match edit.message_preview.as_deref() {
                None => None,
                Some(p) => Some(Preview::parse(p).ok_or_else(|| {
                    ApiError::bad_request("bad_preview", "message_preview must be full, subject or sender")
                })?),
            };
            ctx.store.update_profile(
                me.id,
                edit.display_name.as_deref().map(str::trim),
                edit.bio.as_deref(),
                preview,
            )?;
            Ok(Reply::ok(json!({"profile": own_profile_json(&load(ctx, me.id)?)})))
        }
        _ => Err(ApiError::method_not_allowed("GET, HEAD, POST")),
    }
}

fn load(ctx: &Context<'_>, id: UserId) -> Result<Profile, ApiError> {
    ctx.store.profile(id)?.ok_or_else(|| ApiError::new(404, "user_not_found", "no such user"))
}

/// One's own profile also shows one's own settings.
fn own_profile_json(p: &Profile) -> serde_json::Value {
    let mut value = profile_json(p);
    value["message_preview"] = p.preview.as_str().into();
    value
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
