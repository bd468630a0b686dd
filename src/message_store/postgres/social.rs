//! Friendships and friend requests on PostgreSQL (as `sqlite/social.rs`), with the
//! pair lock that decides two users' requests one at a time.

use super::{PgStore, int};
use crate::message_store::sql::{self, pg};
use crate::message_store::{Friend, FriendRequestOutcome, Result, Social};
use crate::model::UserId;
use crate::text::rfc3339;

impl Social for PgStore {
    fn friends(&self, user: UserId) -> Result<Vec<Friend>> {
        // Names in byte order, as SQLite's BINARY collation, whatever the database's.
        let sql = "SELECT u.name, u.display_name, f.since FROM friendships f JOIN users u ON u.id = f.friend_id
                   WHERE f.user_id = $1 ORDER BY u.name COLLATE \"C\"";
        Ok(self
            .query(sql, &[int(&user.0)])?
            .iter()
            .map(|r| Friend { name: r.get(0), display_name: r.get(1), since: rfc3339(r.get(2)) })
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
        Ok(self.query_opt(pg!(sql::ARE_FRIENDS), &[int(&a.0), int(&b.0)])?.is_some())
    }

    fn request_friend(&self, from: UserId, to: UserId, now: i64) -> Result<FriendRequestOutcome> {
        self.write(|tx| {
            // Both users' requests to each other are decided one at a time.
            if !lock_pair(tx, from, to)? {
                return Ok(FriendRequestOutcome::Removed);
            }
            let mut exists = |sql: &str, a: UserId, b: UserId| -> Result<bool> {
                Ok(tx.query_typed_opt(sql, &[int(&a.0), int(&b.0)])?.is_some())
            };
            Ok(if exists(pg!(sql::ARE_FRIENDS), from, to)? {
                FriendRequestOutcome::AlreadyFriends
            } else if exists(pg!(sql::REQUESTED), from, to)? {
                FriendRequestOutcome::AlreadyRequested
            } else if exists(pg!(sql::REQUESTED), to, from)? {
                befriend(tx, from, to, now)?;
                FriendRequestOutcome::Accepted
            } else {
                tx.query_typed(pg!(sql::INSERT_REQUEST), &[int(&from.0), int(&to.0), int(&now)])?;
                FriendRequestOutcome::Requested
            })
        })
    }

    fn accept_friend(&self, user: UserId, from: UserId, now: i64) -> Result<bool> {
        self.write(|tx| {
            if !lock_pair(tx, user, from)? {
                return Ok(false);
            }
            let had = tx.query_typed_opt(pg!(sql::REQUESTED), &[int(&from.0), int(&user.0)])?.is_some();
            if had {
                befriend(tx, user, from, now)?;
            }
            Ok(had)
        })
    }

    fn decline_friend(&self, user: UserId, from: UserId) -> Result<bool> {
        Ok(self.client()?.execute_typed(pg!(sql::DELETE_REQUEST), &[int(&from.0), int(&user.0)])? > 0)
    }

    fn remove_friend(&self, user: UserId, other: UserId) -> Result<bool> {
        self.write(|tx| {
            lock_pair(tx, user, other)?;
            let n = tx.execute_typed(pg!(sql::DELETE_FRIENDSHIP), &[int(&user.0), int(&other.0)])?
                + tx.execute_typed(pg!(sql::DELETE_REQUEST), &[int(&user.0), int(&other.0)])?;
            Ok(n > 0)
        })
    }
}

/// Locks the two users' rows in id order: friend requests between them are decided
/// one at a time (SQLite has one writer; here two hosts could both ask first). Then
/// whether both are still present: false when one was removed. The lock conflicts
/// with the FOR UPDATE a `user remove` takes first, so a removal under way is waited
/// for, and the test after it, a new statement with a new snapshot under READ
/// COMMITTED, sees its commit (as `insert_message` does for a send). Until commit, a
/// removal waits for this transaction instead, and then deletes what it made.
pub(super) fn lock_pair(tx: &mut postgres::Transaction<'_>, a: UserId, b: UserId) -> Result<bool> {
    let (low, high) = if a.0 <= b.0 { (a.0, b.0) } else { (b.0, a.0) };
    tx.query_typed("SELECT 1 FROM users WHERE id IN ($1, $2) ORDER BY id FOR NO KEY UPDATE", &[int(&low), int(&high)])?;
    present(tx, &[low, high])
}

/// Are all of `users` present (none removed), as of this statement? Ask it after a
/// lock that a removal's FOR UPDATE conflicts with.
pub(super) fn present(tx: &mut postgres::Transaction<'_>, users: &[i64]) -> Result<bool> {
    let ids: Vec<i64> = users.to_vec();
    let found: i64 = tx
        .query_typed_one(
            "SELECT count(*) FROM users WHERE id = ANY($1) AND removed_at IS NULL",
            &[(&ids, postgres::types::Type::INT8_ARRAY)],
        )?
        .get(0);
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    Ok(found == distinct.len() as i64)
}

pub(super) fn befriend(tx: &mut postgres::Transaction<'_>, a: UserId, b: UserId, now: i64) -> Result<()> {
    for (x, y) in [(a, b), (b, a)] {
        tx.query_typed(pg!(sql::INSERT_FRIENDSHIP), &[int(&x.0), int(&y.0), int(&now)])?;
    }
    tx.query_typed(pg!(sql::DELETE_BOTH_REQUESTS), &[int(&a.0), int(&b.0)])?;
    Ok(())
}

fn names(store: &PgStore, sql: &str, user: UserId) -> Result<Vec<String>> {
    Ok(store.query(sql, &[int(&user.0)])?.iter().map(|r| r.get(0)).collect())
}
