//! The Redis store: records shared by every collector process that uses the same Redis.
//!
//! Layout (all keys under a prefix, `vitals:` by default; `{p}` is a participant as
//! [`ParticipantKey::encode`] writes it, `{meeting id length}:{meeting id}:{participant id}`):
//! - `rec:{p}`: the participant's [`Record`] as `{version}|{JSON}`, expiring `RECORD_GRACE_MS`
//!   after its live state;
//! - `meetings`: a sorted set of meeting ids scored by last batch time (ms), and
//!   `participants:{meeting id}`: a sorted set of participant ids scored the same way (both
//!   written at most once per `LIVE_INDEX_INTERVAL_MS` per participant, so a score may lag by
//!   that much), and `live-participants`: a sorted set of every `{p}` scored the same way. The
//!   live caps count `meetings` and `live-participants` by score (`ZCOUNT`, no scan): the
//!   commit script keeps them, trimming stale entries whenever it writes them;
//! - `due`: the sweep index, a sorted set of `{p}` scored by when the sweeper should look at it;
//! - `alerts` and `alerts-of:{meeting id}`: sorted sets of alert records (JSON) scored by time;
//! - `history:{p}`: a sorted set of history points (`{bucket}:{JSON}`) scored by bucket start, one
//!   per bucket; `history-participants:{meeting id}` and `history-meetings` index them, scored
//!   by the latest bucket;
//! - `turn:{bucket start}`: a hash of relayed bytes per `[meeting, participant, server]` (JSON),
//!   indexed by the sorted set `turn-buckets`.
//!
//! History, alerts and usage expire after the retention time (trimmed whenever their index is
//! written, and each key expires when it has not been written for that long).
//!
//! Commits go through one worker task that sends every commit waiting at that moment to Redis as
//! one script call ([`COMMIT_SCRIPT`]): group commit, so under load one round trip and one script
//! run carry many requests' changes. The script checks each record's version and applies the
//! commit's writes only if it matches, so a commit is atomic and happens at most once. Records
//! this process read or wrote are cached, so the usual ingest needs no read.

use super::{
    group_meetings, lowest_bucket, series_from, turn_bucket, usage_rows, AlertPage, Commit, CommitOutcome, DerivedSlot,
    DueChange, HistoryPage, HistoryPoint, HistoryQuery, LiveCount, MeetingView, MeetingsPage, MetricsView,
    ParticipantKey, Record, SeriesKey, Store, StoreError, StoreFuture, UsageSums, Versioned, DEFAULT_RETENTION_MS,
    LIVE_INDEX_INTERVAL_MS, LIVE_TTL_MS, RECORD_GRACE_MS,
};
use crate::alerts::AlertRecord;
use crate::turn::TurnUsage;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Applies a batch of commits; each is a compare-and-set of one record plus writes that happen
/// only if it succeeds.
///
/// ARGV[1]: the number of commits; ARGV[2]: the records' time to live in ms. Then per commit: the
/// expected stored value's prefix (`{version}|`, or '' when none may be stored), the new value
/// (`{version}|{JSON}`, or '' to delete the record), the number of writes, then each write: an
/// opcode and its arguments. KEYS are consumed in order: the record's key, then one key per write
/// (except `p`, which names a channel).
/// Writes: `z` ZADD score member, `r` ZREMRANGEBYSCORE min max, `x` PEXPIRE ms, `h` HINCRBY field
/// by, `m` ZREM member, `p` PUBLISH channel message.
/// Returns per commit: 1 (applied), or what is stored instead (0 when nothing is).
///
/// A record is written with one `SET … GET` (its old value comes back with the same call): when
/// the old value is not the expected one it is put back at once (so nothing else of the commit
/// happens, and the caller sees what is stored). Putting it back restarts its time to live, which
/// only delays its removal (liveness is decided by the record's `last_seen`, not by the key).
const COMMIT_SCRIPT: &str = r#"
local arity = {z = 2, r = 2, x = 1, h = 2, m = 1, p = 2}
local results = {}
local n, ttl = tonumber(ARGV[1]), ARGV[2]
local a, k = 3, 1
for c = 1, n do
  local key = KEYS[k]
  k = k + 1
  local expected, value, writes = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local current
  if value == '' then
    current = redis.call('GET', key)
  else
    current = redis.call('SET', key, value, 'PX', ttl, 'GET')
  end
  local matches
  if current then
    matches = expected ~= '' and string.sub(current, 1, #expected) == expected
  else
    matches = expected == ''
  end
  if not matches then
    if value ~= '' then
      if current then redis.call('SET', key, current, 'PX', ttl) else redis.call('DEL', key) end
    end
    results[c] = current or 0
    for w = 1, writes do
      local op = ARGV[a]
      a = a + 1 + arity[op]
      if op ~= 'p' then k = k + 1 end
    end
  else
    if value == '' and current then
      redis.call('DEL', key)
    end
    for w = 1, writes do
      local op = ARGV[a]
      if op == 'z' then
        redis.call('ZADD', KEYS[k], ARGV[a + 1], ARGV[a + 2])
      elseif op == 'r' then
        redis.call('ZREMRANGEBYSCORE', KEYS[k], ARGV[a + 1], ARGV[a + 2])
      elseif op == 'x' then
        redis.call('PEXPIRE', KEYS[k], ARGV[a + 1])
      elseif op == 'h' then
        redis.call('HINCRBY', KEYS[k], ARGV[a + 1], ARGV[a + 2])
      elseif op == 'm' then
        redis.call('ZREM', KEYS[k], ARGV[a + 1])
      elseif op == 'p' then
        redis.call('PUBLISH', ARGV[a + 1], ARGV[a + 2])
      else
        return redis.error_reply('unknown write ' .. tostring(op))
      end
      if op ~= 'p' then k = k + 1 end
      a = a + 1 + arity[op]
    end
    results[c] = 1
  end
end
return results
"#;

/// Most commits sent in one script call.
const MAX_BATCH: usize = 256;
/// Script calls in flight at once (Redis runs them in order; the next one is prepared and sent
/// while the previous one runs).
const MAX_IN_FLIGHT: usize = 2;
/// Most records cached per process (about 15 MB); past that, a record is read from Redis when
/// needed (one more round trip for that event).
const MAX_CACHED: usize = 20_000;

/// How many history series one pipelined round trip reads at most.
const SERIES_PER_ROUND_TRIP: usize = 256;

/// How the Redis store is set up.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prepended to every key, so several deployments (or tests) can share one Redis.
    pub key_prefix: String,
    pub live_ttl_ms: u64,
    /// How long history, alert history and TURN usage are kept.
    pub retention_ms: u64,
    /// How long one command may take before the store counts as unavailable.
    pub response_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "vitals:".into(),
            live_ttl_ms: LIVE_TTL_MS,
            retention_ms: DEFAULT_RETENTION_MS,
            response_timeout: Duration::from_secs(2),
        }
    }
}

