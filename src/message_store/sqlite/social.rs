//! The social graph: friendships (one row per direction) and friend requests.

use rusqlite::{Transaction, params};

use super::{RFC3339, SqliteStore};
use crate::message_store::{Friend, FriendRequestOutcome, Result, Social};
use crate::model::UserId;

impl Social for SqliteStore {
    fn friends(&self, user: UserId) -> Result<Vec<Friend>> {
        let sql = format!(
            "SELECT u.name, u.display_name, strftime({RFC3339}, f.since, 'unixepoch')
             FROM friendships f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = ?1 ORDER BY u.name"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows =
            stmt.query_map([user.0], |r| Ok(Friend { name: r.get(0)?, display_name: r.get(1)?, since: r.get(2)? }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn incoming_requests(&self, user: UserId) -> Result<Vec<String>> {
        names(
            &self.conn,
            "SELECT u.name FROM friend_requests r JOIN users u ON u.id = r.from_id WHERE r.to_id = ?1 ORDER BY u.name",
            user,
        )
    }

    fn outgoing_requests(&self, user: UserId) -> Result<Vec<String>> {
        names(
            &self.conn,
            "SELECT u.name FROM friend_requests r JOIN users u ON u.id = r.to_id WHERE r.from_id = ?1 ORDER BY u.name",
            user,
        )
    }

    fn are_friends(&self, a: UserId, b: UserId) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = ?2")?
            .exists(params![a.0, b.0])?)
    }

    fn request_friend(&self, from: UserId, to: UserId, now: i64) -> Result<FriendRequestOutcome> {
        let tx = self.immediate()?;
        let exists = |sql: &str, a: UserId, b: UserId| -> Result<bool> {
            Ok(tx.prepare_cached(sql)?.exists(params![a.0, b.0])?)
        };
        let outcome = if exists("SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = ?2", from, to)? {
            FriendRequestOutcome::AlreadyFriends
        } else if exists("SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2", from, to)? {
            FriendRequestOutcome::AlreadyRequested
        } else if exists("SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2", to, from)? {
            befriend(&tx, from, to, now)?;
            FriendRequestOutcome::Accepted
        } else {
            tx.prepare_cached("INSERT INTO friend_requests (from_id, to_id, created_at) VALUES (?1, ?2, ?3)")?
                .execute(params![from.0, to.0, now])?;
            FriendRequestOutcome::Requested
        };
        tx.commit()?;
        Ok(outcome)
    }

    fn accept_friend(&self, user: UserId, from: UserId, now: i64) -> Result<bool> {
        let tx = self.immediate()?;
        let had = tx
            .prepare_cached("SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2")?
            .exists(params![from.0, user.0])?;
        if had {
            befriend(&tx, user, from, now)?;
        }
        tx.commit()?;
        Ok(had)
    }

    fn decline_friend(&self, user: UserId, from: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx
            .prepare_cached("DELETE FROM friend_requests WHERE from_id = ?1 AND to_id = ?2")?
            .execute(params![from.0, user.0])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn remove_friend(&self, user: UserId, other: UserId) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx
            .prepare_cached(
                "DELETE FROM friendships WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)",
            )?
            .execute(params![user.0, other.0])?
            + tx.prepare_cached("DELETE FROM friend_requests WHERE from_id = ?1 AND to_id = ?2")?
                .execute(params![user.0, other.0])?;
        tx.commit()?;
        Ok(n > 0)
    }
}

fn befriend(tx: &Transaction<'_>, a: UserId, b: UserId, now: i64) -> Result<()> {
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO friendships (user_id, friend_id, since) VALUES (?1, ?2, ?3)")?;
    insert.execute(params![a.0, b.0, now])?;
    insert.execute(params![b.0, a.0, now])?;
    tx.prepare_cached(
        "DELETE FROM friend_requests WHERE (from_id = ?1 AND to_id = ?2) OR (from_id = ?2 AND to_id = ?1)",
    )?
    .execute(params![a.0, b.0])?;
    Ok(())
}

fn names(conn: &rusqlite::Connection, sql: &str, user: UserId) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([user.0], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
