//! Posts and their comments.

use rusqlite::{OptionalExtension, Transaction, params};

use super::limits::take_limits_in;
use super::{RFC3339, SqliteStore};
use crate::message_store::{Comment, Limit, Post, Posts, Refusal, Result};
use crate::model::{PostId, UserId};

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
        tx.prepare_cached("INSERT INTO posts (author_id, body, created_at) VALUES (?1, ?2, ?3)")?
            .execute(params![author.0, body, now])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(PostId(id)))
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
        tx.prepare_cached("INSERT INTO comments (post_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![post.0, author.0, body, now])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(id))
    }

    fn feed(&self, user: UserId, before: Option<i64>, limit: usize) -> Result<Vec<Post>> {
        let sql = format!(
            "SELECT p.id, u.name, p.author_id, p.body, strftime({RFC3339}, p.created_at, 'unixepoch'),
                    (SELECT count(*) FROM comments c WHERE c.post_id = p.id)
             FROM posts p JOIN users u ON u.id = p.author_id
             WHERE (p.author_id = ?1 OR p.author_id IN (SELECT friend_id FROM friendships WHERE user_id = ?1))
               AND p.id < ?2
             ORDER BY p.id DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![user.0, before.unwrap_or(i64::MAX), limit as i64], post_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn post(&self, id: PostId) -> Result<Option<Post>> {
        let sql = format!(
            "SELECT p.id, u.name, p.author_id, p.body, strftime({RFC3339}, p.created_at, 'unixepoch'),
                    (SELECT count(*) FROM comments c WHERE c.post_id = p.id)
             FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ?1"
        );
        Ok(self.conn.prepare_cached(&sql)?.query_row([id.0], post_row).optional()?)
    }

    fn comments(&self, post: PostId) -> Result<Vec<Comment>> {
        let sql = format!(
            "SELECT c.id, u.name, c.body, strftime({RFC3339}, c.created_at, 'unixepoch')
             FROM comments c JOIN users u ON u.id = c.author_id WHERE c.post_id = ?1 ORDER BY c.id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([post.0], comment_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_post(&self, author: UserId, body: &str, now: i64) -> Result<PostId> {
        let tx = self.immediate()?;
        tx.prepare_cached("INSERT INTO posts (author_id, body, created_at) VALUES (?1, ?2, ?3)")?
            .execute(params![author.0, body, now])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(PostId(id))
    }

    fn add_comment(&self, post: PostId, author: UserId, body: &str, now: i64) -> Result<Comment> {
        let tx = self.immediate()?;
        tx.prepare_cached("INSERT INTO comments (post_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![post.0, author.0, body, now])?;
        let id = tx.last_insert_rowid();
        let sql = format!(
            "SELECT c.id, u.name, c.body, strftime({RFC3339}, c.created_at, 'unixepoch')
             FROM comments c JOIN users u ON u.id = c.author_id WHERE c.id = ?1"
        );
        let comment = tx.prepare_cached(&sql)?.query_row([id], comment_row)?;
        tx.commit()?;
        Ok(comment)
    }
}

fn post_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Post> {
    Ok(Post {
        id: PostId(r.get(0)?),
        author: r.get(1)?,
        author_id: UserId(r.get(2)?),
        body: r.get(3)?,
        created_at: r.get(4)?,
        comments: r.get(5)?,
    })
}

fn comment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment { id: r.get(0)?, author: r.get(1)?, body: r.get(2)?, created_at: r.get(3)? })
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
