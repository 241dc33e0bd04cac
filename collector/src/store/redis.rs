//! The Redis store: live state shared by every collector process that uses the same Redis.
//!
//! Layout (all keys under a prefix, `vitals:` by default):
//! - `live:{meeting id length}:{meeting id}:{participant id}`: a hash with `meeting_id`,
//!   `participant_id`, `label`, `last_seen`, `last_seq`, and per metric field `v:{field}` (its
//!   JSON text) and `s:{field}` (the sequence number that wrote it);
//! - `seqs:{same suffix}`: the set of sequence numbers applied (idempotency);
//! - `meetings`: a sorted set of meeting ids scored by last batch time (ms);
//! - `participants:{meeting id}`: a sorted set of participant ids scored the same way;
//! - `derived:{suffix}`: a hash with `version` and `state` (the JSON of `Derived`);
//! - `alerts` and `alerts-of:{meeting id}`: sorted sets of alert records (JSON) scored by time;
//! - `history:{suffix}`: a sorted set of history points (JSON) scored by bucket start, one per
//!   bucket; `history-participants:{meeting id}` and `history-meetings` index them, scored by
//!   the latest bucket;
//! - `turn:{bucket start}`: a hash of relayed bytes per `[meeting, participant, server]` (JSON),
//!   indexed by the sorted set `turn-buckets`.
//!
//! History, alerts and usage expire after the retention time (trimmed on every write, and each
//! key expires when it has not been written for that long).
//!
//! The length prefix keeps the key unambiguous whatever characters the ids hold. Ingest runs as
//! one Lua script, so the duplicate check and the merge are atomic: two separate read and write
//! calls would lose fields when one participant's batches arrive concurrently.

use super::{
    decode_fields, encode_fields, events_in_seq_order, group_meetings, unique_seqs, IngestOutcome, MeetingView,
    ParticipantView, Store, StoreError, StoreFuture, FIELD_COUNT, FIELD_NAMES, LIVE_TTL_MS,
};
use super::{
    history_bucket, turn_bucket, usage_rows, DerivedCommit, DerivedSlot, HistoryPoint, HistoryQuery, MetricsView,
    UsageSums, DEFAULT_RETENTION_MS,
};
use crate::alerts::AlertRecord;
use crate::turn::TurnUsage;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use std::time::Duration;
use vitals_shared::wire::IngestBatch;

