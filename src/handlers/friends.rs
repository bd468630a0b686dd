//! `friends`: friend lists and requests; requests and acceptances notify the other user.

use serde::Deserialize;
use serde_json::json;

use super::{Context, named_user, unknown_path};
use crate::http::{ApiError, Method, Reply, Request};
use crate::message_store::FriendRequestOutcome;
use crate::model::{MessageKind, NewMessage, User};
use crate::msq::new_request_id;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Action {
    action: String,
    user: String,
}

pub fn friends(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let me = ctx.require_user()?;
    if !req.path.is_empty() {
        return Err(unknown_path());
    }
    match req.method {
        Method::Get | Method::Head => lists(ctx, me, 200),
        Method::Post => {
            let action: Action = req.json()?;
            let other = named_user(ctx, &action.user)?;
            if other.id == me.id {
                return Err(ApiError::bad_request("self", "that is you"));
            }
            match action.action.as_str() {
                "request" => {
                    // Counted as a send even when it sends nothing (asked already):
                    // asking again and again is no way around the limit.
                    super::with_send_admitted(ctx, me.id, other.id, || {
                        match ctx.store.request_friend(me.id, other.id, ctx.now)? {
                            FriendRequestOutcome::Requested => tell(ctx, me, &other, MessageKind::FriendRequest),
                            FriendRequestOutcome::Accepted => tell(ctx, me, &other, MessageKind::FriendAccept),
                            FriendRequestOutcome::AlreadyRequested | FriendRequestOutcome::AlreadyFriends => Ok(()),
                            // One of the two was removed since the lookup: nothing was asked.
                            FriendRequestOutcome::Removed => Err(super::removed_user()),
                        }
                    })?;
                }
                "accept" => {
                    if !ctx.store.accept_friend(me.id, other.id, ctx.now)? {
                        return Err(ApiError::new(404, "no_request", format!("{} has not asked you", other.name)));
                    }
                    tell(ctx, me, &other, MessageKind::FriendAccept)?;
                }
                "decline" => {
                    if !ctx.store.decline_friend(me.id, other.id)? {
                        return Err(ApiError::new(404, "no_request", format!("{} has not asked you", other.name)));
                    }
                }
                "remove" => {
                    if !ctx.store.remove_friend(me.id, other.id)? {
                        return Err(ApiError::new(
                            404,
                            "not_friends",
                            format!("you and {} are not friends", other.name),
                        ));
                    }
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "bad_action",
                        "action must be request, accept, decline or remove",
                    ));
                }
            }
            lists(ctx, me, 200)
        }
        _ => Err(ApiError::method_not_allowed("GET, HEAD, POST")),
    }
}

/// Sends `other` the notice of a friend request or acceptance, through the queue.
fn tell(ctx: &Context<'_>, me: &User, other: &User, kind: MessageKind) -> Result<(), ApiError> {
    let (subject, body) = match kind {
        MessageKind::FriendRequest => (
            format!("{} wants to be your friend", me.name),
            format!(
                "{} ({}) asked to be your friend. Accept or decline on your friends page.",
                me.display_name, me.name
            ),
        ),
        _ => (
            format!("{} accepted your friend request", me.name),
            format!("{} ({}) and you are friends now.", me.display_name, me.name),
        ),
    };
    let message = NewMessage {
        request_id: new_request_id(),
        from: me.id,
        to: other.id,
        subject,
        body,
        kind,
        idempotency_key: None,
        sent_at: ctx.now,
    };
    super::send(ctx, message)?;
    Ok(())
}

fn lists(ctx: &Context<'_>, me: &User, status: u16) -> Result<Reply, ApiError> {
    let friends: Vec<_> = ctx
        .store
        .friends(me.id)?
        .into_iter()
        .map(|f| json!({"name": f.name, "display_name": f.display_name, "since": f.since}))
        .collect();
    Ok(Reply::with_status(
        status,
        json!({
            "friends": friends,
            "incoming": ctx.store.incoming_requests(me.id)?,
            "outgoing": ctx.store.outgoing_requests(me.id)?,
        }),
    ))
}