/// One write of a commit, with its key.
enum Write {
    ZAdd(String, String, Vec<u8>),
    ZRemRange(String, String, String),
    PExpire(String, u64),
    HIncrBy(String, String, u64),
    ZRem(String, String),
    Publish(String, super::StreamText),
}

/// A commit encoded for the script, waiting for the worker.
struct Job {
    record_key: String,
    /// The version the stored record must have; 0: none may be stored.
    expected: u64,
    /// `{version}|{JSON}`, or empty to delete.
    value: Vec<u8>,
    writes: Vec<Write>,
    reply: oneshot::Sender<Result<Value, StoreError>>,
}

/// Records this process read or wrote, with their versions.
#[derive(Default)]
struct Cache {
    records: HashMap<ParticipantKey, (u64, Record)>,
    last_sweep_ms: u64,
}

struct Inner {
    connection: ConnectionManager,
    options: RedisOptions,
    target: String,
    script: Script,
    cache: Mutex<Cache>,
    /// The commit worker's queue, started by the first commit (it needs a Tokio runtime).
    jobs: OnceLock<mpsc::UnboundedSender<Job>>,
}

/// Everything in Redis through one multiplexed connection that reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection holds the URL, which may hold a password.
        f.debug_struct("RedisStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// `host:port/db` of a Redis client: what tells two clients apart (never the password).
pub(crate) fn target_of(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    format!("{}/{}", info.addr(), info.redis_settings().db())
}

impl RedisStore {
    /// Prepares a store for `url` without connecting: the first request connects, and requests
    /// fail with `StoreError::Unavailable` while Redis is unreachable, then recover by themselves.
    pub fn new(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Internal(format!("bad Redis URL: {e}")))?;
        let target = target_of(&client);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.response_timeout))
            .set_response_timeout(Some(options.response_timeout))
            // Fail the request fast and let the client retry; the manager keeps reconnecting.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(classify)?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                options,
                target,
                script: Script::new(COMMIT_SCRIPT),
                cache: Mutex::default(),
                jobs: OnceLock::new(),
            }),
        })
    }

    fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.options().key_prefix.clone();
        for part in parts {
            key.push_str(part);
        }
        key
    }

    fn connection(&self) -> ConnectionManager {
        self.inner.connection.clone()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers `record` at `version` (or forgets the participant), dropping records whose
    /// time is over now and then.
    fn remember(&self, key: &ParticipantKey, version: u64, record: Option<Record>, now_ms: u64) {
        let keep_ms = self.options().live_ttl_ms.saturating_add(RECORD_GRACE_MS);
        let mut cache = self.cache();
        if now_ms >= cache.last_sweep_ms.saturating_add(10_000) {
            cache.last_sweep_ms = now_ms;
            cache
                .records
                .retain(|_, (_, r)| r.last_seen.saturating_add(keep_ms) > now_ms);
        }
        match record {
            Some(record) => {
                if let Some(cached) = cache.records.get_mut(key) {
                    *cached = (version, record);
                } else if cache.records.len() < MAX_CACHED {
                    cache.records.insert(key.clone(), (version, record));
                }
            }
            _ => {
                cache.records.remove(key);
            }
        }
    }

    async fn load_record(&self, key: &ParticipantKey) -> Result<Versioned, StoreError> {
        if let Some((version, record)) = self.cache().records.get(key) {
            return Ok(Versioned {
                version: *version,
                record: Some(record.clone()),
            });
        }
        self.read_record(key).await
    }

    /// The participant's record as stored now (and cached).
    async fn read_record(&self, key: &ParticipantKey) -> Result<Versioned, StoreError> {
        let mut connection = self.connection();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(&["rec:", &key.encode()]))
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        let loaded = match value {
            Some(value) => decode_record(&value)?,
            None => Versioned::default(),
        };
        if let Some(record) = &loaded.record {
            self.remember(key, loaded.version, Some(record.clone()), record.last_seen);
        }
        Ok(loaded)
    }

    /// The writes that follow from `commit`, besides the record itself.
    fn writes(&self, commit: &mut Commit, participant: &str) -> Vec<Write> {
        let options = self.options();
        let now = commit.now_ms;
        let keep = options.retention_ms;
        let oldest = || format!("({}", now.saturating_sub(keep));
        let meeting_id = &commit.key.meeting_id;
        let participant_id = &commit.key.participant_id;
        let mut writes = Vec::new();
        // Trims `key` to the retention time and lets it expire when unwritten that long.
        let retain = |writes: &mut Vec<Write>, key: String| {
            writes.push(Write::ZRemRange(key.clone(), "-inf".into(), oldest()));
            writes.push(Write::PExpire(key, keep));
        };
        if commit.index_live {
            if let Some(record) = &commit.record {
                let live_ttl = options.live_ttl_ms;
                let score = record.last_seen.to_string();
                let stale = format!("({}", now.saturating_sub(live_ttl + LIVE_INDEX_INTERVAL_MS));
                for (key, member) in [
                    (self.key(&["meetings"]), meeting_id.as_bytes()),
                    (self.key(&["participants:", meeting_id]), participant_id.as_bytes()),
                    (self.key(&["live-participants"]), participant.as_bytes()),
                ] {
                    writes.push(Write::ZAdd(key.clone(), score.clone(), member.to_vec()));
                    writes.push(Write::ZRemRange(key.clone(), "-inf".into(), stale.clone()));
                    writes.push(Write::PExpire(key, live_ttl + RECORD_GRACE_MS));
                }
            }
        }
        let points = std::mem::take(&mut commit.history);
        if let Some(last) = points.iter().map(|(bucket, _)| *bucket).max() {
            let key = self.key(&["history:", participant]);
            for (bucket, metrics) in points {
                let bucket = bucket.to_string();
                // The bucket start leads the member, so equal metrics in two buckets stay two.
                let mut member = format!("{bucket}:").into_bytes();
                serde_json::to_writer(&mut member, &metrics).expect("plain data always serializes");
                writes.push(Write::ZRemRange(key.clone(), bucket.clone(), bucket.clone()));
                writes.push(Write::ZAdd(key.clone(), bucket, member));
            }
            if commit.index_history {
                let bucket = last.to_string();
                let participants = self.key(&["history-participants:", meeting_id]);
                let meetings = self.key(&["history-meetings"]);
                writes.push(Write::ZAdd(
                    participants.clone(),
                    bucket.clone(),
                    participant_id.as_bytes().to_vec(),
                ));
                writes.push(Write::ZAdd(meetings.clone(), bucket, meeting_id.as_bytes().to_vec()));
                for key in [key, participants, meetings] {
                    retain(&mut writes, key);
                }
            }
        }
        if !commit.alerts.is_empty() {
            let (all, of_meeting) = (self.key(&["alerts"]), self.key(&["alerts-of:", meeting_id]));
            let score = now.to_string();
            for record in &commit.alerts {
                let text = json(record).into_bytes();
                writes.push(Write::ZAdd(all.clone(), score.clone(), text.clone()));
                writes.push(Write::ZAdd(of_meeting.clone(), score.clone(), text));
            }
            retain(&mut writes, all);
            retain(&mut writes, of_meeting);
        }
        if let Some(relayed) = commit.relayed.take() {
            let bucket = turn_bucket(commit.usage_at_ms).to_string();
            let key = self.key(&["turn:", &bucket]);
            let field = json(&(meeting_id, participant_id, &relayed.server));
            writes.push(Write::HIncrBy(key.clone(), field, relayed.bytes));
            if commit.index_turn {
                writes.push(Write::PExpire(key, keep));
                let buckets = self.key(&["turn-buckets"]);
                writes.push(Write::ZAdd(buckets.clone(), bucket.clone(), bucket.into_bytes()));
                retain(&mut writes, buckets);
            }
        }
        match commit.due {
            DueChange::Keep => {}
            DueChange::At(at) => writes.push(Write::ZAdd(
                self.key(&["due"]),
                at.to_string(),
                participant.as_bytes().to_vec(),
            )),
            DueChange::Clear => writes.push(Write::ZRem(self.key(&["due"]), participant.to_owned())),
        }
        if let Some(channel) = commit.publish_channel.take() {
            for text in commit.publish.drain(..) {
                writes.push(Write::Publish(channel.clone(), text));
            }
        }
        writes
    }

    async fn commit_record(&self, mut commit: Commit) -> Result<CommitOutcome, StoreError> {
        let participant = commit.key.encode();
        let writes = self.writes(&mut commit, &participant);
        let value = match &commit.record {
            Some(record) => {
                // About 600 bytes: written once, not grown step by step.
                let mut value = Vec::with_capacity(1024);
                {
                    use std::io::Write as _;
                    let _ = write!(value, "{}|", commit.version);
                }
                serde_json::to_writer(&mut value, record).expect("plain data always serializes");
                value
            }
            None => Vec::new(),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            record_key: self.key(&["rec:", &participant]),
            expected: commit.expected_version,
            value,
            writes,
            reply,
        };
        self.jobs()
            .send(job)
            .map_err(|_| StoreError::Internal("the commit worker stopped".into()))?;
        let answer = answer
            .await
            .map_err(|_| StoreError::Internal("the commit worker dropped a commit".into()))??;
        match answer {
            Value::Int(1) => {
                self.remember(&commit.key, commit.version, commit.record, commit.now_ms);
                Ok(CommitOutcome::Committed)
            }
            Value::BulkString(stored) => {
                let current = decode_record(&stored)?;
                self.remember(&commit.key, current.version, current.record.clone(), commit.now_ms);
                Ok(CommitOutcome::Conflict(Box::new(current)))
            }
            Value::Int(0) | Value::Nil => {
                self.remember(&commit.key, 0, None, commit.now_ms);
                Ok(CommitOutcome::Conflict(Box::default()))
            }
            other => Err(StoreError::Internal(format!("unexpected commit answer {other:?}"))),
        }
    }

    /// The commit worker's queue; starts the worker on first use.
    fn jobs(&self) -> &mpsc::UnboundedSender<Job> {
        self.inner.jobs.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let ttl_ms = self.options().live_ttl_ms.saturating_add(RECORD_GRACE_MS);
            tokio::spawn(commit_worker(
                self.connection(),
                self.inner.script.clone(),
                ttl_ms,
                receiver,
            ));
            sender
        })
    }

    /// The lowest index score of a live participant at `now_ms` (exclusive, as Redis writes a
    /// range): index scores lag `last_seen` by up to `LIVE_INDEX_INTERVAL_MS`.
    fn live_min_score(&self, now_ms: u64) -> String {
        let live_ttl = self.options().live_ttl_ms;
        format!("({}", now_ms.saturating_sub(live_ttl + LIVE_INDEX_INTERVAL_MS))
    }

    /// Reads the ids of every live meeting (one sorted-set read), then the participants and
    /// records of the page's meetings only, a chunk at a time until the page is full (a meeting
    /// whose participants all expired since their index entry was written is left out).
    async fn live_meetings_page_at(&self, now_ms: u64, page: &MeetingsPage) -> Result<Vec<MeetingView>, StoreError> {
        let mut connection = self.connection();
        let min_score = self.live_min_score(now_ms);
        let mut meeting_ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(&["meetings"]))
            .arg(&min_score)
            .arg("+inf")
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        meeting_ids.sort_unstable();
        let first = page
            .after
            .as_ref()
            .map_or(0, |after| meeting_ids.partition_point(|m| m <= after));
        let mut rest = &meeting_ids[first..];
        let mut meetings = Vec::new();
        while meetings.len() < page.limit && !rest.is_empty() {
            let take = (page.limit - meetings.len()).min(500).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            meetings.extend(
                self.live_of_meetings(chunk, &min_score, now_ms, &mut connection)
                    .await?,
            );
        }
        Ok(meetings)
    }

    /// The live participants of `meeting_ids`, as meetings (those with none left out).
    async fn live_of_meetings(
        &self,
        meeting_ids: &[String],
        min_score: &str,
        now_ms: u64,
        connection: &mut ConnectionManager,
    ) -> Result<Vec<MeetingView>, StoreError> {
        let live_ttl = self.options().live_ttl_ms;
        let mut pipe = redis::pipe();
        for meeting_id in meeting_ids {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.key(&["participants:", meeting_id]))
                .arg(min_score)
                .arg("+inf");
        }
        let participant_ids: Vec<Vec<String>> = pipe.query_async(connection).await.map_err(classify)?;
        let keys: Vec<ParticipantKey> = meeting_ids
            .iter()
            .zip(participant_ids)
            .flat_map(|(meeting_id, participants)| {
                participants
                    .into_iter()
                    .map(move |participant_id| ParticipantKey::new(meeting_id.clone(), participant_id))
            })
            .collect();
        let mut live = Vec::new();
        for chunk in keys.chunks(500) {
            let mut get = redis::cmd("MGET");
            for key in chunk {
                get.arg(self.key(&["rec:", &key.encode()]));
            }
            let values: Vec<Option<Vec<u8>>> = get.query_async(connection).await.map_err(classify)?;
            for (key, value) in chunk.iter().zip(values) {
                // A record that expired between the calls is skipped.
                let Some(record) = value.map(|v| decode_record(&v)).transpose()?.and_then(|v| v.record) else {
                    continue;
                };
                if !record.expired(now_ms, live_ttl) {
                    live.push((key.meeting_id.clone(), record.view(&key.participant_id)));
                }
            }
        }
        Ok(group_meetings(live))
    }

    /// Counts the live indexes by score: `meetings` and `live-participants` with a score in the
    /// live window, and whether `meeting_id`'s is (one round trip, three O(log n) commands).
    async fn live_count_at(&self, meeting_id: &str, now_ms: u64) -> Result<LiveCount, StoreError> {
        let mut connection = self.connection();
        let min_score = self.live_min_score(now_ms);
        let meetings = self.key(&["meetings"]);
        let (meeting_count, participant_count, score): (usize, usize, Option<f64>) = redis::pipe()
            .cmd("ZCOUNT")
            .arg(&meetings)
            .arg(&min_score)
            .arg("+inf")
            .cmd("ZCOUNT")
            .arg(self.key(&["live-participants"]))
            .arg(&min_score)
            .arg("+inf")
            .cmd("ZSCORE")
            .arg(&meetings)
            .arg(meeting_id)
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        let oldest = now_ms.saturating_sub(self.options().live_ttl_ms + LIVE_INDEX_INTERVAL_MS) as f64;
        Ok(LiveCount {
            meetings: meeting_count,
            participants: participant_count,
            meeting_known: score.is_some_and(|score| score > oldest),
        })
    }

    async fn due_at(&self, now_ms: u64, limit: usize) -> Result<Vec<ParticipantKey>, StoreError> {
        let mut connection = self.connection();
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(&["due"]))
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(members.iter().filter_map(|m| ParticipantKey::decode(m)).collect())
    }

    async fn alert_page_of(&self, page: &AlertPage) -> Result<Vec<AlertRecord>, StoreError> {
        if page.from_ms > page.to_ms || page.limit == 0 {
            return Ok(Vec::new());
        }
        let (key, highest) = self.alerts_of(page);
        let mut connection = self.connection();
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg(page.from_ms)
            .arg(highest)
            .arg("LIMIT")
            .arg(page.skip)
            // A negative count means all from the offset on.
            .arg(i64::try_from(page.limit).unwrap_or(-1))
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        members
            .iter()
            .map(|m| serde_json::from_str(m).map_err(|e| StoreError::Internal(format!("bad alert record: {e}"))))
            .collect()
    }

    /// The history series (meeting id, participant id) that may hold points of `query`, sorted.
    async fn history_series_of(&self, query: &HistoryQuery) -> Result<Vec<SeriesKey>, StoreError> {
        let mut connection = self.connection();
        let connection = &mut connection;
        // Which meetings and participants have points at or after `from`.
        let meetings: Vec<String> = match &query.meeting_id {
            Some(meeting_id) => vec![meeting_id.clone()],
            None => redis::cmd("ZRANGEBYSCORE")
                .arg(self.key(&["history-meetings"]))
                .arg(query.from_ms)
                .arg("+inf")
                .query_async(connection)
                .await
                .map_err(classify)?,
        };
        let mut series: Vec<(String, String)> = Vec::new();
        match &query.participant_id {
            Some(participant_id) => series.extend(meetings.iter().map(|m| (m.clone(), participant_id.clone()))),
            None if !meetings.is_empty() => {
                let mut pipe = redis::pipe();
                for meeting_id in &meetings {
                    pipe.cmd("ZRANGEBYSCORE")
                        .arg(self.key(&["history-participants:", meeting_id]))
                        .arg(query.from_ms)
                        .arg("+inf");
                }
                let participants: Vec<Vec<String>> = pipe.query_async(connection).await.map_err(classify)?;
                for (meeting_id, participants) in meetings.iter().zip(participants) {
                    series.extend(participants.into_iter().map(|p| (meeting_id.clone(), p)));
                }
            }
            None => {}
        }
        series.sort();
        Ok(series)
    }

    fn series_key(&self, meeting_id: &str, participant_id: &str) -> String {
        self.key(&["history:", &ParticipantKey::new(meeting_id, participant_id).encode()])
    }

    /// See [`Store::series_page`]: a round trip of counts and one of reads per
    /// `SERIES_PER_ROUND_TRIP` series, until the page is full.
    async fn series_page_of(&self, series: &[SeriesKey], page: &HistoryPage) -> Result<Vec<HistoryPoint>, StoreError> {
        let (query, limit) = (&page.query, page.limit);
        let mut points = Vec::new();
        if query.from_ms > query.to_ms || limit == 0 {
            return Ok(points);
        }
        let mut connection = self.connection();
        // The lowest score to read of each series (none: nothing left in it).
        let lowest = |key: &SeriesKey| {
            let lowest = match lowest_bucket(page, &key.0, &key.1)? {
                std::ops::Bound::Excluded(t) => format!("({t}"),
                _ => query.from_ms.to_string(),
            };
            Some((key.clone(), lowest))
        };
        // Counting first keeps the page bounded: each series is asked only for what still fits.
        for chunk in series[series_from(series, page.after.as_ref())..].chunks(SERIES_PER_ROUND_TRIP) {
            let chunk: Vec<(SeriesKey, String)> = chunk.iter().filter_map(&lowest).collect();
            let mut pipe = redis::pipe();
            for ((meeting_id, participant_id), lowest) in &chunk {
                pipe.cmd("ZCOUNT")
                    .arg(self.series_key(meeting_id, participant_id))
                    .arg(lowest)
                    .arg(query.to_ms);
            }
            let counts: Vec<usize> = pipe.query_async(&mut connection).await.map_err(classify)?;
            let mut pipe = redis::pipe();
            let mut wanted = Vec::new();
            let mut room = limit - points.len();
            for (((meeting_id, participant_id), lowest), count) in chunk.iter().zip(counts) {
                let take = count.min(room);
                if take > 0 {
                    room -= take;
                    pipe.cmd("ZRANGEBYSCORE")
                        .arg(self.series_key(meeting_id, participant_id))
                        .arg(lowest)
                        .arg(query.to_ms)
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(take);
                    wanted.push((meeting_id, participant_id));
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let answers: Vec<Vec<(String, u64)>> = pipe.query_async(&mut connection).await.map_err(classify)?;
            for ((meeting_id, participant_id), answer) in wanted.into_iter().zip(answers) {
                for (member, t) in answer {
                    let text = member.split_once(':').map_or("", |(_, text)| text);
                    let metrics: MetricsView = serde_json::from_str(text)
                        .map_err(|e| StoreError::Internal(format!("bad history point: {e}")))?;
                    points.push(HistoryPoint {
                        meeting_id: meeting_id.clone(),
                        participant_id: participant_id.clone(),
                        t,
                        metrics,
                    });
                }
            }
            if points.len() >= limit {
                break;
            }
        }
        Ok(points)
    }

    /// See [`Store::history_count`]: pipelined `ZCOUNT`s, `SERIES_PER_ROUND_TRIP` a round trip.
    async fn history_count_of(
        &self,
        series: &[SeriesKey],
        from_ms: u64,
        to_ms: u64,
        cap: usize,
    ) -> Result<usize, StoreError> {
        let mut count = 0;
        if from_ms > to_ms {
            return Ok(count);
        }
        let mut connection = self.connection();
        for chunk in series.chunks(SERIES_PER_ROUND_TRIP) {
            let mut pipe = redis::pipe();
            for (meeting_id, participant_id) in chunk {
                pipe.cmd("ZCOUNT")
                    .arg(self.series_key(meeting_id, participant_id))
                    .arg(from_ms)
                    .arg(to_ms);
            }
            let counts: Vec<usize> = pipe.query_async(&mut connection).await.map_err(classify)?;
            count += counts.into_iter().sum::<usize>();
            if count > cap {
                break;
            }
        }
        Ok(count)
    }

    /// The alert index `page` reads (of its meeting, or of all) and its highest score.
    fn alerts_of(&self, page: &AlertPage) -> (String, String) {
        let key = match &page.meeting_id {
            Some(meeting_id) => self.key(&["alerts-of:", meeting_id]),
            None => self.key(&["alerts"]),
        };
        let highest = if page.to_ms == u64::MAX {
            "+inf".to_owned()
        } else {
            page.to_ms.to_string()
        };
        (key, highest)
    }

    /// See [`Store::alert_count`]: one `ZCOUNT`.
    async fn alert_count_of(&self, page: &AlertPage) -> Result<usize, StoreError> {
        if page.from_ms > page.to_ms || page.limit == 0 {
            return Ok(0);
        }
        let (key, highest) = self.alerts_of(page);
        let mut connection = self.connection();
        let count: usize = redis::cmd("ZCOUNT")
            .arg(key)
            .arg(page.from_ms)
            .arg(highest)
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(count.min(page.limit))
    }

    async fn turn_usage_of(&self, from_ms: u64, to_ms: u64) -> Result<Vec<TurnUsage>, StoreError> {
        let from = turn_bucket(from_ms);
        if from > to_ms {
            return Ok(Vec::new());
        }
        let mut connection = self.connection();
        let buckets: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(&["turn-buckets"]))
            .arg(from)
            .arg(to_ms)
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for bucket in &buckets {
            pipe.cmd("HGETALL").arg(self.key(&["turn:", bucket]));
        }
        let answers: Vec<Vec<(String, u64)>> = pipe.query_async(&mut connection).await.map_err(classify)?;
        let mut sums = UsageSums::new();
        for (field, bytes) in answers.into_iter().flatten() {
            let key =
                serde_json::from_str(&field).map_err(|e| StoreError::Internal(format!("bad usage field: {e}")))?;
            *sums.entry(key).or_default() += bytes;
        }
        Ok(usage_rows(sums))
    }
}

