//! GCRA in Redis: every node's requests draw on the same TATs. Redis's own
//! clock is used, so the nodes' clocks do not need to agree.

use std::sync::Arc;

use redis::Script;

use super::gcra::Rate;
use crate::keys::redis_store::RedisStore;

/// Checks every key first and consumes from all only when all allow, so
/// a request refused by one limit does not use up another.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {1, 0}
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if allow_at > now then
    if out[1] == 1 then out[1] = 0; out[2] = i end
    out[2 + 2 * i - 1] = tat - now
    out[2 + 2 * i] = allow_at - now
  else
    out[2 + 2 * i - 1] = new_tat - now
    out[2 + 2 * i] = 0
  end
  tats[i] = new_tat
end
if out[1] == 1 then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil((tats[i] - now) / 1000) + 1)
  end
end
return out
"#;

pub struct SharedLimiter {
    store: Arc<RedisStore>,
    script: Script,
}

/// Per key: how far ahead its TAT stands and, if refused, when to retry (µs).
pub struct SharedVerdict {
    pub refused_by: Option<usize>,
    pub per_key: Vec<(u64, u64)>,
}

impl SharedLimiter {
    pub fn new(store: Arc<RedisStore>) -> SharedLimiter {
        SharedLimiter {
            store,
            script: Script::new(GCRA),
        }
    }

    pub async fn check(&self, checks: &[(String, Rate)]) -> Result<SharedVerdict, String> {
        let mut conn = self.store.conn().await.map_err(|e| e.to_string())?;
        let mut invocation = self.script.prepare_invoke();
        for (key, rate) in checks {
            invocation
                .key(self.store.name(&format!("rl:{key}")))
                .arg(rate.interval_us)
                .arg(rate.tolerance_us);
        }
        let out: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if out.len() != 2 + 2 * checks.len() {
            return Err("unexpected answer from the rate-limit script".into());
        }
        let refused_by = (out[0] == 0).then(|| (out[1].max(1) - 1) as usize);
        let per_key = out[2..]
            .chunks(2)
            .map(|c| (c[0].max(0) as u64, c[1].max(0) as u64))
            .collect();
        Ok(SharedVerdict {
            refused_by,
            per_key,
        })
    }
}
