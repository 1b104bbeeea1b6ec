//! Every Redis key toolbox uses, in one place. The Lua scripts get the same templates
//! through [`lua_prelude`], so there is one source of truth.
//!
//! All keys start with `{<prefix>}`: the braces are a Redis Cluster hash tag, which puts
//! every key of one deployment in one slot, as scripts that touch several keys need.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:t:<id>` | hash | the task record; `hist` says whether the history list exists (`0`/`1`; absent on records of earlier builds: maybe) |
//! | `{p}:h:<id>` | list | the task's history events (JSON) that the hash cannot tell: retries, lost, released and returned deliveries, revokes, dead-lettering (see `common.lua`) |
//! | `{p}:q:<queue>:<band>` | stream | ready tasks of a queue, one stream per priority band (`h`, `n`, `l`), consumer group `workers` |
//! | `{p}:d:<queue>` | sorted set | delayed tasks (countdown, eta, retry backoff) by due time |
//! | `{p}:x:<queue>` | sorted set | dead-lettered tasks by time |
//! | `{p}:s:<queue>` | list | wake-up tokens for idle workers |
//! | `{p}:i:<key>` | string | idempotency key → first task id |
//! | `{p}:queues` | set | every queue ever used |
//! | `{p}:beat` | hash | schedule id → `<last tick ms>:<task id>`, the per-tick claim of schedulers |
//! | `{p}:recent` | sorted set | task ids (UUID v7, so lexical order is time order), all scored 0, for listing |
//! | `{p}:workers` | sorted set | worker names by last heartbeat |
//! | `{p}:w:<name>` | string | a worker's heartbeat (JSON), expiring |

/// The consumer group every worker reads the streams through.
pub const GROUP: &str = "workers";
/// Priority bands, highest first: priorities 7–9, 4–6, 0–3.
pub const BANDS: [&str; 3] = ["h", "n", "l"];

#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            root: format!("{{{prefix}}}"),
        }
    }

    /// `{prefix}`, the first argument of every script.
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn task(&self, id: &str) -> String {
        format!("{}:t:{id}", self.root)
    }

    pub fn history(&self, id: &str) -> String {
        format!("{}:h:{id}", self.root)
    }

    pub fn stream(&self, queue: &str, band: &str) -> String {
        format!("{}:q:{queue}:{band}", self.root)
    }

    pub fn delayed(&self, queue: &str) -> String {
        format!("{}:d:{queue}", self.root)
    }

    pub fn dead(&self, queue: &str) -> String {
        format!("{}:x:{queue}", self.root)
    }

    pub fn signal(&self, queue: &str) -> String {
        format!("{}:s:{queue}", self.root)
    }

    pub fn queues(&self) -> String {
        format!("{}:queues", self.root)
    }

    pub fn beat(&self) -> String {
        format!("{}:beat", self.root)
    }

    pub fn recent(&self) -> String {
        format!("{}:recent", self.root)
    }

    pub fn workers(&self) -> String {
        format!("{}:workers", self.root)
    }

    pub fn worker(&self, name: &str) -> String {
        format!("{}:w:{name}", self.root)
    }
}

/// The Lua definitions every script starts with: `P` is `ARGV[1]`, the `{prefix}`.
pub fn lua_prelude() -> String {
    let bands = BANDS.map(|b| format!("'{b}'")).join(", ");
    format!(
        r#"
local P = ARGV[1]
local GROUP = '{GROUP}'
local BANDS = {{{bands}}}
local QUEUES = P .. ':queues'
local RECENT = P .. ':recent'
local BEAT = P .. ':beat'
local function task_key(id) return P .. ':t:' .. id end
local function history_key(id) return P .. ':h:' .. id end
local function stream_key(queue, band) return P .. ':q:' .. queue .. ':' .. band end
local function delayed_key(queue) return P .. ':d:' .. queue end
local function dead_key(queue) return P .. ':x:' .. queue end
local function signal_key(queue) return P .. ':s:' .. queue end
local function idempotency_key(key) return P .. ':i:' .. key end
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("tenant-a");
        for key in [
            keys.task("1"),
            keys.history("1"),
            keys.stream("default", "n"),
            keys.delayed("default"),
            keys.dead("default"),
            keys.signal("default"),
            keys.queues(),
            keys.workers(),
            keys.worker("w1"),
        ] {
            assert!(key.starts_with("{tenant-a}:"), "{key}");
        }
        assert_eq!(keys.stream("cronjobs", "h"), "{tenant-a}:q:cronjobs:h");
    }

    #[test]
    fn the_lua_prelude_uses_the_same_templates() {
        let lua = lua_prelude();
        assert!(lua.contains("local function task_key(id) return P .. ':t:' .. id end"));
        assert!(lua.contains("stream_key(queue, band) return P .. ':q:' .. queue .. ':' .. band"));
        assert!(lua.contains("local BANDS = {'h', 'n', 'l'}"));
    }
}