/// Sends the commits waiting in `jobs` as one script call at a time (up to `MAX_IN_FLIGHT`
/// calls in flight), until every sender is gone. Records are written with a time to live of
/// `ttl_ms`.
async fn commit_worker(
    connection: ConnectionManager,
    script: Script,
    ttl_ms: u64,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let script = Arc::new(script);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if jobs.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (connection, script) = (connection.clone(), script.clone());
        tokio::spawn(async move {
            run_batch(connection, &script, ttl_ms, batch).await;
            drop(slot);
        });
    }
}

/// The `EVALSHA` call of `batch` (see [`COMMIT_SCRIPT`]), written straight into one command
/// buffer.
fn batch_command(script: &Script, ttl_ms: u64, batch: &[Job]) -> redis::Cmd {
    let keys: usize = batch
        .iter()
        .map(|job| 1 + job.writes.iter().filter(|w| !matches!(w, Write::Publish(..))).count())
        .sum();
    let mut command = redis::cmd("EVALSHA");
    command.arg(script.get_hash()).arg(keys);
    for job in batch {
        command.arg(&job.record_key);
        for write in &job.writes {
            match write {
                Write::ZAdd(key, ..)
                | Write::ZRemRange(key, ..)
                | Write::PExpire(key, _)
                | Write::HIncrBy(key, ..)
                | Write::ZRem(key, _) => command.arg(key),
                Write::Publish(..) => continue,
            };
        }
    }
    command.arg(batch.len()).arg(ttl_ms);
    let mut expected = String::new();
    for job in batch {
        expected.clear();
        if job.expected != 0 {
            use std::fmt::Write as _;
            let _ = write!(expected, "{}|", job.expected);
        }
        command.arg(&expected);
        command.arg(&job.value[..]).arg(job.writes.len());
        for write in &job.writes {
            match write {
                Write::ZAdd(_, score, member) => command.arg("z").arg(score).arg(&member[..]),
                Write::ZRemRange(_, min, max) => command.arg("r").arg(min).arg(max),
                Write::PExpire(_, ms) => command.arg("x").arg(ms),
                Write::HIncrBy(_, field, by) => command.arg("h").arg(field).arg(by),
                Write::ZRem(_, member) => command.arg("m").arg(member),
                Write::Publish(channel, text) => command.arg("p").arg(channel).arg(text.as_bytes()),
            };
        }
    }
    command
}

