//! Maintenance on PostgreSQL (as `sqlite/maintenance.rs`): the counters' audit and
//! repair, the no-op checkpoint, and the seed of a benchmark's users and messages.

use std::collections::HashMap;

use super::{PgStore, int};
use crate::message_store::sql::{self, pg};
use crate::message_store::{Counters, Maintenance, Result, SeedPlan, SeedReport};
use crate::model::UserId;

impl Maintenance for PgStore {
    // Recount of every counter (the server keeps its own pages sound; foreign keys
    // are enforced, never deferred): the problems found, empty when sound.
    fn audit(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut client = self.client()?;
        let mut actual: HashMap<i64, Counters> = client
            .query_typed(
                "SELECT recipient_id, count(*) FILTER (WHERE state = 'new'), count(*) FILTER (WHERE state = 'delivered')
                 FROM messages WHERE state IN ('new', 'delivered') GROUP BY recipient_id",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), Counters { new: r.get(1), delivered: r.get(2) }))
            .collect();
        let rows = client.query_typed(sql::STORED_COUNTERS, &[])?;
        for r in rows {
            let (id, name, new, delivered): (i64, String, Option<i64>, Option<i64>) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
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
        self.write(|tx| {
            tx.query_typed(sql::ADD_MISSING_MAILBOXES, &[])?;
            Ok(tx.execute_typed(sql::RECOUNT_ALL, &[])? as usize)
        })
    }

    // Nothing to do: the server checkpoints on its own.
    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    // Fills the database with synthetic data (`piggyback seed`), set-based on the
    // server: the same shape as the SQLite engine's (3 friends each way, one post per
    // user, 80 % read, 10 % delivered, 5 % deleted, 5 % new), not the same rows.
    fn seed(&self, plan: &SeedPlan, now: i64) -> Result<SeedReport> {
        let (users, messages, seed) = (plan.users as i64, plan.messages as i64, plan.seed as i64);
        self.write(|tx| {
            let first: i64 = tx.query_typed_one("SELECT coalesce(max(id), 0) + 1 FROM users", &[])?.get(0);
            let tag: i64 = tx.query_typed_one("SELECT count(*) FROM users", &[])?.get(0);
            let year_ago = now - 86_400 * 365;
            tx.query_typed(
                // The skeleton of `u<tag>_<n>` (crate::names::skeleton): 0 looks like
                // o and 1 like l; u, _ and the other digits look like themselves.
                "INSERT INTO users (id, name, display_name, bio, joined_at, skeleton)
                 SELECT $1 + g, 'u' || $2 || '_' || g, 'User ' || g, '', $4, translate('u' || $2 || '_' || g, '01', 'ol')
                 FROM generate_series(0, $3 - 1) g",
                &[int(&first), int(&tag), int(&users), int(&year_ago)],
            )?;
            tx.query_typed(
                "INSERT INTO mailbox (user_id) SELECT $1 + g FROM generate_series(0, $2 - 1) g",
                &[int(&first), int(&users)],
            )?;
            if users > 1 {
                tx.query_typed(
                    "INSERT INTO friendships (user_id, friend_id, since)
                     SELECT a, b, $3 FROM (
                         SELECT $1 + g AS a, $1 + (g + s) % $2 AS b
                         FROM generate_series(0, $2 - 1) g, generate_series(1, least(3, $2 - 1)) s
                         UNION SELECT $1 + (g + s) % $2, $1 + g
                         FROM generate_series(0, $2 - 1) g, generate_series(1, least(3, $2 - 1)) s) f
                     ON CONFLICT DO NOTHING",
                    &[int(&first), int(&users), int(&now)],
                )?;
                tx.query_typed(
                    "INSERT INTO posts (author_id, body, created_at)
                     SELECT $1 + g, 'Hello from user ' || g, $3 - (g * 7919) % 86400 FROM generate_series(0, $2 - 1) g",
                    &[int(&first), int(&users), int(&now)],
                )?;
            }
            if users > 0 && messages > 0 {
                // PostgreSQL's own integer hash of the row number stands in for SplitMix.
                tx.query_typed(
                    "INSERT INTO messages (request_id, sender_id, recipient_id, subject, body, sent_at, state)
                     SELECT 'seed-' || $4 || '-' || $5 || '-' || n, $1 + a % $2, $1 + b % $2, 'Message ' || n,
                            'This is a synthetic message made by piggyback seed for demos and benchmarks.',
                            $6 - ($3 - n),
                            CASE WHEN c % 100 < 80 THEN 'read' WHEN c % 100 < 90 THEN 'delivered'
                                 WHEN c % 100 < 95 THEN 'deleted' ELSE 'new' END
                     FROM (SELECT n, abs(hashint8(n * 3 + $4 % 1000003)::bigint) AS a,
                                  abs(hashint8(n * 3 + 1 + $4 % 1000003)::bigint) AS b,
                                  abs(hashint8(n * 3 + 2 + $4 % 1000003)::bigint) AS c
                           FROM generate_series(0, $3 - 1) n) s",
                    &[int(&first), int(&users), int(&messages), int(&seed), int(&tag), int(&now)],
                )?;
            }
            tx.query_typed(pg!(sql::RECOUNT_FROM), &[int(&first)])?;
            // Ids given explicitly above: move the generator past them.
            tx.batch_execute("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))")?;
            let written = if users > 0 { plan.messages } else { 0 };
            Ok(SeedReport { first_user: UserId(first), users: plan.users, messages: written })
        })
    }
}
