//! Users on PostgreSQL: accounts, passwords' hashes, profiles (as `sqlite/users.rs`).

use super::{PgStore, int, text};
use crate::message_store::sql::{self, pg};
use crate::message_store::{Account, NameTaken, Profile, Removal, Result, Users};
use crate::model::{Preview, User, UserId};
use crate::names::UserName;
use crate::text::rfc3339;
use postgres::Row;

impl Users for PgStore {
    fn user_by_name(&self, name: &UserName) -> Result<Option<User>> {
        Ok(self.query_opt(pg!(sql::USER_BY_NAME), &[text(&name.as_str())])?.map(|r| user_row(&r)))
    }

    fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(self.query_opt(pg!(sql::USER_BY_ID), &[int(&id.0)])?.map(|r| user_row(&r)))
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
                pg!(sql::INSERT_USER),
                &[text(&name.as_str()), text(&display_name), text(&password_hash), int(&now), text(&skeleton)],
            )?
            else {
                return Ok(Err(name_taken(tx, name, &skeleton, None)?.unwrap_or(NameTaken::Exact)));
            };
            let id: i64 = row.get(0);
            tx.query_typed(pg!(sql::INSERT_MAILBOX), &[int(&id)])?;
            Ok(Ok(UserId(id)))
        })
    }

    // Every user, by id (`piggyback user list`).
    fn accounts(&self) -> Result<Vec<Account>> {
        Ok(self.query(pg!(sql::ACCOUNTS), &[])?.iter().map(account_row).collect())
    }

    // One user (`piggyback user show`).
    fn account(&self, name: &UserName) -> Result<Option<Account>> {
        Ok(self.query_opt(pg!(sql::ACCOUNT), &[text(&name.as_str())])?.map(|r| account_row(&r)))
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
            tx.query_typed(pg!(sql::RENAME_USER), &[int(&id), text(&to.as_str()), text(&skeleton)])?;
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
                friendships: count(pg!(sql::COUNT_FRIENDSHIPS))?,
                requests: count(pg!(sql::COUNT_REQUESTS))?,
                posts: count(pg!(sql::COUNT_POSTS))?,
                comments: count(pg!(sql::COUNT_COMMENTS))?,
                ..Removal::of(UserId(id))
            };
            let recipients: Vec<i64> =
                tx.query_typed(pg!(sql::UNANNOUNCED_RECIPIENTS), &[int(&id)])?.iter().map(|r| r.get(0)).collect();
            let mut mailboxes = recipients.clone();
            mailboxes.push(id);
            mailboxes.sort_unstable();
            for user in &mailboxes {
                tx.query_typed("SELECT 1 FROM mailbox WHERE user_id = $1 FOR UPDATE", &[int(user)])?;
            }
            removal.received = tx.execute_typed(pg!(sql::DELETE_RECEIVED), &[int(&id)])? as i64;
            removal.withdrawn = tx.execute_typed(pg!(sql::WITHDRAW_UNANNOUNCED), &[int(&id)])? as i64;
            removal.kept = tx.query_typed_one(pg!(sql::COUNT_KEPT), &[int(&id)])?.get(0);
            for recipient in &recipients {
                tx.query_typed(pg!(sql::RECOUNT_ONE), &[int(recipient)])?;
            }
            // The mailbox row stays, empty: `check` finds every user with one.
            tx.query_typed(pg!(sql::EMPTY_MAILBOX), &[int(&id)])?;
            tx.query_typed(pg!(sql::DELETE_FRIENDSHIPS), &[int(&id)])?;
            tx.query_typed(pg!(sql::DELETE_REQUESTS), &[int(&id)])?;
            tx.query_typed(pg!(sql::DELETE_LOGIN_ADDRESSES), &[text(&name.as_str())])?;
            tx.query_typed(pg!(sql::TOMBSTONE), &[int(&id), text(&removal.label), int(&now)])?;
            Ok(Some(removal))
        })
    }

    fn password_hash(&self, name: &UserName) -> Result<Option<(UserId, Option<String>)>> {
        Ok(self.query_opt(pg!(sql::PASSWORD_HASH), &[text(&name.as_str())])?.map(|r| (UserId(r.get(0)), r.get(1))))
    }

    fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool> {
        Ok(self.client()?.execute_typed(pg!(sql::SET_PASSWORD_HASH), &[int(&user.0), text(&hash)])? == 1)
    }

    fn profile(&self, user: UserId) -> Result<Option<Profile>> {
        Ok(self.query_opt(pg!(sql::PROFILE), &[int(&user.0)])?.map(|r| Profile {
            name: r.get(0),
            display_name: r.get(1),
            bio: r.get(2),
            joined_at: rfc3339(r.get(3)),
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
            pg!(sql::UPDATE_PROFILE),
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
        joined_at: rfc3339(r.get(3)),
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
    if tx.query_typed_opt(pg!(sql::NAME_TAKEN), &[text(&name.as_str()), int(&except)])?.is_some() {
        return Ok(Some(NameTaken::Exact));
    }
    Ok(tx
        .query_typed_opt(pg!(sql::SKELETON_TAKEN), &[text(&skeleton), int(&except)])?
        .map(|r| NameTaken::LookAlike(r.get(0))))
}
