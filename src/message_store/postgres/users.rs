//! Users on PostgreSQL: accounts, passwords' hashes, profiles (as `../users.rs`).

use super::{PgStore, int, text};
use crate::message_store::{Account, Profile, Result};
use crate::model::{Preview, User, UserId};
use postgres::Row;

impl PgStore {
    pub fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        Ok(self
            .query_opt("SELECT id, name, display_name, preview FROM users WHERE name = $1", &[text(&name)])?
            .map(|r| user_row(&r)))
    }

    pub fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(self
            .query_opt("SELECT id, name, display_name, preview FROM users WHERE id = $1", &[int(&id.0)])?
            .map(|r| user_row(&r)))
    }

    pub fn add_user(
        &self,
        name: &str,
        display_name: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Option<UserId>> {
        self.write(|tx| {
            let id: Option<i64> = tx
                .query_typed_opt(
                    "INSERT INTO users (name, display_name, password_hash, joined_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO NOTHING RETURNING id",
                    &[text(&name), text(&display_name), text(&password_hash), int(&now)],
                )?
                .map(|r| r.get(0));
            if let Some(id) = id {
                tx.query_typed("INSERT INTO mailbox (user_id) VALUES ($1)", &[int(&id)])?;
            }
            Ok(id.map(UserId))
        })
    }

    /// Every user, by id (`piggyback user list`).
    pub fn accounts(&self) -> Result<Vec<Account>> {
        Ok(self.query(concat!(account_select!(), " ORDER BY u.id"), &[])?.iter().map(account_row).collect())
    }

    /// One user (`piggyback user show`).
    pub fn account(&self, name: &str) -> Result<Option<Account>> {
        Ok(self.query_opt(concat!(account_select!(), " WHERE u.name = $1"), &[text(&name)])?.map(|r| account_row(&r)))
    }

    /// Renames `from` to `to`: `None` when there is no `from`, `Some(false)` when `to`
    /// is taken (everything else refers to users by id).
    pub fn rename_user(&self, from: &str, to: &str) -> Result<Option<bool>> {
        self.write(|tx| {
            let Some(row) =
                tx.query_typed_opt("SELECT id FROM users WHERE name = $1 FOR NO KEY UPDATE", &[text(&from)])?
            else {
                return Ok(None);
            };
            let id: i64 = row.get(0);
            let taken = tx.query_typed_opt("SELECT 1 FROM users WHERE name = $1", &[text(&to)])?.is_some();
            if !taken {
                tx.query_typed("UPDATE users SET name = $2 WHERE id = $1", &[int(&id), text(&to)])?;
            }
            Ok(Some(!taken))
        })
    }

    pub fn password_hash(&self, name: &str) -> Result<Option<(UserId, Option<String>)>> {
        Ok(self
            .query_opt("SELECT id, password_hash FROM users WHERE name = $1", &[text(&name)])?
            .map(|r| (UserId(r.get(0)), r.get(1))))
    }

    pub fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool> {
        Ok(self
            .client()?
            .execute_typed("UPDATE users SET password_hash = $2 WHERE id = $1", &[int(&user.0), text(&hash)])?
            == 1)
    }

    pub fn profile(&self, user: UserId) -> Result<Option<Profile>> {
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

    pub fn update_profile(
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
