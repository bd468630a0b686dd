//! Users: accounts, passwords' hashes, profiles.

use rusqlite::{OptionalExtension, params};

use super::{RFC3339, Result, SqliteStore};
use crate::model::{Preview, User, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub display_name: String,
    pub bio: String,
    pub preview: Preview,
    pub joined_at: String,
    pub friends: i64,
    pub posts: i64,
}

/// What `piggyback user list` and `user show` print of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: UserId,
    pub name: String,
    pub display_name: String,
    pub joined_at: String,
    /// Unread messages not yet announced, and announced but unread (the counters).
    pub new: i64,
    pub delivered: i64,
    pub friends: i64,
    pub posts: i64,
    /// Messages this user sent.
    pub sent: i64,
}

const ACCOUNT_SELECT: &str =
    "SELECT u.id, u.name, u.display_name, strftime('%Y-%m-%dT%H:%M:%SZ', u.joined_at, 'unixepoch'),
        coalesce(m.new, 0), coalesce(m.delivered, 0),
        (SELECT count(*) FROM friendships WHERE user_id = u.id),
        (SELECT count(*) FROM posts WHERE author_id = u.id),
        (SELECT count(*) FROM messages WHERE sender_id = u.id)
 FROM users u LEFT JOIN mailbox m ON m.user_id = u.id";

impl SqliteStore {
    /// Every user, by id.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let mut stmt = self.conn.prepare_cached(&format!("{ACCOUNT_SELECT} ORDER BY u.id"))?;
        let rows = stmt.query_map([], account_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The user named `name`, with the counts `user show` prints.
    pub fn account(&self, name: &str) -> Result<Option<Account>> {
        Ok(self
            .conn
            .prepare_cached(&format!("{ACCOUNT_SELECT} WHERE u.name = ?1"))?
            .query_row([name], account_row)
            .optional()?)
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, display_name, preview FROM users WHERE name = ?1")?
            .query_row([name], user_row)
            .optional()?)
    }

    pub fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, display_name, preview FROM users WHERE id = ?1")?
            .query_row([id.0], user_row)
            .optional()?)
    }

    /// Adds a user who joined at `now` with an empty mailbox; `None` when the name is taken.
    pub fn add_user(
        &self,
        name: &str,
        display_name: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Option<UserId>> {
        let tx = self.immediate()?;
        let id: Option<i64> = tx
            .prepare_cached(
                "INSERT INTO users (name, display_name, password_hash, joined_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )?
            .query_row(params![name, display_name, password_hash, now], |r| r.get(0))
            .optional()?;
        if let Some(id) = id {
            tx.prepare_cached("INSERT INTO mailbox (user_id) VALUES (?1)")?.execute([id])?;
        }
        tx.commit()?;
        Ok(id.map(UserId))
    }

    /// The user's id and password hash, if the user exists.
    pub fn password_hash(&self, name: &str) -> Result<Option<(UserId, Option<String>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, password_hash FROM users WHERE name = ?1")?
            .query_row([name], |r| Ok((UserId(r.get(0)?), r.get(1)?)))
            .optional()?)
    }

    /// Renames the user `from` to `to`: `Ok(None)` when there is no `from`, `Ok(Some(false))`
    /// when `to` is taken. Everything refers to users by id, so messages, friendships,
    /// posts and session cookies follow; only `REMOTE_USER` must now say `to`.
    pub fn rename_user(&self, from: &str, to: &str) -> Result<Option<bool>> {
        let tx = self.immediate()?;
        let Some(id) = tx
            .prepare_cached("SELECT id FROM users WHERE name = ?1")?
            .query_row([from], |r| r.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(None);
        };
        let taken = tx.prepare_cached("SELECT 1 FROM users WHERE name = ?1")?.exists([to])?;
        if !taken {
            tx.prepare_cached("UPDATE users SET name = ?2 WHERE id = ?1")?.execute(params![id, to])?;
        }
        tx.commit()?;
        Ok(Some(!taken))
    }

    /// Sets a password hash; false when there is no such user.
    pub fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
            .execute(params![user.0, hash])?
            == 1)
    }

    pub fn profile(&self, user: UserId) -> Result<Option<Profile>> {
        let sql = format!(
            "SELECT name, display_name, bio, strftime({RFC3339}, joined_at, 'unixepoch'),
                    (SELECT count(*) FROM friendships WHERE user_id = u.id),
                    (SELECT count(*) FROM posts WHERE author_id = u.id), preview
             FROM users u WHERE id = ?1"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([user.0], |r| {
                Ok(Profile {
                    name: r.get(0)?,
                    display_name: r.get(1)?,
                    bio: r.get(2)?,
                    joined_at: r.get(3)?,
                    friends: r.get(4)?,
                    posts: r.get(5)?,
                    preview: Preview::parse(&r.get::<_, String>(6)?).unwrap_or_default(),
                })
            })
            .optional()?)
    }

    pub fn update_profile(
        &self,
        user: UserId,
        display_name: Option<&str>,
        bio: Option<&str>,
        preview: Option<Preview>,
    ) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached(
            "UPDATE users SET display_name = coalesce(?2, display_name), bio = coalesce(?3, bio),
                              preview = coalesce(?4, preview) WHERE id = ?1",
        )?
        .execute(params![user.0, display_name, bio, preview.map(Preview::as_str)])?;
        tx.commit()?;
        Ok(())
    }
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: UserId(r.get(0)?),
        name: r.get(1)?,
        display_name: r.get(2)?,
        joined_at: r.get(3)?,
        new: r.get(4)?,
        delivered: r.get(5)?,
        friends: r.get(6)?,
        posts: r.get(7)?,
        sent: r.get(8)?,
    })
}

pub(super) fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let preview: String = r.get(3)?;
    Ok(User {
        id: UserId(r.get(0)?),
        name: r.get(1)?,
        display_name: r.get(2)?,
        preview: Preview::parse(&preview).unwrap_or_default(),
    })
}
