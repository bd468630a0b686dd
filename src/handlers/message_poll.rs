//! `GET messages/status`: the idle page's cheap question "anything for me?".
//!
//! It answers `{}`, and the gateway attaches `site_messages` as to any answer. Its
//! `ETag` names the state of the caller's mailbox row that an answer depends on: the
//! counters and the last announcement batch. Every arrival raises `new`, which only an
//! announcement lowers, and every announcement raises `batch`; reading or deleting
//! changes `delivered`. So a client whose `If-None-Match` still names the state, while
//! nothing is new and no announcement is due again, gets `304` with no body, and
//! nothing is flipped or written. A request that does not show it came from a page's
//! script (`csrf::from_page_script`: a link from another site on plain http) reports
//! counts and flips nothing.

use serde_json::json;

use super::Context;
use crate::csrf;
use crate::http::{ApiError, Reply, Request};
use crate::message_store::{CLAIM_BATCH, Counters, Mailbox};
use crate::model::UserId;

pub fn status(ctx: &Context<'_>, req: &Request) -> Result<Reply, ApiError> {
    let me = ctx.require_user()?;
    // A message sent a moment ago by another process must count as new here, before
    // the decision; the gateway's own drain comes after the handler. A failure only
    // delays those messages, and the gateway's drain logs it.
    let _ = ctx.queue.drain_for_request(ctx.now);
    let mailbox = ctx.store.mailbox(me.id)?;
    // The client's acknowledgement, as the announcement would record it.
    let acked = req.meta.ack.as_ref().map_or(mailbox.acked, |ack| ack.watermark(mailbox.acked, mailbox.batch));
    let again =
        req.meta.ack.is_some() && Mailbox { acked, ..mailbox }.unacknowledged_since(ctx.now, ctx.config.ack_lease_secs);
    // A link or a typed address (another site's, on plain http, leaves no trace) reports
    // counts and announces nothing: only the page's script shows what it announces.
    let scripted = csrf::from_page_script(&req.meta);
    let announces = scripted && (mailbox.counters.new > 0 || again);
    let poll = ctx.config.poll_interval_secs.to_string();
    let current = etag(me.id, mailbox.counters, mailbox.batch);
    if !announces && req.meta.if_none_match.as_deref().is_some_and(|tags| matches(tags, &current)) {
        return Ok(Reply::with_status(304, json!({})).header("ETag", current).header("X-Poll-Interval", poll));
    }
    // The tag of the state this answer leaves behind: what it announces is delivered,
    // in the next batch. (Should another request change the row meanwhile, the next
    // check answers 200 once more, which is all a wrong guess costs.)
    let after = if announces {
        let c = mailbox.counters;
        // A claim flips a bounded batch: the rest stays new.
        let flipped = c.new.min(ctx.config.max_items.max(CLAIM_BATCH) as i64);
        etag(me.id, Counters { new: c.new - flipped, delivered: c.delivered + flipped }, mailbox.batch + 1)
    } else {
        current
    };
    let mut reply = Reply::ok(json!({})).header("ETag", after).header("X-Poll-Interval", poll);
    reply.counts_only = !scripted;
    Ok(reply)
}

fn etag(user: UserId, c: Counters, batch: i64) -> String {
    format!("\"pb1.{}.{}.{}.{}\"", user.0, c.delivered, c.new, batch)
}

/// Whether an `If-None-Match` list names `tag` (weak comparison, RFC 9110 13.1.2).
fn matches(list: &str, tag: &str) -> bool {
    list.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let tag = "\"pb1.1.2.0.3\"";
        assert!(matches(tag, tag));
        assert!(matches("\"x\", W/\"pb1.1.2.0.3\"", tag));
        assert!(matches("*", tag));
        assert!(!matches("\"pb1.1.2.0.4\"", tag));
        assert!(!matches("pb1.1.2.0.3", tag), "an unquoted value is not the tag");
    }
}
