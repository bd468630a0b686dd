//! `posts`: the caller's and friends' posts, and comments; a comment notifies the
//! post's author. A post is visible to its author and the author's friends only.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Context, POST_BODY, before_param, check_text, page_limit, path_id, refused, send, unknown_path};
use crate::http::{ApiError, Method, Reply, Request};
use crate::message_store::{Comment, Limit, Post};
use crate::model::{MessageKind, NewMessage, PostId, User};
use crate::msq::new_request_id;
use crate::text;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewText {
    body: String,
}

pub fn posts(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let me = ctx.require_user()?;
    match (req.path_segments().as_slice(), req.method) {
        ([], Method::Get | Method::Head) => {
            let limit = page_limit(req, 20)?;
            let mut posts = ctx.store.feed(me.id, before_param(req)?, limit + 1)?;
            let next = next_id(&mut posts, limit, |p| p.id.0);
            let posts: Vec<Value> = posts.iter().map(post_json).collect();
            Ok(Reply::ok(json!({"posts": posts, "next": next})))
        }
        ([], Method::Post) => {
            let new: NewText = req.json()?;
            check_text(&new.body, &POST_BODY)?;
            let limits = [post_limit(ctx, me)];
            let quota = ctx.config.post_quota_bytes;
            let id = ctx
                .store
                .add_post_within(me.id, &new.body, &limits, quota, ctx.now)?
                .map_err(|r| refused(r, "posts"))?;
            let post = ctx.store.post(id)?.ok_or_else(|| ApiError::internal("the new post vanished"))?;
            Ok(Reply::created(json!({"post": post_json(&post)})))
        }
        ([], _) => Err(ApiError::method_not_allowed("GET, HEAD, POST")),
        ([id], Method::Get | Method::Head) => {
            let post = visible_post(ctx, me, path_id(id, "post")?)?;
            let comments: Vec<Value> = ctx.store.comments(post.id)?.iter().map(comment_json).collect();
            let mut value = post_json(&post);
            value["comment_list"] = Value::Array(comments);
            Ok(Reply::ok(json!({"post": value})))
        }
        ([_], _) => Err(ApiError::method_not_allowed("GET, HEAD")),
        ([id, "comments"], Method::Post) => {
            let post = visible_post(ctx, me, path_id(id, "post")?)?;
            let new: NewText = req.json()?;
            check_text(&new.body, &POST_BODY)?;
            // The comment counts in the transaction that adds it; the notice it sends,
            // as every send, before (`with_send_admitted`), given back if it fails.
            let limits = [post_limit(ctx, me)];
            let quota = ctx.config.post_quota_bytes;
            let comment = || {
                let id = ctx
                    .store
                    .add_comment_within(post.id, me.id, &new.body, &limits, quota, ctx.now)?
                    .map_err(|r| refused(r, "comments"))?;
                let comment = ctx
                    .store
                    .comments(post.id)?
                    .into_iter()
                    .find(|c| c.id == id)
                    .ok_or_else(|| ApiError::internal("the new comment vanished"))?;
                if post.author_id != me.id {
                    send(
                        ctx,
                        NewMessage {
                            request_id: new_request_id(),
                            from: me.id,
                            to: post.author_id,
                            subject: format!("{} commented on your post", me.name),
                            body: text::snippet(&new.body, 200),
                            kind: MessageKind::Comment,
                            // No key: keys share one namespace per sender with the keys of
                            // the sender's own notes, so a note keyed `comment:N` would
                            // swallow this notice. Each comment notifies once anyway.
                            idempotency_key: None,
                            sent_at: ctx.now,
                        },
                    )?;
                }
                Ok(comment)
            };
            let comment = if post.author_id != me.id {
                super::with_send_admitted(ctx, me.id, post.author_id, comment)?
            } else {
                comment()?
            };
            Ok(Reply::created(json!({"comment": comment_json(&comment)})))
        }
        ([_, "comments"], _) => Err(ApiError::method_not_allowed("POST")),
        _ => Err(unknown_path()),
    }
}

/// `PIGGYBACK_POST_RATE`: posts and comments of one user per minute.
fn post_limit(ctx: &Context<'_>, me: &User) -> Limit {
    Limit::new(format!("post:{}", me.id.0), ctx.config.post_rate_per_minute, 60)
}

/// The post if `me` may see it; another's private post answers as one that does not exist.
fn visible_post(ctx: &Context<'_>, me: &User, id: i64) -> Result<Post, ApiError> {
    let post = ctx.store.post(PostId(id))?.ok_or_else(|| ApiError::not_found("post"))?;
    if post.author_id == me.id || ctx.store.are_friends(me.id, post.author_id)? {
        Ok(post)
    } else {
        Err(ApiError::not_found("post"))
    }
}

/// Cuts a page fetched with one row extra and says where the next page starts.
pub(super) fn next_id<T>(rows: &mut Vec<T>, limit: usize, id: impl Fn(&T) -> i64) -> Option<i64> {
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(id)
    } else {
        None
    }
}

fn post_json(p: &Post) -> Value {
    json!({"id": p.id.0, "author": p.author, "body": p.body, "created_at": p.created_at, "comments": p.comments})
}

fn comment_json(c: &Comment) -> Value {
    json!({"id": c.id, "author": c.author, "body": c.body, "created_at": c.created_at})
}
