//! `RedisSharedState`: one key per mark, `SET <prefix>:once:{<key>} 1 NX PX
//! <ttl>`, which answers OK only to the first setter while the key lives.
//! Expiry is Redis's own clock; memory is bounded by the marks' lifetimes.

use async_trait::async_trait;
use engine::ports::{SharedState, SharedStateError};
use redis::aio::ConnectionLike;

/// Marks shared by every gateway on one Redis server or cluster.
pub struct RedisSharedState<C> {
    conn: C,
    prefix: String,
}

impl<C> std::fmt::Debug for RedisSharedState<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSharedState")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<C> RedisSharedState<C> {
    pub fn new(conn: C, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }
}

#[async_trait]
impl<C> SharedState for RedisSharedState<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn use_once(
        &self,
        key: &str,
        ttl_ms: u64,
        _now_ms: u64,
    ) -> Result<bool, SharedStateError> {
        // A re-send after a lost reply would see its own mark and answer
        // false: the token is then refused, never accepted twice.
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:once:{{{key}}}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| SharedStateError::Unavailable(format!("redis: {e}")))?;
        Ok(set.is_some())
    }
}