/// One script call for `batch`; every job gets its own answer (or the call's error).
async fn run_batch(mut connection: ConnectionManager, script: &Script, ttl_ms: u64, batch: Vec<Job>) {
    let command = batch_command(script, ttl_ms, &batch);
    let mut result = command.query_async::<Vec<Value>>(&mut connection).await;
    if matches!(&result, Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)) {
        // Redis restarted (or its scripts were flushed): load the script and send the call again
        // (a NOSCRIPT answer ran nothing).
        result = match script.prepare_invoke().load_async(&mut connection).await {
            Ok(_) => command.query_async::<Vec<Value>>(&mut connection).await,
            Err(error) => Err(error),
        };
    }
    let replies = batch.into_iter().map(|job| job.reply);
    match result {
        Ok(answers) if answers.len() == replies.len() => {
            for (reply, answer) in replies.zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Ok(answers) => {
            let message = format!(
                "the commit script answered {} of {} commits",
                answers.len(),
                replies.len()
            );
            for reply in replies {
                let _ = reply.send(Err(StoreError::Internal(message.clone())));
            }
        }
        Err(error) => {
            let unavailable = is_unavailable(&error);
            let message = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(if unavailable {
                    StoreError::Unavailable(message.clone())
                } else {
                    StoreError::Internal(message.clone())
                }));
            }
        }
    }
}

