//! Users: accounts, passwords' hashes, profiles.

use rusqlite::{OptionalExtension, params};

use super::{RFC3339, SqliteStore};
use crate::message_store::{Account, NameTaken, Profile, Removal, Result, Users};
use crate::model::{Preview, User, UserId};
use crate::names::UserName;

const ACCOUNT_SELECT: &str =
    "SELECT u.id, u.name, u.display_name, strftime('%Y-%m-%dT%H:%M:%SZ', u.joined_at, 'unixepoch'),
        coalesce(m.new, 0), coalesce(m.delivered, 0),
        (SELECT count(*) FROM friendships WHERE user_id = u.id),
        (SELECT count(*) FROM posts WHERE author_id = u.id),
        (SELECT count(*) FROM messages WHERE sender_id = u.id)
 FROM users u LEFT JOIN mailbox m ON m.user_id = u.id WHERE u.removed_at IS NULL";

impl Users for SqliteStore {
    fn accounts(&self) -> Result<Vec<Account>> {
        let mut stmt = self.conn.prepare_cached(&format!("{ACCOUNT_SELECT} ORDER BY u.id"))?;
        let rows = stmt.query_map([], account_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn account(&self, name: &UserName) -> Result<Option<Account>> {
        Ok(self
            .conn
            .prepare_cached(&format!("{ACCOUNT_SELECT} AND u.name = ?1"))?
            .query_row([name.as_str()], account_row)
            .optional()?)
    }

    fn user_by_name(&self, name: &UserName) -> Result<Option<User>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, display_name, preview FROM users WHERE name = ?1")?
            .query_row([name.as_str()], user_row)
            .optional()?)
    }

    fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, display_name, preview FROM users WHERE id = ?1 AND removed_at IS NULL")?
            .query_row([id.0], user_row)
            .optional()?)
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
        tx.prepare_cached(
            "INSERT INTO users (name, display_name, password_hash, joined_at, skeleton) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![name.as_str(), display_name, password_hash, now, skeleton])?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached("INSERT INTO mailbox (user_id) VALUES (?1)")?.execute([id])?;
        tx.commit()?;
        Ok(Ok(UserId(id)))
    }

    fn password_hash(&self, name: &UserName) -> Result<Option<(UserId, Option<String>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, password_hash FROM users WHERE name = ?1")?
            .query_row([name.as_str()], |r| Ok((UserId(r.get(0)?), r.get(1)?)))
            .optional()?)
    }

    fn rename_user(&self, from: &UserName, to: &UserName) -> Result<Option<Result<(), NameTaken>>> {
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
        tx.prepare_cached("UPDATE users SET name = ?2, skeleton = ?3 WHERE id = ?1")?.execute(params![
            id,
            to.as_str(),
            skeleton
        ])?;
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
        let recipients: Vec<i64> = tx
            .prepare("SELECT DISTINCT recipient_id FROM messages WHERE sender_id = ?1 AND state = 'new' AND recipient_id <> ?1")?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut removal = Removal {
            friendships: count("SELECT count(*) FROM friendships WHERE user_id = ?1")?,
            requests: count("SELECT count(*) FROM friend_requests WHERE from_id = ?1 OR to_id = ?1")?,
            posts: count("SELECT count(*) FROM posts WHERE author_id = ?1")?,
            comments: count("SELECT count(*) FROM comments WHERE author_id = ?1")?,
            ..Removal::of(UserId(id))
        };
        removal.received = tx.execute("DELETE FROM messages WHERE recipient_id = ?1", [id])? as i64;
        removal.withdrawn = tx.execute("DELETE FROM messages WHERE sender_id = ?1 AND state = 'new'", [id])? as i64;
        removal.kept = count("SELECT count(*) FROM messages WHERE sender_id = ?1 AND state <> 'deleted'")?;
        let mut recount = tx.prepare(&format!("{} WHERE user_id = ?1", crate::message_store::RECOUNT_COUNTERS))?;
        for recipient in recipients {
            recount.execute([recipient])?;
        }
        drop(recount);
        // The mailbox row stays, empty: `check` finds every user with one.
        tx.execute("UPDATE mailbox SET new = 0, delivered = 0 WHERE user_id = ?1", [id])?;
        tx.execute("DELETE FROM friendships WHERE user_id = ?1 OR friend_id = ?1", [id])?;
        tx.execute("DELETE FROM friend_requests WHERE from_id = ?1 OR to_id = ?1", [id])?;
        tx.execute("DELETE FROM login_addresses WHERE name = ?1", [name.as_str()])?;
        tx.execute(
            "UPDATE users SET name = ?2, display_name = ?2, bio = '', password_hash = NULL, skeleton = NULL,
                              session_gen = session_gen + 1, ended_sessions = '', removed_at = ?3
             WHERE id = ?1",
            params![id, removal.label, now],
        )?;
        tx.commit()?;
        Ok(Some(removal))
    }

    fn set_password_hash(&self, user: UserId, hash: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
            .execute(params![user.0, hash])?
            == 1)
    }

    fn profile(&self, user: UserId) -> Result<Option<Profile>> {
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

    fn update_profile(
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

/// Whether `name` (with `skeleton`) is another user's than `except`, or looks like it.
fn name_taken(
    tx: &rusqlite::Transaction<'_>,
    name: &UserName,
    skeleton: &str,
    except: Option<UserId>,
) -> Result<Option<NameTaken>> {
    let except = except.map_or(0, |u| u.0);
    let exact = tx
        .prepare_cached("SELECT 1 FROM users WHERE name = ?1 AND id <> ?2")?
        .exists(params![name.as_str(), except])?;
    if exact {
        return Ok(Some(NameTaken::Exact));
    }
    Ok(tx
        .prepare_cached("SELECT name FROM users WHERE skeleton = ?1 AND id <> ?2")?
        .query_row(params![skeleton, except], |r| r.get(0))
        .optional()?
        .map(NameTaken::LookAlike))
}
