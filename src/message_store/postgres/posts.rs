//! Posts and comments on PostgreSQL (as `sqlite/posts.rs`), with the byte quota and the
//! limits counted in the insert's transaction.

use super::limits::take_limits_in;
use super::{PgStore, int, text};
use crate::message_store::sql::{self, pg};
use crate::message_store::{Comment, Limit, Post, Posts, Refusal, Result};
use crate::model::{PostId, UserId};
use crate::text::rfc3339;
use postgres::Row;

impl Posts for PgStore {
    fn feed(&self, user: UserId, before: Option<i64>, limit: usize) -> Result<Vec<Post>> {
        let (before, limit) = (before.unwrap_or(i64::MAX), limit as i64);
        Ok(self.query(pg!(sql::FEED), &[int(&user.0), int(&before), int(&limit)])?.iter().map(post_row).collect())
    }

    fn post(&self, id: PostId) -> Result<Option<Post>> {
        Ok(self.query_opt(pg!(sql::POST), &[int(&id.0)])?.map(|r| post_row(&r)))
    }

    fn comments(&self, post: PostId) -> Result<Vec<Comment>> {
        Ok(self.query(pg!(sql::COMMENTS), &[int(&post.0)])?.iter().map(comment_row).collect())
    }

    // Adds a post if `limits` and the author's byte `quota` allow it, counting both
    // in the insert's transaction (the author's `post_usage` row locked meanwhile).
    fn add_post_within(
        &self,
        author: UserId,
        body: &str,
        limits: &[Limit],
        quota: i64,
        now: i64,
    ) -> Result<Result<PostId, Refusal>> {
        self.admit(|tx| {
            if let Err(refusal) = admit_text(tx, author, body, limits, quota, now)? {
                return Ok(Err(refusal));
            }
            let row = tx.query_typed_one(pg!(sql::INSERT_POST), &[int(&author.0), text(&body), int(&now)])?;
            Ok(Ok(PostId(row.get(0))))
        })
    }

    fn add_comment_within(
        &self,
        post: PostId,
        author: UserId,
        body: &str,
        limits: &[Limit],
        quota: i64,
        now: i64,
    ) -> Result<Result<i64, Refusal>> {
        self.admit(|tx| {
            if let Err(refusal) = admit_text(tx, author, body, limits, quota, now)? {
                return Ok(Err(refusal));
            }
            let row =
                tx.query_typed_one(pg!(sql::INSERT_COMMENT), &[int(&post.0), int(&author.0), text(&body), int(&now)])?;
            Ok(Ok(row.get(0)))
        })
    }

    fn add_post(&self, author: UserId, body: &str, now: i64) -> Result<PostId> {
        let row = self.client()?.query_typed_one(pg!(sql::INSERT_POST), &[int(&author.0), text(&body), int(&now)])?;
        Ok(PostId(row.get(0)))
    }

    fn add_comment(&self, post: PostId, author: UserId, body: &str, now: i64) -> Result<Comment> {
        // One round trip: the insert and the author's name in one statement.
        let sql = "WITH c AS (INSERT INTO comments (post_id, author_id, body, created_at) VALUES ($1, $2, $3, $4)
                              RETURNING id, author_id, body, created_at)
                   SELECT c.id, u.name, c.body, c.created_at FROM c JOIN users u ON u.id = c.author_id";
        let row = self.client()?.query_typed_one(sql, &[int(&post.0), int(&author.0), text(&body), int(&now)])?;
        Ok(comment_row(&row))
    }
}

/// The byte quota and `limits` of a post or comment, counted in `tx`.
pub(super) fn admit_text(
    tx: &mut postgres::Transaction<'_>,
    author: UserId,
    body: &str,
    limits: &[Limit],
    quota: i64,
    now: i64,
) -> Result<Result<(), Refusal>> {
    // The author's row FOR KEY SHARE (what the foreign key takes anyway) first: a `user
    // remove` holding its FOR UPDATE is waited for, and the test after it sees its
    // commit (as `insert_message` does for a send); until commit, a removal waits.
    tx.query_typed("SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE", &[int(&author.0)])?;
    if !super::social::present(tx, &[author.0])? {
        return Ok(Err(Refusal::Removed));
    }
    tx.query_typed(
        "INSERT INTO post_usage (user_id, bytes) VALUES ($1, 0) ON CONFLICT (user_id) DO NOTHING",
        &[int(&author.0)],
    )?;
    let used: i64 =
        tx.query_typed_one("SELECT bytes FROM post_usage WHERE user_id = $1 FOR UPDATE", &[int(&author.0)])?.get(0);
    let bytes = body.len() as i64;
    if used + bytes > quota {
        return Ok(Err(Refusal::OverQuota));
    }
    if let Err(refusal) = take_limits_in(tx, limits, now)? {
        return Ok(Err(refusal));
    }
    tx.query_typed("UPDATE post_usage SET bytes = bytes + $2 WHERE user_id = $1", &[int(&author.0), int(&bytes)])?;
    Ok(Ok(()))
}

pub(super) fn post_row(r: &Row) -> Post {
    Post {
        id: PostId(r.get(0)),
        author: r.get(1),
        author_id: UserId(r.get(2)),
        body: r.get(3),
        created_at: rfc3339(r.get(4)),
        comments: r.get(5),
    }
}

pub(super) fn comment_row(r: &Row) -> Comment {
    Comment { id: r.get(0), author: r.get(1), body: r.get(2), created_at: rfc3339(r.get(3)) }
}