/// A stored `{version}|{JSON}` value.
fn decode_record(value: &[u8]) -> Result<Versioned, StoreError> {
    let bad = |detail: String| StoreError::Internal(format!("bad stored record: {detail}"));
    let split = value
        .iter()
        .position(|&b| b == b'|')
        .ok_or_else(|| bad("no version".into()))?;
    let version = std::str::from_utf8(&value[..split])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("no version".into()))?;
    let record = serde_json::from_slice(&value[split + 1..]).map_err(|e| bad(e.to_string()))?;
    Ok(Versioned {
        version,
        record: Some(record),
    })
}

/// JSON text of what the commit script stores.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

fn is_unavailable(error: &RedisError) -> bool {
    error.is_io_error() || error.is_timeout() || error.is_connection_dropped() || error.is_connection_refusal()
}

/// Connection trouble means "try again later" (503); anything else is a bug or a broken server.
fn classify(error: RedisError) -> StoreError {
    if is_unavailable(&error) {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Internal(error.to_string())
    }
}

impl Store for RedisStore {
    fn live_ttl_ms(&self) -> u64 {
        self.options().live_ttl_ms
    }

    fn load<'a>(&'a self, key: &'a ParticipantKey) -> StoreFuture<'a, Versioned> {
        Box::pin(self.load_record(key))
    }

