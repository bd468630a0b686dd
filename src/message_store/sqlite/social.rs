//! The social graph: friendships (one row per direction) and friend requests.

use rusqlite::{OptionalExtension, Transaction, params};

use super::SqliteStore;
use crate::message_store::sql;
use crate::message_store::{Friend, FriendRequestOutcome, Result, Social};
use crate::model::UserId;
use crate::text::rfc3339;

impl Social for SqliteStore {
    fn friends(&self, user: UserId) -> Result<Vec<Friend>> {
        // Names in byte order: SQLite's BINARY collation.
        let mut stmt = self.conn()?.prepare_cached(
            "SELECT u.name, u.display_name, f.since FROM friendships f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = ?1 ORDER BY u.name",
        )?;
        let rows = stmt.query_map([user.0], |r| {
            Ok(Friend { name: r.get(0)?, display_name: r.get(1)?, since: rfc3339(r.get(2)?) })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn incoming_requests(&self, user: UserId) -> Result<Vec<String>> {
        names(
            self.conn()?,
            "SELECT u.name FROM friend_requests r JOIN users u ON u.id = r.from_id WHERE r.to_id = ?1 ORDER BY u.name",
            user,
        )
    }

    fn outgoing_requests(&self, user: UserId) -> Result<Vec<String>> {
        names(
            self.conn()?,
            "SELECT u.name FROM friend_requests r JOIN users u ON u.id = r.to_id WHERE r.from_id = ?1 ORDER BY u.name",
            user,
        )
    }

    fn are_friends(&self, a: UserId, b: UserId) -> Result<bool> {
        Ok(self.conn()?.prepare_cached(sql::ARE_FRIENDS)?.exists(params![a.0, b.0])?)
    }

    fn request_friend(&self, from: UserId, to: UserId, now: i64) -> Result<FriendRequestOutcome> {
        let tx = self.immediate()?;
        // Inside the write transaction: a removal committed before it is seen here.
        if !present(&tx, &[from, to])? {
            return Ok(FriendRequestOutcome::Removed);
        }
        let exists = |sql: &str, a: UserId, b: UserId| -> Result<bool> {
            Ok(tx.prepare_cached(sql)?.exists(params![a.0, b.0])?)
        };
        let outcome = if exists(sql::ARE_FRIENDS, from, to)? {
            FriendRequestOutcome::AlreadyFriends
        } else if exists(sql::REQUESTED, from, to)? {
            FriendRequestOutcome::AlreadyRequested
        } else if exists(sql::REQUESTED, to, from)? {
            befriend(&tx, from, to, now)?;
            FriendRequestOutcome::Accepted
        } else {
            tx.prepare_cached(sql::INSERT_REQUEST)?.execute(params![from.0, to.0, now])?;
            FriendRequestOutcome::Requested
        };
        tx.commit()?;
        Ok(outcome)
    }

    fn accept_friend(&self, user: UserId, from: UserId, now: i64) -> Result<bool> {
        let tx = self.immediate()?;
        if !present(&tx, &[user, from])? {
            return Ok(false);
        }
        let had = tx.prepare_cached(sql::REQUESTED)?.exists(params![from.0, user.0])?;
        if had {
            befriend(&tx, user, from, now)?;
        }
        tx.commit()?;
        Ok(had)
    }

    fn decline_friend(&self, user: UserId, from: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx.prepare_cached(sql::DELETE_REQUEST)?.execute(params![from.0, user.0])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn remove_friend(&self, user: UserId, other: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx.prepare_cached(sql::DELETE_FRIENDSHIP)?.execute(params![user.0, other.0])?
            + tx.prepare_cached(sql::DELETE_REQUEST)?.execute(params![user.0, other.0])?;
        tx.commit()?;
        Ok(n > 0)
    }
}

/// Are all of `users` present (none removed)? Asked inside the write transaction that
/// acts for them: SQLite has one writer, so a removal either committed before (seen
/// here) or waits for this transaction (and then removes what it made).
pub(super) fn present(tx: &Transaction<'_>, users: &[UserId]) -> Result<bool> {
    let mut stmt = tx.prepare_cached("SELECT removed_at IS NULL FROM users WHERE id = ?1")?;
    for user in users {
        if !stmt.query_row([user.0], |r| r.get::<_, bool>(0)).optional()?.unwrap_or(false) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn befriend(tx: &Transaction<'_>, a: UserId, b: UserId, now: i64) -> Result<()> {
    let mut insert = tx.prepare_cached(sql::INSERT_FRIENDSHIP)?;
    insert.execute(params![a.0, b.0, now])?;
    insert.execute(params![b.0, a.0, now])?;
    tx.prepare_cached(sql::DELETE_BOTH_REQUESTS)?.execute(params![a.0, b.0])?;
    Ok(())
}

fn names(conn: &rusqlite::Connection, sql: &str, user: UserId) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([user.0], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
