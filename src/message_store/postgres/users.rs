//! Users on PostgreSQL: accounts, passwords' hashes, profiles (as `sqlite/users.rs`).

use super::{PgStore, int, text};
use crate::message_store::{Account, NameTaken, Profile, RECOUNT_COUNTERS, Removal, Result, Users};
use crate::model::{Preview, User, UserId};
use crate::names::UserName;
use postgres::Row;

impl Users for PgStore {
    fn user_by_name(&self, name: &UserName) -> Result<Option<User>> {
        Ok(self
            .query_opt("SELECT id, name, display_name, preview FROM users WHERE name = $1", &[text(&name.as_str())])?
            .map(|r| user_row(&r)))
    }

    fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(self
            .query_opt(
                "SELECT id, name, display_name, preview FROM users WHERE id = $1 AND removed_at IS NULL",
                &[int(&id.0)],
            )?
            .map(|r| user_row(&r)))
    }

    fn add_user(
        &self,
        name: &UserName,
        display_name: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Result<UserId, NameTaken>> {
        let skeleton = name.skeleton();
        self.write(|tx| {
            // Two hosts adding look-alikes at once: the unique index on the skeleton
            // makes the second wait for the first and then fail, as a taken name.
            if let Some(taken) = name_taken(tx, name, &skeleton, None)? {
                return Ok(Err(taken));
            }
            let Some(row) = tx.query_typed_opt(
                "INSERT INTO users (name, display_name, password_hash, joined_at, skeleton)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
                &[text(&name.as_str()), text(&display_name), text(&password_hash), int(&now), text(&skeleton)],
            )?
            else {
                return Ok(Err(name_taken(tx, name, &skeleton, None)?.unwrap_or(NameTaken::Exact)));
            };
            let id: i64 = row.get(0);
            tx.query_typed("INSERT INTO mailbox (user_id) VALUES ($1)", &[int(&id)])?;
            Ok(Ok(UserId(id)))
        })
    }

    // Every user, by id (`piggyback user list`).
    fn accounts(&self) -> Result<Vec<Account>> {
        Ok(self.query(concat!(account_select!(), " ORDER BY u.id"), &[])?.iter().map(account_row).collect())
    }

    // One user (`piggyback user show`).
    fn account(&self, name: &UserName) -> Result<Option<Account>> {
        Ok(self
            .query_opt(concat!(account_select!(), " AND u.name = $1"), &[text(&name.as_str())])?
            .map(|r| account_row(&r)))
    }

    // As on SQLite: `None` when there is no `from`, `Err` when `to` or its look is
    // another user's (everything else refers to users by id).
    fn rename_user(&self, from: &UserName, to: &UserName) -> Result<Option<Result<(), NameTaken>>> {
        let skeleton = to.skeleton();
        self.write(|tx| {
            let Some(row) =
                tx.query_typed_opt("SELECT id FROM users WHERE name = $1 FOR NO KEY UPDATE", &[text(&from.as_str())])?
            else {
                return Ok(None);
            };
            let id: i64 = row.get(0);
            if let Some(taken) = name_taken(tx, to, &skeleton, Some(UserId(id)))? {
                return Ok(Some(Err(taken)));
            }
            tx.query_typed(
                "UPDATE users SET name = $2, skeleton = $3 WHERE id = $1",
                &[int(&id), text(&to.as_str()), text(&skeleton)],
            )?;
            Ok(Some(Ok(())))
        })
    }

    // As on SQLite (`Users::remove_user`). The user's row is locked first, FOR
    // UPDATE: a send naming them waits at its FOR KEY SHARE (`insert_message`) and
    // then sees the tombstone; a weaker lock would let it through. Then their mailbox
    // row and those of the recipients whose counters are recounted, in ascending id
    // order (the order `store_messages` locks them in).
    fn remove_user(&self, name: &UserName, now: i64) -> Result<Option<Removal>> {
        self.write(|tx| {
            let Some(row) = tx.query_typed_opt(
                "SELECT id FROM users WHERE name = $1 AND removed_at IS NULL FOR UPDATE",
                &[text(&name.as_str())],
            )?
            else {
                return Ok(None);
            };
            let id: i64 = row.get(0);
            let mut count = |sql: &str| -> Result<i64> { Ok(tx.query_typed_one(sql, &[int(&id)])?.get(0)) };
            let mut removal = Removal {
                friendships: count("SELECT count(*) FROM friendships WHERE user_id = $1")?,
                requests: count("SELECT count(*) FROM friend_requests WHERE from_id = $1 OR to_id = $1")?,
                posts: count("SELECT count(*) FROM posts WHERE author_id = $1")?,
                comments: count("SELECT count(*) FROM comments WHERE author_id = $1")?,
                ..Removal::of(UserId(id))
            };
            let recipients: Vec<i64> = tx
                .query_typed(
                    "SELECT DISTINCT recipient_id FROM messages WHERE sender_id = $1 AND state = 'new'
                     AND recipient_id <> $1 ORDER BY recipient_id",
                    &[int(&id)],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut mailboxes = recipients.clone();
            mailboxes.push(id);
            mailboxes.sort_unstable();
            for user in &mailboxes {
                tx.query_typed("SELECT 1 FROM mailbox WHERE user_id = $1 FOR UPDATE", &[int(user)])?;
            }
            removal.received = tx.execute_typed("DELETE FROM messages WHERE recipient_id = $1", &[int(&id)])? as i64;
            removal.withdrawn =
                tx.execute_typed("DELETE FROM messages WHERE sender_id = $1 AND state = 'new'", &[int(&id)])? as i64;
            removal.kept = tx
                .query_typed_one(
                    "SELECT count(*) FROM messages WHERE sender_id = $1 AND state <> 'deleted'",
                    &[int(&id)],
                )?
                .get(0);
            let recount = format!("{RECOUNT_COUNTERS} WHERE user_id = $1");
            for recipient in &recipients {
                tx.query_typed(&recount, &[int(recipient)])?;
            }
            // The mailbox row stays, empty: `check` finds every user with one.
            tx.query_typed("UPDATE mailbox SET new = 0, delivered = 0 WHERE user_id = $1", &[int(&id)])?;
            tx.query_typed("DELETE FROM friendships WHERE user_id = $1 OR friend_id = $1", &[int(&id)])?;
            tx.query_typed("DELETE FROM friend_requests WHERE from_id = $1 OR to_id = $1", &[int(&id)])?;
            tx.query_typed("DELETE FROM login_addresses WHERE name = $1", &[text(&name.as_str())])?;
            tx.query_typed(
                "UPDATE users SET name = $2, display_name = $2, bio = '', password_hash = NULL, skeleton = NULL,
                                  session_gen = session_gen + 1, ended_sessions = '', removed_at = $3
                 WHERE id = $1",
                &[int(&id), text(&removal.label), int(&now)],
            )?;
            Ok(Some(removal))
        })
    }

    fn password_hash(&self, name: &UserName) -> Result<Option<(UserId, Option<String>)>> {
        Ok(self
            .query_opt("SELECT id, password_hash FROM users WHERE name = $1", &[text(&name.as_str())])?
            .map(|r| (UserId(r.get(0)), r.get(1))))
    }

    fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool> {
        Ok(self
            .client()?
            .execute_typed("UPDATE users SET password_hash = $2 WHERE id = $1", &[int(&user.0), text(&hash)])?
            == 1)
    }

    fn profile(&self, user: UserId) -> Result<Option<Profile>> {
        let sql = concat!(
            "SELECT name, display_name, bio, ",
            rfc3339!("joined_at"),
            ", (SELECT count(*) FROM friendships WHERE user_id = u.id),
               (SELECT count(*) FROM posts WHERE author_id = u.id), preview
             FROM users u WHERE id = $1"
        );
        Ok(self.query_opt(sql, &[int(&user.0)])?.map(|r| Profile {
            name: r.get(0),
            display_name: r.get(1),
            bio: r.get(2),
            joined_at: r.get(3),
            friends: r.get(4),
            posts: r.get(5),
            preview: Preview::parse(r.get(6)).unwrap_or_default(),
        }))
    }

    fn update_profile(
        &self,
        user: UserId,
        display_name: Option<&str>,
        bio: Option<&str>,
        preview: Option<Preview>,
    ) -> Result<()> {
        let preview = preview.map(Preview::as_str);
        self.client()?.execute_typed(
            "UPDATE users SET display_name = coalesce($2, display_name), bio = coalesce($3, bio),
                              preview = coalesce($4, preview) WHERE id = $1",
            &[int(&user.0), text(&display_name), text(&bio), text(&preview)],
        )?;
        Ok(())
    }
}

pub(super) fn user_row(r: &Row) -> User {
    User {
        id: UserId(r.get(0)),
        name: r.get(1),
        display_name: r.get(2),
        preview: Preview::parse(r.get(3)).unwrap_or_default(),
    }
}

pub(super) fn account_row(r: &Row) -> Account {
    Account {
        id: UserId(r.get(0)),
        name: r.get(1),
        display_name: r.get(2),
        joined_at: r.get(3),
        new: r.get(4),
        delivered: r.get(5),
        friends: r.get(6),
        posts: r.get(7),
        sent: r.get(8),
    }
}

/// Whether `name` (with `skeleton`) is another user's than `except`, or looks like it.
fn name_taken(
    tx: &mut postgres::Transaction<'_>,
    name: &UserName,
    skeleton: &str,
    except: Option<UserId>,
) -> Result<Option<NameTaken>> {
    let except = except.map_or(0, |u| u.0);
    if tx
        .query_typed_opt("SELECT 1 FROM users WHERE name = $1 AND id <> $2", &[text(&name.as_str()), int(&except)])?
        .is_some()
    {
        return Ok(Some(NameTaken::Exact));
    }
    Ok(tx
        .query_typed_opt("SELECT name FROM users WHERE skeleton = $1 AND id <> $2", &[text(&skeleton), int(&except)])?
        .map(|r| NameTaken::LookAlike(r.get(0))))
}
