//! Posts and their comments on SQLite, with the byte quota and the limits counted in
//! the insert's IMMEDIATE transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use super::SqliteStore;
use super::limits::take_limits_in;
use crate::message_store::sql;
use crate::message_store::{Comment, Limit, Post, Posts, Refusal, Result};
use crate::model::{PostId, UserId};
use crate::text::rfc3339;

impl Posts for SqliteStore {
    fn add_post_within(
        &self,
        author: UserId,
        body: &str,
        limits: &[Limit],
        quota: i64,
        now: i64,
    ) -> Result<Result<PostId, Refusal>> {
        let tx = self.immediate()?;
        if let Err(refusal) = admit_text(&tx, author, body, limits, quota, now)? {
            return Ok(Err(refusal));
        }
        let id = insert_post(&tx, author, body, now)?;
        tx.commit()?;
        Ok(Ok(id))
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
        let tx = self.immediate()?;
        if let Err(refusal) = admit_text(&tx, author, body, limits, quota, now)? {
            return Ok(Err(refusal));
        }
        let id = insert_comment(&tx, post, author, body, now)?;
        tx.commit()?;
        Ok(Ok(id))
    }

    fn feed(&self, user: UserId, before: Option<i64>, limit: usize) -> Result<Vec<Post>> {
        let mut stmt = self.conn()?.prepare_cached(sql::FEED)?;
        let rows = stmt.query_map(params![user.0, before.unwrap_or(i64::MAX), limit as i64], post_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn post(&self, id: PostId) -> Result<Option<Post>> {
        Ok(self.conn()?.prepare_cached(sql::POST)?.query_row([id.0], post_row).optional()?)
    }

    fn comments(&self, post: PostId) -> Result<Vec<Comment>> {
        let mut stmt = self.conn()?.prepare_cached(sql::COMMENTS)?;
        let rows = stmt.query_map([post.0], comment_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_post(&self, author: UserId, body: &str, now: i64) -> Result<PostId> {
        let tx = self.immediate()?;
        let id = insert_post(&tx, author, body, now)?;
        tx.commit()?;
        Ok(id)
    }

    fn add_comment(&self, post: PostId, author: UserId, body: &str, now: i64) -> Result<Comment> {
        let tx = self.immediate()?;
        let id = insert_comment(&tx, post, author, body, now)?;
        let comment = tx.prepare_cached(sql::COMMENT)?.query_row([id], comment_row)?;
        tx.commit()?;
        Ok(comment)
    }
}

fn insert_post(tx: &Transaction<'_>, author: UserId, body: &str, now: i64) -> Result<PostId> {
    Ok(PostId(tx.prepare_cached(sql::INSERT_POST)?.query_row(params![author.0, body, now], |r| r.get(0))?))
}

fn insert_comment(tx: &Transaction<'_>, post: PostId, author: UserId, body: &str, now: i64) -> Result<i64> {
    Ok(tx.prepare_cached(sql::INSERT_COMMENT)?.query_row(params![post.0, author.0, body, now], |r| r.get(0))?)
}

fn post_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Post> {
    Ok(Post {
        id: PostId(r.get(0)?),
        author: r.get(1)?,
        author_id: UserId(r.get(2)?),
        body: r.get(3)?,
        created_at: rfc3339(r.get(4)?),
        comments: r.get(5)?,
    })
}

fn comment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment { id: r.get(0)?, author: r.get(1)?, body: r.get(2)?, created_at: rfc3339(r.get(3)?) })
}

/// Counts a post or comment of `body` against `limits` and the author's quota.
fn admit_text(
    tx: &Transaction<'_>,
    author: UserId,
    body: &str,
    limits: &[Limit],
    quota: i64,
    now: i64,
) -> Result<Result<(), Refusal>> {
    if !super::social::present(tx, &[author])? {
        return Ok(Err(Refusal::Removed));
    }
    let used: i64 = tx
        .prepare_cached("SELECT bytes FROM post_usage WHERE user_id = ?1")?
        .query_row([author.0], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let bytes = body.len() as i64;
    if used + bytes > quota {
        return Ok(Err(Refusal::OverQuota));
    }
    if let Err(refusal) = take_limits_in(tx, limits, now)? {
        return Ok(Err(refusal));
    }
    tx.prepare_cached(
        "INSERT INTO post_usage (user_id, bytes) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET bytes = bytes + excluded.bytes",
    )?
    .execute(params![author.0, bytes])?;
    Ok(Ok(()))
}
