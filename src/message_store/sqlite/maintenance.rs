//! Maintenance for `piggyback`: the integrity check and counter recount, the repair,
//! checkpoints, and `seed`'s synthetic data.

use std::collections::HashMap;

use rusqlite::params;

use super::SqliteStore;
use super::mailbox::recount_counters;
use super::migrations::{DROP_MESSAGE_INDEXES, MESSAGE_INDEXES};
use crate::message_store::sql;
use crate::message_store::{Counters, Maintenance, Result, SeedPlan, SeedReport};
use crate::model::UserId;

impl Maintenance for SqliteStore {
    fn audit(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        {
            let mut stmt = self.conn()?.prepare("PRAGMA integrity_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for row in rows {
                let row = row?;
                if row != "ok" {
                    problems.push(format!("integrity: {row}"));
                }
            }
        }
        {
            let mut stmt = self.conn()?.prepare("PRAGMA foreign_key_check")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))?;
            for row in rows {
                let (table, rowid) = row?;
                problems.push(format!("foreign key: {table} row {rowid:?} points at nothing"));
            }
        }
        let mut actual: HashMap<i64, Counters> = HashMap::new();
        {
            let mut stmt = self.conn()?.prepare(
                "SELECT recipient_id, sum(state = 'new'), sum(state = 'delivered') FROM messages
                 WHERE state IN ('new', 'delivered') GROUP BY recipient_id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, Counters { new: r.get(1)?, delivered: r.get(2)? })))?;
            for row in rows {
                let (user, counters) = row?;
                actual.insert(user, counters);
            }
        }
        let mut stmt = self.conn()?.prepare(sql::STORED_COUNTERS)?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?))
        })?;
        for row in rows {
            let (id, name, new, delivered) = row?;
            let want = actual.remove(&id).unwrap_or_default();
            match (new, delivered) {
                (Some(new), Some(delivered)) => {
                    if new != want.new || delivered != want.delivered {
                        problems.push(format!(
                            "counters of {name} (id {id}): stored new={new} delivered={delivered}, recount new={} delivered={}",
                            want.new, want.delivered
                        ));
                    }
                }
                _ => problems.push(format!("user {name} (id {id}) has no mailbox row")),
            }
        }
        for (id, _) in actual {
            problems.push(format!("messages for user id {id}, who does not exist"));
        }
        Ok(problems)
    }

    fn repair_counters(&self) -> Result<usize> {
        let tx = self.immediate()?;
        tx.execute(sql::ADD_MISSING_MAILBOXES, [])?;
        let n = recount_counters(&tx, UserId(i64::MIN))?;
        tx.commit()?;
        Ok(n)
    }

    fn checkpoint(&self) -> Result<()> {
        self.conn()?.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn seed(&self, plan: &SeedPlan, now: i64) -> Result<SeedReport> {
        self.conn()?.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
        let mut rng = SplitMix(plan.seed);
        let tx = self.immediate()?;
        let first_user: i64 = tx.query_row("SELECT coalesce(max(id), 0) + 1 FROM users", [], |r| r.get(0))?;
        let tag: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
        {
            let mut user = tx.prepare(
                "INSERT INTO users (id, name, display_name, bio, joined_at, skeleton) VALUES (?1, ?2, ?3, '', ?4, ?5)",
            )?;
            let mut mailbox = tx.prepare("INSERT INTO mailbox (user_id) VALUES (?1)")?;
            for i in 0..plan.users {
                let id = first_user + i as i64;
                let name = format!("u{tag}_{i}");
                let skeleton = crate::names::skeleton(&name);
                user.execute(params![id, name, format!("User {i}"), now - 86_400 * 365, skeleton])?;
                mailbox.execute([id])?;
            }
        }
        tx.commit()?;
        let users = plan.users as i64;
        if users > 1 {
            let tx = self.immediate()?;
            {
                let mut friend =
                    tx.prepare("INSERT OR IGNORE INTO friendships (user_id, friend_id, since) VALUES (?1, ?2, ?3)")?;
                let mut post = tx.prepare("INSERT INTO posts (author_id, body, created_at) VALUES (?1, ?2, ?3)")?;
                for i in 0..users {
                    let a = first_user + i;
                    for step in 1..=3.min(users - 1) {
                        let b = first_user + (i + step) % users;
                        friend.execute(params![a, b, now])?;
                        friend.execute(params![b, a, now])?;
                    }
                    post.execute(params![a, format!("Hello from user {i}"), now - (rng.next() % 86_400) as i64])?;
                }
            }
            tx.commit()?;
        }
        let mut written = 0u64;
        const BATCH: u64 = 500_000;
        if plan.messages > 0 {
            self.conn()?.execute_batch(DROP_MESSAGE_INDEXES)?;
        }
        while written < plan.messages && users > 0 {
            let tx = self.immediate()?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO messages (request_id, sender_id, recipient_id, subject, body, sent_at, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let end = (written + BATCH).min(plan.messages);
                for n in written..end {
                    let r = rng.next();
                    let to = first_user + (r % users as u64) as i64;
                    let from = first_user + ((r >> 20) % users as u64) as i64;
                    let state = match (r >> 40) % 100 {
                        0..=79 => "read",
                        80..=89 => "delivered",
                        90..=94 => "deleted",
                        _ => "new",
                    };
                    insert.execute(params![
                        format!("seed-{}-{tag}-{n}", plan.seed),
                        from,
                        to,
                        format!("Message {n}"),
                        "This is a synthetic message made by piggyback seed for demos and benchmarks.",
                        now - (plan.messages - n) as i64,
                        state
                    ])?;
                }
                written = end;
            }
            tx.commit()?;
        }
        self.conn()?.execute_batch(MESSAGE_INDEXES)?;
        let tx = self.immediate()?;
        recount_counters(&tx, UserId(first_user))?;
        tx.commit()?;
        self.conn()?.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(SeedReport { first_user: UserId(first_user), users: plan.users, messages: written })
    }
}

/// A small deterministic generator for `seed` (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
