//! Friendships and friend requests on PostgreSQL (as `sqlite/social.rs`), with the
//! pair lock that decides two users' requests one at a time.

use super::{PgStore, int};
use crate::message_store::{Friend, FriendRequestOutcome, Result, Social};
use crate::model::UserId;

impl Social for PgStore {
    fn friends(&self, user: UserId) -> Result<Vec<Friend>> {
        let sql = concat!(
            "SELECT u.name, u.display_name, ",
            rfc3339!("f.since"),
            " FROM friendships f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = $1 ORDER BY u.name COLLATE \"C\""
        );
        Ok(self
            .query(sql, &[int(&user.0)])?
            .iter()
            .map(|r| Friend { name: r.get(0), display_name: r.get(1), since: r.get(2) })
            .collect())
    }

    fn incoming_requests(&self, user: UserId) -> Result<Vec<String>> {
        names(
            self,
            "SELECT u.name FROM friend_requests r JOIN users u ON u.id = r.from_id WHERE r.to_id = $1
             ORDER BY u.name COLLATE \"C\"",
            user,
        )
    }

    fn outgoing_requests(&self, user: UserId) -> Result<Vec<String>> {
        names(
            self,
            "SELECT u.name FROM friend_requests r JOIN users u ON u.id = r.to_id WHERE r.from_id = $1
             ORDER BY u.name COLLATE \"C\"",
            user,
        )
    }

    fn are_friends(&self, a: UserId, b: UserId) -> Result<bool> {
        Ok(self
            .query_opt("SELECT 1 FROM friendships WHERE user_id = $1 AND friend_id = $2", &[int(&a.0), int(&b.0)])?
            .is_some())
    }

    fn request_friend(&self, from: UserId, to: UserId, now: i64) -> Result<FriendRequestOutcome> {
        self.write(|tx| {
            // Both users' requests to each other are decided one at a time.
            lock_pair(tx, from, to)?;
            let mut exists = |sql: &str, a: UserId, b: UserId| -> Result<bool> {
                Ok(tx.query_typed_opt(sql, &[int(&a.0), int(&b.0)])?.is_some())
            };
            Ok(if exists("SELECT 1 FROM friendships WHERE user_id = $1 AND friend_id = $2", from, to)? {
                FriendRequestOutcome::AlreadyFriends
            } else if exists("SELECT 1 FROM friend_requests WHERE from_id = $1 AND to_id = $2", from, to)? {
                FriendRequestOutcome::AlreadyRequested
            } else if exists("SELECT 1 FROM friend_requests WHERE from_id = $1 AND to_id = $2", to, from)? {
                befriend(tx, from, to, now)?;
                FriendRequestOutcome::Accepted
            } else {
                tx.query_typed(
                    "INSERT INTO friend_requests (from_id, to_id, created_at) VALUES ($1, $2, $3)",
                    &[int(&from.0), int(&to.0), int(&now)],
                )?;
                FriendRequestOutcome::Requested
            })
        })
    }

    fn accept_friend(&self, user: UserId, from: UserId, now: i64) -> Result<bool> {
        self.write(|tx| {
            lock_pair(tx, user, from)?;
            let had = tx
                .query_typed_opt(
                    "SELECT 1 FROM friend_requests WHERE from_id = $1 AND to_id = $2",
                    &[int(&from.0), int(&user.0)],
                )?
                .is_some();
            if had {
                befriend(tx, user, from, now)?;
            }
            Ok(had)
        })
    }

    fn decline_friend(&self, user: UserId, from: UserId) -> Result<bool> {
        Ok(self.client()?.execute_typed(
            "DELETE FROM friend_requests WHERE from_id = $1 AND to_id = $2",
            &[int(&from.0), int(&user.0)],
        )? > 0)
    }

    fn remove_friend(&self, user: UserId, other: UserId) -> Result<bool> {
        self.write(|tx| {
            lock_pair(tx, user, other)?;
            let n = tx.execute_typed(
                "DELETE FROM friendships WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
                &[int(&user.0), int(&other.0)],
            )? + tx.execute_typed(
                "DELETE FROM friend_requests WHERE from_id = $1 AND to_id = $2",
                &[int(&user.0), int(&other.0)],
            )?;
            Ok(n > 0)
        })
    }
}

/// Locks the two users' rows in id order: friend requests between them are decided
/// one at a time (SQLite has one writer; here two hosts could both ask first).
pub(super) fn lock_pair(tx: &mut postgres::Transaction<'_>, a: UserId, b: UserId) -> Result<()> {
    let (low, high) = if a.0 <= b.0 { (a.0, b.0) } else { (b.0, a.0) };
    tx.query_typed("SELECT 1 FROM users WHERE id IN ($1, $2) ORDER BY id FOR NO KEY UPDATE", &[int(&low), int(&high)])?;
    Ok(())
}

pub(super) fn befriend(tx: &mut postgres::Transaction<'_>, a: UserId, b: UserId, now: i64) -> Result<()> {
    for (x, y) in [(a, b), (b, a)] {
        tx.query_typed(
            "INSERT INTO friendships (user_id, friend_id, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[int(&x.0), int(&y.0), int(&now)],
        )?;
    }
    tx.query_typed(
        "DELETE FROM friend_requests WHERE (from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)",
        &[int(&a.0), int(&b.0)],
    )?;
    Ok(())
}

fn names(store: &PgStore, sql: &str, user: UserId) -> Result<Vec<String>> {
    Ok(store.query(sql, &[int(&user.0)])?.iter().map(|r| r.get(0)).collect())
}