    fn commit(&self, commit: Commit) -> StoreFuture<'_, CommitOutcome> {
        Box::pin(self.commit_record(commit))
    }

    fn due(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<ParticipantKey>> {
        Box::pin(self.due_at(now_ms, limit))
    }

    fn publish_target(&self) -> Option<&str> {
        Some(&self.inner.target)
    }

    fn derived<'a>(&'a self, meeting_id: &'a str, participant_id: &'a str) -> StoreFuture<'a, DerivedSlot> {
        // What is stored, not this process's cache: another process may have changed it.
        Box::pin(async move {
            let loaded = self
                .read_record(&ParticipantKey::new(meeting_id, participant_id))
                .await?;
            Ok(DerivedSlot {
                version: loaded.version,
                derived: loaded.record.map(|r| r.derived).unwrap_or_default(),
            })
        })
    }

    fn live_meetings_page<'a>(&'a self, now_ms: u64, page: &'a MeetingsPage) -> StoreFuture<'a, Vec<MeetingView>> {
        Box::pin(self.live_meetings_page_at(now_ms, page))
    }

    fn live_count<'a>(&'a self, meeting_id: &'a str, now_ms: u64) -> StoreFuture<'a, LiveCount> {
        Box::pin(self.live_count_at(meeting_id, now_ms))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut connection = self.connection();
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(drop)
                .map_err(classify)
        })
    }

    fn alert_history<'a>(&'a self, since_ms: u64, meeting_id: Option<&'a str>) -> StoreFuture<'a, Vec<AlertRecord>> {
        Box::pin(async move { self.alert_page_of(&AlertPage::since(since_ms, meeting_id)).await })
    }

    fn alert_page<'a>(&'a self, page: &'a AlertPage) -> StoreFuture<'a, Vec<AlertRecord>> {
        Box::pin(self.alert_page_of(page))
    }

    fn history_series<'a>(&'a self, query: &'a HistoryQuery) -> StoreFuture<'a, Vec<SeriesKey>> {
        Box::pin(self.history_series_of(query))
    }

    fn series_page<'a>(&'a self, series: &'a [SeriesKey], page: &'a HistoryPage) -> StoreFuture<'a, Vec<HistoryPoint>> {
        Box::pin(self.series_page_of(series, page))
    }

    fn history_count<'a>(
        &'a self,
        series: &'a [SeriesKey],
        from_ms: u64,
        to_ms: u64,
        cap: usize,
    ) -> StoreFuture<'a, usize> {
        Box::pin(self.history_count_of(series, from_ms, to_ms, cap))
    }

    fn alert_count<'a>(&'a self, page: &'a AlertPage) -> StoreFuture<'a, usize> {
        Box::pin(self.alert_count_of(page))
    }

    fn turn_usage(&self, from_ms: u64, to_ms: u64) -> StoreFuture<'_, Vec<TurnUsage>> {
        Box::pin(self.turn_usage_of(from_ms, to_ms))
    }
}
