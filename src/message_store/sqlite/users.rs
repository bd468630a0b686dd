//! Users on SQLite: accounts, passwords' hashes, profiles, renaming and removal.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::message_store::sql;
use crate::message_store::{Account, NameTaken, Profile, Removal, Result, Users};
use crate::model::{Preview, User, UserId};
use crate::names::UserName;
use crate::text::rfc3339;

impl Users for SqliteStore {
    fn accounts(&self) -> Result<Vec<Account>> {
        let mut stmt = self.conn()?.prepare_cached(sql::ACCOUNTS)?;
        let rows = stmt.query_map([], account_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn account(&self, name: &UserName) -> Result<Option<Account>> {
        Ok(self.conn()?.prepare_cached(sql::ACCOUNT)?.query_row([name.as_str()], account_row).optional()?)
    }

    fn user_by_name(&self, name: &UserName) -> Result<Option<User>> {
        Ok(self.conn()?.prepare_cached(sql::USER_BY_NAME)?.query_row([name.as_str()], user_row).optional()?)
    }

    fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(self.conn()?.prepare_cached(sql::USER_BY_ID)?.query_row([id.0], user_row).optional()?)
    }

    fn add_user(
        &self,
        name: &UserName,
        display_name: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Result<UserId, NameTaken>> {
        let tx = self.immediate()?;
        let skeleton = name.skeleton();
        if let Some(taken) = name_taken(&tx, name, &skeleton, None)? {
            return Ok(Err(taken));
        }
        let Some(id) = tx
            .prepare_cached(sql::INSERT_USER)?
            .query_row(params![name.as_str(), display_name, password_hash, now, skeleton], |r| r.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(Err(NameTaken::Exact));
        };
        tx.prepare_cached(sql::INSERT_MAILBOX)?.execute([id])?;
        tx.commit()?;
        Ok(Ok(UserId(id)))
    }

    fn password_hash(&self, name: &UserName) -> Result<Option<(UserId, Option<String>)>> {
        Ok(self
            .conn
            .prepare_cached(sql::PASSWORD_HASH)?
            .query_row([name.as_str()], |r| Ok((UserId(r.get(0)?), r.get(1)?)))
            .optional()?)
    }

    fn rename_user(&self, from: &UserName, to: &UserName) -> Result<Option<Result<(), NameTaken>>> {
        // One writer at a time: the IMMEDIATE transaction is the lock.
        let tx = self.immediate()?;
        let Some(id) = tx
            .prepare_cached("SELECT id FROM users WHERE name = ?1")?
            .query_row([from.as_str()], |r| r.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(None);
        };
        let skeleton = to.skeleton();
        if let Some(taken) = name_taken(&tx, to, &skeleton, Some(UserId(id)))? {
            return Ok(Some(Err(taken)));
        }
        tx.prepare_cached(sql::RENAME_USER)?.execute(params![id, to.as_str(), skeleton])?;
        tx.commit()?;
        Ok(Some(Ok(())))
    }

    fn remove_user(&self, name: &UserName, now: i64) -> Result<Option<Removal>> {
        let tx = self.immediate()?;
        let Some(id) = tx
            .prepare_cached("SELECT id FROM users WHERE name = ?1 AND removed_at IS NULL")?
            .query_row([name.as_str()], |r| r.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(None);
        };
        let count = |sql: &str| -> Result<i64> { Ok(tx.prepare(sql)?.query_row([id], |r| r.get(0))?) };
        let recipients: Vec<i64> =
            tx.prepare(sql::UNANNOUNCED_RECIPIENTS)?.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        let mut removal = Removal {
            friendships: count(sql::COUNT_FRIENDSHIPS)?,
            requests: count(sql::COUNT_REQUESTS)?,
            posts: count(sql::COUNT_POSTS)?,
            comments: count(sql::COUNT_COMMENTS)?,
            ..Removal::of(UserId(id))
        };
        removal.received = tx.execute(sql::DELETE_RECEIVED, [id])? as i64;
        removal.withdrawn = tx.execute(sql::WITHDRAW_UNANNOUNCED, [id])? as i64;
        removal.kept = count(sql::COUNT_KEPT)?;
        let mut recount = tx.prepare(sql::RECOUNT_ONE)?;
        for recipient in recipients {
            recount.execute([recipient])?;
        }
        drop(recount);
        // The mailbox row stays, empty: `check` finds every user with one.
        tx.execute(sql::EMPTY_MAILBOX, [id])?;
        tx.execute(sql::DELETE_FRIENDSHIPS, [id])?;
        tx.execute(sql::DELETE_REQUESTS, [id])?;
        tx.execute(sql::DELETE_LOGIN_ADDRESSES, [name.as_str()])?;
        tx.execute(sql::TOMBSTONE, params![id, removal.label, now])?;
        tx.commit()?;
        Ok(Some(removal))
    }

    fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool> {
        Ok(self.conn()?.prepare_cached(sql::SET_PASSWORD_HASH)?.execute(params![user.0, hash])? == 1)
    }

    fn profile(&self, user: UserId) -> Result<Option<Profile>> {
        Ok(self
            .conn
            .prepare_cached(sql::PROFILE)?
            .query_row([user.0], |r| {
                Ok(Profile {
                    name: r.get(0)?,
                    display_name: r.get(1)?,
                    bio: r.get(2)?,
                    joined_at: rfc3339(r.get(3)?),
                    friends: r.get(4)?,
                    posts: r.get(5)?,
                    preview: Preview::parse(&r.get::<_, String>(6)?).unwrap_or_default(),
                })
            })
            .optional()?)
    }

    fn update_profile(
        &self,
        user: UserId,
        display_name: Option<&str>,
        bio: Option<&str>,
        preview: Option<Preview>,
    ) -> Result<()> {
        let tx = self.immediate()?;
        tx.prepare_cached(sql::UPDATE_PROFILE)?.execute(params![
            user.0,
            display_name,
            bio,
            preview.map(Preview::as_str)
        ])?;
        tx.commit()?;
        Ok(())
    }
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: UserId(r.get(0)?),
        name: r.get(1)?,
        display_name: r.get(2)?,
        joined_at: rfc3339(r.get(3)?),
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

/// Whether `name` (with `skeleton`) is another user's than `except`, or looks like it.
fn name_taken(
    tx: &rusqlite::Transaction<'_>,
    name: &UserName,
    skeleton: &str,
    except: Option<UserId>,
) -> Result<Option<NameTaken>> {
    let except = except.map_or(0, |u| u.0);
    if tx.prepare_cached(sql::NAME_TAKEN)?.exists(params![name.as_str(), except])? {
        return Ok(Some(NameTaken::Exact));
    }
    Ok(tx
        .prepare_cached(sql::SKELETON_TAKEN)?
        .query_row(params![skeleton, except], |r| r.get(0))
        .optional()?
        .map(NameTaken::LookAlike))
}
