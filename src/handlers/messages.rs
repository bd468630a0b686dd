//! `messages`: the in-site mailbox. A user only ever sees and changes their own:
//! another user's message id answers 404, exactly as one that does not exist.

use serde::Deserialize;
use serde_json::{Value, json};

use super::posts::next_id;
use super::{
    Context, MAX_IDEMPOTENCY_KEY_BYTES, MESSAGE_BODY, SUBJECT, before_param, check_text, named_user, page_limit,
    path_id, unknown_path, with_send_admitted,
};
use crate::http::{ApiError, Method, Reply, Request};
use crate::message_status::prefix_chars;
use crate::message_store::StateFilter;
use crate::model::{Change, MessageId, MessageKind, NewMessage};
use crate::msq::{SendOutcome, new_request_id};
use crate::text;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Compose {
    to: String,
    subject: String,
    body: String,
    idempotency_key: Option<String>,
}

pub fn messages(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let me = ctx.require_user()?;
    match (req.path_segments().as_slice(), req.method) {
        ([], Method::Get | Method::Head) => {
            let filter = match req.query_param("state") {
                None | Some("") => StateFilter::All,
                Some(s) => StateFilter::parse(s).ok_or_else(|| {
                    ApiError::bad_request("bad_state", "state must be all, unread, new, delivered or read")
                })?,
            };
            let limit = page_limit(req, 20)?;
            let chars = ctx.config.snippet_chars;
            let mut rows =
                ctx.store.list_messages(me.id, filter, before_param(req)?, limit + 1, prefix_chars(chars))?;
            let next = next_id(&mut rows, limit, |m| m.id.0);
            let messages: Vec<Value> = rows
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id.0,
                        "from": m.from,
                        "subject": m.subject,
                        "snippet": text::snippet_of_prefix(&m.body_prefix, m.body_truncated, chars),
                        "sent_at": m.sent_at,
                        "state": m.state.as_str(),
                        "kind": m.kind.as_str(),
                    })
                })
                .collect();
            Ok(Reply::ok(json!({"messages": messages, "next": next})))
        }
        ([], Method::Post) => compose(ctx, req),
        ([], _) => Err(ApiError::method_not_allowed("GET, HEAD, POST")),
        (["read-all"], Method::Post) => {
            req.ensure_acceptable_body()?;
            let n = ctx.store.mark_all_read(me.id)?;
            Ok(Reply::ok(json!({"marked_read": n})))
        }
        (["read-all"], _) => Err(ApiError::method_not_allowed("POST")),
        (["status"], Method::Get | Method::Head) => super::message_poll::status(ctx, req),
        (["status"], _) => Err(ApiError::method_not_allowed("GET, HEAD")),
        ([id], Method::Get | Method::Head) => {
            let id = MessageId(path_id(id, "message")?);
            let m = ctx.store.message(me.id, id)?.ok_or_else(|| ApiError::not_found("message"))?;
            Ok(Reply::ok(json!({"message": {
                "id": m.id.0, "from": m.from, "to": m.to, "subject": m.subject, "body": m.body,
                "sent_at": m.sent_at, "state": m.state.as_str(), "kind": m.kind.as_str(),
            }})))
        }
        ([id], Method::Delete) => change(ctx, req, id, Change::Delete),
        ([_], _) => Err(ApiError::method_not_allowed("GET, HEAD, DELETE")),
        ([id, "read"], Method::Post) => change(ctx, req, id, Change::MarkRead),
        ([id, "delete"], Method::Post) => change(ctx, req, id, Change::Delete),
        ([_, "read" | "delete"], _) => Err(ApiError::method_not_allowed("POST")),
        _ => Err(unknown_path()),
    }
}

fn change(ctx: &Context<'_>, req: &Request, id: &str, change: Change) -> Result<Reply, ApiError> {
    let me = ctx.require_user()?;
    let id = MessageId(path_id(id, "message")?);
    req.ensure_acceptable_body()?;
    if !ctx.store.change(me.id, id, change)? {
        return Err(ApiError::not_found("message"));
    }
    Ok(Reply::ok(json!({"message": {"id": id.0, "state": change.target().as_str()}})))
}

fn compose(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let me = ctx.require_user()?;
    let compose: Compose = req.json()?;
    check_text(&compose.subject, &SUBJECT)?;
    check_text(&compose.body, &MESSAGE_BODY)?;
    if let Some(key) = &compose.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES)
    {
        return Err(ApiError::bad_request(
            "bad_idempotency_key",
            format!("idempotency_key must have 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
        ));
    }
    let to = named_user(ctx, &compose.to)?;
    // A retry of a send already stored is answered, not counted again; the same key
    // for another recipient is a mistake the caller must hear of, not a silent no-op.
    let retry = match &compose.idempotency_key {
        Some(key) => match ctx.store.keyed_message(me.id, key)? {
            Some((_, recipient)) if recipient != to.id => {
                return Err(ApiError::new(
                    409,
                    "idempotency_key_reused",
                    "this idempotency_key was already used for a message to another recipient",
                ));
            }
            Some(_) => true,
            None => false,
        },
        None => false,
    };
    let send = || {
        let outcome = super::send(
            ctx,
            NewMessage {
                request_id: new_request_id(),
                from: me.id,
                to: to.id,
                subject: compose.subject.trim().to_string(),
                body: compose.body,
                kind: MessageKind::Note,
                idempotency_key: compose.idempotency_key,
                sent_at: ctx.now,
            },
        )?;
        Ok(match outcome {
            SendOutcome::Stored { request_id, message } => Reply::created(json!({"sent": {
                "request_id": request_id, "message_id": message.0, "to": to.name, "state": "stored",
            }})),
            SendOutcome::Queued { request_id } => Reply::with_status(
                202,
                json!({"sent": {"request_id": request_id, "message_id": null, "to": to.name, "state": "queued"}}),
            ),
            // The recipient was removed between the lookup and the store.
            SendOutcome::Dropped { .. } => return Err(ApiError::new(404, "user_not_found", "no such user")),
        })
    };
    // A retry of a stored send counted when it was first sent.
    if retry { send() } else { with_send_admitted(ctx, me.id, to.id, send) }
}