/// The merge rule of `LiveState::apply`, over the hash layout above. An empty string stands for
/// an absent field (JSON text is never empty).
///
/// KEYS: live hash, seqs set, meetings zset, participants zset.
/// ARGV: ttl_ms, now_ms, meeting_id, participant_id, has_label ("1"/"0"), label, field count,
/// the field names, then per event: seq, full ("1"/"0"), one value per field.
/// Returns: {applied seqs, HGETALL of the live hash}.
const INGEST_SCRIPT: &str = r#"
local live, seqs, meetings, participants = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl_ms = tonumber(ARGV[1])
local now_ms = tonumber(ARGV[2])
local field_count = tonumber(ARGV[7])
local names = {}
for f = 1, field_count do names[f] = ARGV[7 + f] end
local applied = {}
local i = 8 + field_count
while i <= #ARGV do
  local seq_text = ARGV[i]
  local seq = tonumber(seq_text)
  local full = ARGV[i + 1] == '1'
  if redis.call('SADD', seqs, seq_text) == 1 then
    applied[#applied + 1] = seq
    for f = 1, field_count do
      local value = ARGV[i + 1 + f]
      if full or value ~= '' then
        local writer = tonumber(redis.call('HGET', live, 's:' .. names[f])) or 0
        if writer < seq then
          redis.call('HSET', live, 's:' .. names[f], seq_text)
          if value == '' then
            redis.call('HDEL', live, 'v:' .. names[f])
          else
            redis.call('HSET', live, 'v:' .. names[f], value)
          end
        end
      end
    end
    -- MetricsFields::merge: relay details are cleared when relay use stops.
    if redis.call('HGET', live, 'v:using_relay') == 'false' then
      redis.call('HDEL', live, 'v:relay_protocol', 'v:relay_server')
    end
    local last_seq = tonumber(redis.call('HGET', live, 'last_seq')) or 0
    if seq > last_seq then redis.call('HSET', live, 'last_seq', seq_text) end
  end
  i = i + 2 + field_count
end
local last_seen = tonumber(redis.call('HGET', live, 'last_seen')) or 0
if now_ms > last_seen then redis.call('HSET', live, 'last_seen', ARGV[2]) end
redis.call('HSET', live, 'meeting_id', ARGV[3], 'participant_id', ARGV[4])
if ARGV[5] == '1' then redis.call('HSET', live, 'label', ARGV[6]) end
if redis.call('HEXISTS', live, 'last_seq') == 0 then redis.call('HSET', live, 'last_seq', '0') end
redis.call('PEXPIRE', live, ttl_ms)
redis.call('PEXPIRE', seqs, ttl_ms)
redis.call('ZADD', meetings, now_ms, ARGV[3])
redis.call('ZREMRANGEBYSCORE', meetings, '-inf', now_ms - ttl_ms)
redis.call('PEXPIRE', meetings, ttl_ms)
redis.call('ZADD', participants, now_ms, ARGV[4])
redis.call('ZREMRANGEBYSCORE', participants, '-inf', now_ms - ttl_ms)
redis.call('PEXPIRE', participants, ttl_ms)
return {applied, redis.call('HGETALL', live)}
"#;

/// The compare-and-set commit of `Store::commit_derived`, with everything it writes.
///
/// KEYS: derived hash, alerts, alerts-of meeting, history, history-participants,
/// history-meetings, turn bucket hash, turn-buckets.
/// ARGV: expected version, state JSON, now_ms, retention_ms, meeting id, participant id,
/// history bucket ('' for none), history JSON, turn bucket ('' for none), turn field, turn
/// bytes, then the alert records (JSON).
/// Returns 1 when committed, 0 when the version differed.
const COMMIT_SCRIPT: &str = r#"
local version = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0
if version ~= tonumber(ARGV[1]) then return 0 end
local now = tonumber(ARGV[3])
local keep = tonumber(ARGV[4])
local oldest = '(' .. tostring(now - keep)
redis.call('HSET', KEYS[1], 'version', version + 1, 'state', ARGV[2])
redis.call('PEXPIRE', KEYS[1], keep)
if #ARGV >= 12 then
  for i = 12, #ARGV do
    redis.call('ZADD', KEYS[2], now, ARGV[i])
    redis.call('ZADD', KEYS[3], now, ARGV[i])
  end
  for k = 2, 3 do
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', oldest)
    redis.call('PEXPIRE', KEYS[k], keep)
  end
end
if ARGV[7] ~= '' then
  local bucket = ARGV[7]
  redis.call('ZREMRANGEBYSCORE', KEYS[4], bucket, bucket)
  redis.call('ZADD', KEYS[4], bucket, ARGV[8])
  redis.call('ZADD', KEYS[5], bucket, ARGV[6])
  redis.call('ZADD', KEYS[6], bucket, ARGV[5])
  for k = 4, 6 do
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', oldest)
    redis.call('PEXPIRE', KEYS[k], keep)
  end
end
if ARGV[9] ~= '' then
  redis.call('HINCRBY', KEYS[7], ARGV[10], ARGV[11])
  redis.call('PEXPIRE', KEYS[7], keep)
  redis.call('ZADD', KEYS[8], ARGV[9], ARGV[9])
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', oldest)
  redis.call('PEXPIRE', KEYS[8], keep)
end
return 1
"#;

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

/// Live state in Redis through one multiplexed connection that reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    options: RedisOptions,
    ingest_script: Script,
    commit_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection holds the URL, which may hold a password.
        f.debug_struct("RedisStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares a store for `url` without connecting: the first request connects, and requests
    /// fail with `StoreError::Unavailable` while Redis is unreachable, then recover by themselves.
    pub fn new(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Internal(format!("bad Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.response_timeout))
            .set_response_timeout(Some(options.response_timeout))
            // Fail the request fast and let the client retry; the manager keeps reconnecting.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(classify)?;
        Ok(Self {
            connection,
            options,
            ingest_script: Script::new(INGEST_SCRIPT),
            commit_script: Script::new(COMMIT_SCRIPT),
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.options.key_prefix.clone();
        for part in parts {
            key.push_str(part);
        }
        key
    }

    fn participant_suffix(meeting_id: &str, participant_id: &str) -> String {
        format!("{}:{meeting_id}:{participant_id}", meeting_id.len())
    }

    async fn ingest_batch(&self, batch: &IngestBatch, now_ms: u64) -> Result<IngestOutcome, StoreError> {
        let suffix = Self::participant_suffix(&batch.meeting_id, &batch.participant_id);
        let mut invocation = self.ingest_script.prepare_invoke();
        invocation
            .key(self.key(&["live:", &suffix]))
            .key(self.key(&["seqs:", &suffix]))
            .key(self.key(&["meetings"]))
            .key(self.key(&["participants:", &batch.meeting_id]))
            .arg(self.options.live_ttl_ms)
            .arg(now_ms)
            .arg(&batch.meeting_id)
            .arg(&batch.participant_id)
            .arg(if batch.label.is_some() { "1" } else { "0" })
            .arg(batch.label.as_deref().unwrap_or(""))
            .arg(FIELD_COUNT)
            .arg(&FIELD_NAMES[..]);
        for event in events_in_seq_order(batch) {
            invocation.arg(event.seq).arg(if event.full { "1" } else { "0" });
            for value in encode_fields(&event.metrics) {
                invocation.arg(value.unwrap_or_default());
            }
        }
        let mut connection = self.connection.clone();
        let (mut applied, hash): (Vec<u64>, Vec<String>) =
            invocation.invoke_async(&mut connection).await.map_err(classify)?;
        applied.sort_unstable();
        let (_, participant) = participant_from_hash(&hash)
            .ok_or_else(|| StoreError::Internal("ingest script returned no state".into()))?;
        Ok(IngestOutcome {
            accepted: unique_seqs(batch),
            applied,
            participant,
        })
    }

    async fn live_meetings_at(&self, now_ms: u64) -> Result<Vec<MeetingView>, StoreError> {
        let mut connection = self.connection.clone();
        let live_since = now_ms.saturating_sub(self.options.live_ttl_ms);
        // Exclusive lower bound: a participant is live while now < last_seen + ttl.
        let min_score = format!("({live_since}");
        let meeting_ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(&["meetings"]))
            .arg(&min_score)
            .arg("+inf")
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        if meeting_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for meeting_id in &meeting_ids {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.key(&["participants:", meeting_id]))
                .arg(&min_score)
                .arg("+inf");
        }
        let participant_ids: Vec<Vec<String>> = pipe.query_async(&mut connection).await.map_err(classify)?;
        let mut pipe = redis::pipe();
        let mut any = false;
        for (meeting_id, participants) in meeting_ids.iter().zip(&participant_ids) {
            for participant_id in participants {
                any = true;
                let suffix = Self::participant_suffix(meeting_id, participant_id);
                pipe.cmd("HGETALL").arg(self.key(&["live:", &suffix]));
            }
        }
        if !any {
            return Ok(Vec::new());
        }
        let hashes: Vec<Vec<String>> = pipe.query_async(&mut connection).await.map_err(classify)?;
        // A hash that expired between the calls comes back empty and is skipped.
        let live = hashes
            .iter()
            .filter_map(|hash| participant_from_hash(hash))
            .filter(|(_, p)| p.last_seen > live_since);
        Ok(group_meetings(live))
    }
}

impl RedisStore {
    async fn derived_of(&self, meeting_id: &str, participant_id: &str) -> Result<DerivedSlot, StoreError> {
        let suffix = Self::participant_suffix(meeting_id, participant_id);
        let mut connection = self.connection.clone();
        let (version, state): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key(&["derived:", &suffix]))
            .arg("version")
            .arg("state")
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        Ok(match (version, state) {
            (Some(version), Some(state)) => DerivedSlot {
                version,
                derived: serde_json::from_str(&state)
                    .map_err(|e| StoreError::Internal(format!("bad derived state: {e}")))?,
            },
            _ => DerivedSlot::default(),
        })
    }

    async fn commit(&self, commit: &DerivedCommit) -> Result<bool, StoreError> {
        let suffix = Self::participant_suffix(&commit.meeting_id, &commit.participant_id);
        let turn_bucket_start = turn_bucket(commit.now_ms).to_string();
        let mut invocation = self.commit_script.prepare_invoke();
        invocation
            .key(self.key(&["derived:", &suffix]))
            .key(self.key(&["alerts"]))
            .key(self.key(&["alerts-of:", &commit.meeting_id]))
            .key(self.key(&["history:", &suffix]))
            .key(self.key(&["history-participants:", &commit.meeting_id]))
            .key(self.key(&["history-meetings"]))
            .key(self.key(&["turn:", &turn_bucket_start]))
            .key(self.key(&["turn-buckets"]))
            .arg(commit.expected_version)
            .arg(json(&commit.derived))
            .arg(commit.now_ms)
            .arg(self.options.retention_ms)
            .arg(&commit.meeting_id)
            .arg(&commit.participant_id);
        match &commit.history {
            // The bucket start leads the member, so equal metrics in two buckets stay two members.
            Some(metrics) => {
                let bucket = history_bucket(commit.now_ms);
                invocation.arg(bucket).arg(format!("{bucket}:{}", json(metrics)))
            }
            None => invocation.arg("").arg(""),
        };
        match &commit.relayed {
            Some(relayed) => invocation
                .arg(&turn_bucket_start)
                .arg(json(&(&commit.meeting_id, &commit.participant_id, &relayed.server)))
                .arg(relayed.bytes),
            None => invocation.arg("").arg("").arg(0),
        };
        for record in &commit.records {
            invocation.arg(json(record));
        }
        let mut connection = self.connection.clone();
        let committed: i64 = invocation.invoke_async(&mut connection).await.map_err(classify)?;
        Ok(committed == 1)
    }

    async fn alerts_since(&self, since_ms: u64, meeting_id: Option<&str>) -> Result<Vec<AlertRecord>, StoreError> {
        let key = match meeting_id {
            Some(meeting_id) => self.key(&["alerts-of:", meeting_id]),
            None => self.key(&["alerts"]),
        };
        let mut connection = self.connection.clone();
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg(since_ms)
            .arg("+inf")
            .query_async(&mut connection)
            .await
            .map_err(classify)?;
        members
            .iter()
            .map(|m| serde_json::from_str(m).map_err(|e| StoreError::Internal(format!("bad alert record: {e}"))))
            .collect()
    }

    async fn history_of(&self, query: &HistoryQuery) -> Result<Vec<HistoryPoint>, StoreError> {
        if query.from_ms > query.to_ms {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        // Which meetings and participants have points at or after `from`.
        let meetings: Vec<String> = match &query.meeting_id {
            Some(meeting_id) => vec![meeting_id.clone()],
            None => redis::cmd("ZRANGEBYSCORE")
                .arg(self.key(&["history-meetings"]))
                .arg(query.from_ms)
                .arg("+inf")
                .query_async(&mut connection)
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
                let participants: Vec<Vec<String>> = pipe.query_async(&mut connection).await.map_err(classify)?;
                for (meeting_id, participants) in meetings.iter().zip(participants) {
                    series.extend(participants.into_iter().map(|p| (meeting_id.clone(), p)));
                }
            }
            None => {}
        }
        if series.is_empty() {
            return Ok(Vec::new());
        }
        series.sort();
        let mut pipe = redis::pipe();
        for (meeting_id, participant_id) in &series {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.key(&["history:", &Self::participant_suffix(meeting_id, participant_id)]))
                .arg(query.from_ms)
                .arg(query.to_ms)
                .arg("WITHSCORES");
        }
        let answers: Vec<Vec<(String, u64)>> = pipe.query_async(&mut connection).await.map_err(classify)?;
        let mut points = Vec::new();
        for ((meeting_id, participant_id), answer) in series.into_iter().zip(answers) {
            for (member, t) in answer {
                let text = member.split_once(':').map_or("", |(_, text)| text);
                let metrics: MetricsView =
                    serde_json::from_str(text).map_err(|e| StoreError::Internal(format!("bad history point: {e}")))?;
                points.push(HistoryPoint {
                    meeting_id: meeting_id.clone(),
                    participant_id: participant_id.clone(),
                    t,
                    metrics,
                });
            }
        }
        Ok(points)
    }

    async fn turn_usage_of(&self, from_ms: u64, to_ms: u64) -> Result<Vec<TurnUsage>, StoreError> {
        let from = turn_bucket(from_ms);
        if from > to_ms {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
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

/// JSON text of what the commit script stores.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

/// Reads a participant (and its meeting id) from a flat HGETALL answer.
fn participant_from_hash(hash: &[String]) -> Option<(String, ParticipantView)> {
    let pairs: Vec<(&str, &str)> = hash
        .chunks_exact(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let meeting_id = get("meeting_id")?.to_owned();
    let metrics = decode_fields(pairs.iter().filter_map(|(k, v)| Some((k.strip_prefix("v:")?, *v))));
    Some((
        meeting_id,
        ParticipantView {
            participant_id: get("participant_id")?.to_owned(),
            label: get("label").map(str::to_owned),
            last_seen: get("last_seen")?.parse().ok()?,
            last_seq: get("last_seq").and_then(|s| s.parse().ok()).unwrap_or(0),
            metrics: metrics.into(),
        },
    ))
}

/// Connection trouble means "try again later" (503); anything else is a bug or a broken server.
fn classify(error: RedisError) -> StoreError {
    if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() || error.is_connection_refusal() {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Internal(error.to_string())
    }
}

impl Store for RedisStore {
    fn ingest<'a>(&'a self, batch: &'a IngestBatch, now_ms: u64) -> StoreFuture<'a, IngestOutcome> {
        Box::pin(self.ingest_batch(batch, now_ms))
    }

    fn live_meetings(&self, now_ms: u64) -> StoreFuture<'_, Vec<MeetingView>> {
        Box::pin(self.live_meetings_at(now_ms))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(drop)
                .map_err(classify)
        })
    }

    fn derived<'a>(&'a self, meeting_id: &'a str, participant_id: &'a str) -> StoreFuture<'a, DerivedSlot> {
        Box::pin(self.derived_of(meeting_id, participant_id))
    }

    fn commit_derived<'a>(&'a self, commit: &'a DerivedCommit) -> StoreFuture<'a, bool> {
        Box::pin(self.commit(commit))
    }

    fn alert_history<'a>(&'a self, since_ms: u64, meeting_id: Option<&'a str>) -> StoreFuture<'a, Vec<AlertRecord>> {
        Box::pin(self.alerts_since(since_ms, meeting_id))
    }

    fn history<'a>(&'a self, query: &'a HistoryQuery) -> StoreFuture<'a, Vec<HistoryPoint>> {
        Box::pin(self.history_of(query))
    }

    fn turn_usage(&self, from_ms: u64, to_ms: u64) -> StoreFuture<'_, Vec<TurnUsage>> {
        Box::pin(self.turn_usage_of(from_ms, to_ms))
    }
}
