//! Turning a config file plus overrides into a validated `ServeConfig`.
//! Precedence: flag or `SECKILL_*` variable, then the file, then the default.

use crate::config::{
    invalid_key as invalid, AuthSettings, Backends, ConfigError, FileConfig, HotSettings, Limits,
    Production, RateLimitSettings, RedisTarget, ServeConfig,
};
use order_store::WriterConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Values given on the command line or in the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub no_demo: bool,
    pub connections_max: Option<usize>,
    pub grabs_inflight_max: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub body_bytes_max: Option<usize>,
    pub body_read_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub head_bytes_max: Option<usize>,
    pub headers_max: Option<usize>,
    pub writer_batch_rows: Option<usize>,
    pub writer_batch_interval_ms: Option<u64>,
    pub writer_rows_per_s: Option<u32>,
    pub redis_url: Option<String>,
    pub kafka_brokers: Option<String>,
    pub mysql_url: Option<String>,
    pub kafka_topic: Option<String>,
    pub kafka_group: Option<String>,
    pub kafka_message_timeout_ms: Option<u64>,
    pub kafka_delivery_wait_ms: Option<u64>,
    pub kafka_linger_ms: Option<u64>,
    pub kafka_session_timeout_ms: Option<u64>,
    pub jwt_secret: Option<String>,
    pub admin_token: Option<String>,
    pub funnel_secret: Option<String>,
    pub quiz_min_answer_ms: Option<u64>,
    pub quiz_token_ttl_ms: Option<u64>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub fn resolve(file: FileConfig, o: Overrides) -> Result<ServeConfig, ConfigError> {
    let listen = match o.listen.or(file.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|_| invalid("listen", "bad built-in default"))?,
    };
    let mut limits = file.limits.clone();
    set(&mut limits.connections_max, o.connections_max);
    set(&mut limits.grabs_inflight_max, o.grabs_inflight_max);
    set(&mut limits.header_read_timeout_ms, o.header_read_timeout_ms);
    set(&mut limits.body_bytes_max, o.body_bytes_max);
    set(&mut limits.body_read_timeout_ms, o.body_read_timeout_ms);
    set(&mut limits.idle_timeout_ms, o.idle_timeout_ms);
    set(&mut limits.request_timeout_ms, o.request_timeout_ms);
    set(&mut limits.head_bytes_max, o.head_bytes_max);
    set(&mut limits.headers_max, o.headers_max);
    check_limits(&limits)?;
    let mut quiz = file.quiz.clone();
    set(&mut quiz.min_answer_ms, o.quiz_min_answer_ms);
    set(&mut quiz.token_ttl_ms, o.quiz_token_ttl_ms);
    check_quiz(&quiz)?;
    let mut rate_limits = file.rate_limits.clone();
    let mut hot = file.hot.clone();
    // Read here rather than as flags: `SECKILL_LIMITS=off` is the switch
    // load tests and the project's own tests set on every process.
    apply_rate_env(&mut rate_limits, &mut hot, &|k| std::env::var(k).ok())?;
    check_rates(&mut rate_limits)?;
    check_hot(&hot)?;

    let mut auth = file.auth.clone();
    apply_auth_env(&mut auth, &|k| std::env::var(k).ok());
    check_auth(&auth, o.funnel_secret.is_some())?;

    let mut writer = WriterConfig::default();
    set(&mut writer.batch_rows_max, file.writer.batch_rows_max);
    set(&mut writer.batch_rows_max, o.writer_batch_rows);
    set(&mut writer.batch_interval_ms, file.writer.batch_interval_ms);
    set(&mut writer.batch_interval_ms, o.writer_batch_interval_ms);
    set(&mut writer.rows_per_s_max, file.writer.rows_per_s_max);
    set(&mut writer.rows_per_s_max, o.writer_rows_per_s);
    if writer.batch_rows_max == 0 || writer.batch_rows_max > 100_000 {
        return Err(invalid("writer.batch_rows_max", "must be 1 to 100000"));
    }
    if writer.rows_per_s_max == 0 {
        return Err(invalid("writer.rows_per_s_max", "must be at least 1"));
    }

    let ledger = pick(
        file.ledger.backend.as_deref(),
        "memory",
        "ledger.backend",
        &["memory", "redis"],
    )?;
    let log = pick(
        file.order_log.backend.as_deref(),
        "file",
        "order_log.backend",
        &["file", "kafka"],
    )?;
    let store = pick(
        file.order_store.backend.as_deref(),
        "sqlite",
        "order_store.backend",
        &["sqlite", "mysql"],
    )?;
    let backends = match (ledger, log, store) {
        ("memory", "file", "sqlite") => Backends::Embedded,
        ("redis", "kafka", "mysql") => Backends::Production(Box::new(production(&file, &o, &writer)?)),
        (l, g, s) => {
            return Err(invalid(
                "ledger.backend",
                format!(
                    "ledger {l}, order log {g} and store {s} do not form a profile: use memory/file/sqlite \
                     (embedded, one process) or redis/kafka/mysql (production, many gateways)"
                ),
            ))
        }
    };
    Ok(ServeConfig {
        listen,
        data_dir: o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data")),
        demo: !o.no_demo && file.demo.unwrap_or(matches!(backends, Backends::Embedded)),
        auth: AuthSettings {
            demo_identity: Some(
                auth.demo_identity
                    .unwrap_or(matches!(backends, Backends::Embedded)),
            ),
            ..auth
        },
        limits,
        writer,
        backends,
        jwt_secret: o.jwt_secret,
        admin_token: o.admin_token,
        funnel_secret: o.funnel_secret,
        quiz,
        rate_limits,
        hot,
    })
}

/// `SECKILL_JWT_ALGORITHM`, `SECKILL_JWT_PUBLIC_KEY_FILE`, `SECKILL_JWT_ISSUER`
/// and `SECKILL_JWT_AUDIENCE` over the file's `[auth]`.
pub fn apply_auth_env(a: &mut AuthSettings, env: &dyn Fn(&str) -> Option<String>) {
    if let Some(v) = env("SECKILL_JWT_ALGORITHM") {
        a.algorithm = v.trim().to_string();
    }
    if let Some(v) = env("SECKILL_JWT_PUBLIC_KEY_FILE") {
        a.public_key_file = Some(PathBuf::from(v));
    }
    if let Some(v) = env("SECKILL_JWT_ISSUER") {
        a.issuer = Some(v);
    }
    if let Some(v) = env("SECKILL_JWT_AUDIENCE") {
        a.audience = Some(v);
    }
}

/// Bounds of `[auth]`; a public-key gateway cannot derive the funnel key
/// from a secret it does not have, so that key must then be given.
fn check_auth(a: &AuthSettings, funnel_secret: bool) -> Result<(), ConfigError> {
    match a.algorithm.as_str() {
        "HS256" => {
            if a.public_key_file.is_some() {
                return Err(invalid(
                    "auth.public_key_file",
                    "only for EdDSA or RS256; HS256 uses SECKILL_JWT_SECRET",
                ));
            }
        }
        "EdDSA" | "RS256" => {
            if a.public_key_file.is_none() {
                return Err(invalid(
                    "auth.public_key_file",
                    format!("{} needs a public key (PEM file)", a.algorithm),
                ));
            }
            if !funnel_secret {
                return Err(invalid(
                    "SECKILL_FUNNEL_SECRET",
                    "must be set when the gateway only verifies tokens (EdDSA or RS256)",
                ));
            }
        }
        other => {
            return Err(invalid(
                "auth.algorithm",
                format!("{other:?} is not HS256, EdDSA or RS256"),
            ))
        }
    }
    for (key, v) in [("auth.issuer", &a.issuer), ("auth.audience", &a.audience)] {
        if v.as_deref().is_some_and(|s| s.is_empty() || s.len() > 256) {
            return Err(invalid(key, "must be 1 to 256 characters"));
        }
    }
    const DAY_S: u64 = 24 * 3600;
    if !(60..=crate::auth::TOKEN_TTL_S_MAX).contains(&a.max_lifetime_s) {
        return Err(invalid(
            "auth.max_lifetime_s",
            format!("must be 60 to {}", crate::auth::TOKEN_TTL_S_MAX),
        ));
    }
    if !(10..=a.max_lifetime_s).contains(&a.access_ttl_s) {
        return Err(invalid(
            "auth.access_ttl_s",
            "must be 10 to auth.max_lifetime_s",
        ));
    }
    if !(60..=90 * DAY_S).contains(&a.refresh_ttl_s) {
        return Err(invalid("auth.refresh_ttl_s", "must be 60 to 7776000"));
    }
    Ok(())
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn pick<'a>(
    value: Option<&'a str>,
    default: &'a str,
    key: &'static str,
    allowed: &[&str],
) -> Result<&'a str, ConfigError> {
    let v = value.unwrap_or(default);
    if allowed.contains(&v) {
        Ok(v)
    } else {
        Err(invalid(key, format!("{v:?} is not one of {allowed:?}")))
    }
}

fn check_quiz(q: &crate::config::QuizSettings) -> Result<(), ConfigError> {
    if q.min_answer_ms > 60_000 {
        return Err(invalid("quiz.min_answer_ms", "must be at most 60000"));
    }
    if q.token_ttl_ms <= q.min_answer_ms || q.token_ttl_ms > 3_600_000 {
        return Err(invalid(
            "quiz.token_ttl_ms",
            "must be above quiz.min_answer_ms and at most 3600000",
        ));
    }
    if q.render_threads > 256 {
        return Err(invalid("quiz.render_threads", "must be at most 256"));
    }
    Ok(())
}

/// `SECKILL_LIMITS=off|on` and the `SECKILL_RATE_*` / `SECKILL_HOT_*`
/// numbers over the file's `[rate_limits]` and `[hot]`; `env` looks a
/// variable up (the process environment, or a table in tests).
pub fn apply_rate_env(
    r: &mut RateLimitSettings,
    h: &mut HotSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if let Some(v) = env("SECKILL_LIMITS") {
        r.enabled = match v.trim().to_ascii_lowercase().as_str() {
            "off" | "0" | "false" | "no" => false,
            "on" | "1" | "true" | "yes" => true,
            _ => return Err(invalid("SECKILL_LIMITS", format!("{v:?} is not off or on"))),
        };
    }
    let number = |key: &'static str| -> Result<Option<u64>, ConfigError> {
        env(key)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| invalid(key, format!("{v:?} is not a whole number")))
            })
            .transpose()
    };
    let small = |key: &'static str| -> Result<Option<u32>, ConfigError> {
        number(key)?
            .map(|n| u32::try_from(n).map_err(|_| invalid(key, "must be below 2^32")))
            .transpose()
    };
    set(&mut r.ip_per_s, small("SECKILL_RATE_IP_PER_S")?);
    set(&mut r.ip_burst, small("SECKILL_RATE_IP_BURST")?);
    set(&mut r.user_per_s, small("SECKILL_RATE_USER_PER_S")?);
    set(&mut r.user_burst, small("SECKILL_RATE_USER_BURST")?);
    set(&mut r.global_per_s, small("SECKILL_RATE_GLOBAL_PER_S")?);
    set(&mut r.global_burst, small("SECKILL_RATE_GLOBAL_BURST")?);
    set(&mut r.campaign_per_s, small("SECKILL_RATE_CAMPAIGN_PER_S")?);
    set(&mut r.campaign_burst, small("SECKILL_RATE_CAMPAIGN_BURST")?);
    if let Some(n) = number("SECKILL_RATE_KEYS_MAX")? {
        r.keys_max = usize::try_from(n).unwrap_or(usize::MAX);
    }
    set(&mut h.window_ms, number("SECKILL_HOT_WINDOW_MS")?);
    set(
        &mut h.threshold_per_s,
        small("SECKILL_HOT_THRESHOLD_PER_S")?,
    );
    set(&mut h.factor, small("SECKILL_HOT_FACTOR")?);
    set(
        &mut h.inflight_percent,
        small("SECKILL_HOT_INFLIGHT_PERCENT")?,
    );
    Ok(())
}

/// Bounds of `[rate_limits]`; a burst of 0 becomes the rate.
fn check_rates(r: &mut RateLimitSettings) -> Result<(), ConfigError> {
    for (per_s, burst) in [
        (r.ip_per_s, &mut r.ip_burst),
        (r.user_per_s, &mut r.user_burst),
        (r.global_per_s, &mut r.global_burst),
        (r.campaign_per_s, &mut r.campaign_burst),
    ] {
        if *burst == 0 {
            *burst = per_s;
        }
    }
    let rates = [
        ("rate_limits.ip_per_s", r.ip_per_s, r.ip_burst),
        ("rate_limits.user_per_s", r.user_per_s, r.user_burst),
        ("rate_limits.global_per_s", r.global_per_s, r.global_burst),
        (
            "rate_limits.campaign_per_s",
            r.campaign_per_s,
            r.campaign_burst,
        ),
    ];
    for (key, per_s, burst) in rates {
        if per_s > RATE_PER_S_MAX || burst > RATE_PER_S_MAX {
            return Err(invalid(
                key,
                format!("rate and burst at most {RATE_PER_S_MAX}"),
            ));
        }
    }
    if !(1_000..=10_000_000).contains(&r.keys_max) {
        return Err(invalid("rate_limits.keys_max", "must be 1000 to 10000000"));
    }
    if !(100..=60_000).contains(&r.sweep_ms) {
        return Err(invalid("rate_limits.sweep_ms", "must be 100 to 60000"));
    }
    Ok(())
}

/// Rates above this are refused as typos (a gateway answers far fewer).
const RATE_PER_S_MAX: u32 = 10_000_000;

fn check_hot(h: &HotSettings) -> Result<(), ConfigError> {
    // Hot items must be reported within 3 s, so the window is at most that.
    if !(200..=3_000).contains(&h.window_ms) {
        return Err(invalid("hot.window_ms", "must be 200 to 3000"));
    }
    if h.threshold_per_s == 0 {
        return Err(invalid("hot.threshold_per_s", "must be at least 1"));
    }
    if !(1..=1_000).contains(&h.factor) {
        return Err(invalid("hot.factor", "must be 1 to 1000"));
    }
    if !(1..=100).contains(&h.inflight_percent) {
        return Err(invalid("hot.inflight_percent", "must be 1 to 100"));
    }
    if h.waiters_max > 100_000 {
        return Err(invalid("hot.waiters_max", "must be at most 100000"));
    }
    if h.wait_ms > 10_000 {
        return Err(invalid("hot.wait_ms", "must be at most 10000"));
    }
    Ok(())
}

fn check_limits(l: &Limits) -> Result<(), ConfigError> {
    if l.body_bytes_max < 64 || l.body_bytes_max > 1024 * 1024 {
        return Err(invalid("limits.body_bytes_max", "must be 64 to 1048576"));
    }
    if l.connections_max == 0 {
        return Err(invalid("limits.connections_max", "must be at least 1"));
    }
    if l.grabs_inflight_max == 0 {
        return Err(invalid("limits.grabs_inflight_max", "must be at least 1"));
    }
    if l.trusted_proxies.len() > 256 {
        return Err(invalid("limits.trusted_proxies", "at most 256 addresses"));
    }
    if l.header_read_timeout_ms == 0 {
        return Err(invalid(
            "limits.header_read_timeout_ms",
            "must be at least 1",
        ));
    }
    for (key, ms) in [
        ("limits.body_read_timeout_ms", l.body_read_timeout_ms),
        ("limits.idle_timeout_ms", l.idle_timeout_ms),
        ("limits.request_timeout_ms", l.request_timeout_ms),
    ] {
        if ms == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    // hyper's read buffer cannot be smaller than 8 KiB.
    if l.head_bytes_max < 8192 || l.head_bytes_max > 1024 * 1024 {
        return Err(invalid("limits.head_bytes_max", "must be 8192 to 1048576"));
    }
    if l.headers_max == 0 || l.headers_max > 1024 {
        return Err(invalid("limits.headers_max", "must be 1 to 1024"));
    }
    Ok(())
}

fn production(
    file: &FileConfig,
    o: &Overrides,
    _writer: &WriterConfig,
) -> Result<Production, ConfigError> {
    let l = &file.ledger;
    let redis = match (
        o.redis_url.clone().or_else(|| l.redis_url.clone()),
        &l.redis_cluster,
    ) {
        (Some(url), None) => RedisTarget::Single(url),
        (None, Some(nodes)) if !nodes.is_empty() => RedisTarget::Cluster(nodes.clone()),
        (None, None) => RedisTarget::Single("redis://127.0.0.1:6379/".into()),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "ledger.redis_cluster",
                "set redis_url or redis_cluster, not both",
            ))
        }
        (None, Some(_)) => return Err(invalid("ledger.redis_cluster", "needs at least one node")),
    };
    let buckets = l.buckets.unwrap_or(1);
    if buckets == 0 || buckets > stock_ledger::BUCKETS_MAX {
        return Err(invalid(
            "ledger.buckets",
            format!("must be 1 to {}", stock_ledger::BUCKETS_MAX),
        ));
    }
    let g = &file.order_log;
    let delivery_wait_ms = o
        .kafka_delivery_wait_ms
        .or(g.delivery_wait_ms)
        .unwrap_or(2_000);
    let linger_ms = o.kafka_linger_ms.or(g.linger_ms).unwrap_or(5);
    let message_timeout_ms = o
        .kafka_message_timeout_ms
        .or(g.message_timeout_ms)
        .unwrap_or(20_000);
    if delivery_wait_ms == 0 || delivery_wait_ms > 30_000 {
        return Err(invalid("order_log.delivery_wait_ms", "must be 1 to 30000"));
    }
    if message_timeout_ms < delivery_wait_ms {
        return Err(invalid(
            "order_log.message_timeout_ms",
            "must be at least delivery_wait_ms",
        ));
    }
    if linger_ms >= message_timeout_ms {
        return Err(invalid(
            "order_log.linger_ms",
            "must be less than message_timeout_ms",
        ));
    }
    let partitions = g.partitions.unwrap_or(8);
    if !(1..=1024).contains(&partitions) {
        return Err(invalid("order_log.partitions", "must be 1 to 1024"));
    }
    let topic = o
        .kafka_topic
        .clone()
        .or_else(|| g.topic.clone())
        .unwrap_or_else(|| "seckill.orders".into());
    let w = &file.writer;
    Ok(Production {
        redis,
        redis_key_prefix: l.key_prefix.clone().unwrap_or_else(|| "seckill".into()),
        redis_buckets: buckets,
        refresh_ms: l.refresh_ms.unwrap_or(200).max(10),
        kafka_brokers: o
            .kafka_brokers
            .clone()
            .or_else(|| g.brokers.clone())
            .unwrap_or_else(|| "127.0.0.1:9092".into()),
        // A topic override moves its dead letters along with it.
        kafka_dead_letter_topic: match (&o.kafka_topic, &w.dead_letter_topic) {
            (None, Some(d)) => d.clone(),
            _ => format!("{topic}.dead-letter"),
        },
        kafka_topic: topic,
        kafka_partitions: partitions,
        kafka_delivery_wait_ms: delivery_wait_ms,
        kafka_message_timeout_ms: message_timeout_ms,
        kafka_linger_ms: linger_ms,
        kafka_group_id: o
            .kafka_group
            .clone()
            .or_else(|| w.group_id.clone())
            .unwrap_or_else(|| "seckill-writers".into()),
        kafka_session_timeout_ms: o
            .kafka_session_timeout_ms
            .or(w.session_timeout_ms)
            .unwrap_or(order_log::kafka::SESSION_TIMEOUT_MS_DEFAULT)
            .clamp(1_000, 300_000),
        mysql_url: o
            .mysql_url
            .clone()
            .or_else(|| file.order_store.mysql_url.clone())
            .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".into()),
        mysql_pool_max: file.order_store.pool_max.unwrap_or(8).clamp(1, 256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        resolve(FileConfig::parse(text, "t.toml")?, Overrides::default())
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = parse("").unwrap();
        assert_eq!(c.backends, Backends::Embedded);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.demo);
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn production_profile_resolves_with_defaults() {
        let c = parse(
            "[ledger]\nbackend = \"redis\"\nredis_cluster = [\"redis://127.0.0.1:7000/\"]\n\
             [order_log]\nbackend = \"kafka\"\ntopic = \"o\"\n[order_store]\nbackend = \"mysql\"\n",
        )
        .unwrap();
        let Backends::Production(p) = c.backends else {
            panic!("not production")
        };
        assert_eq!(
            p.redis,
            RedisTarget::Cluster(vec!["redis://127.0.0.1:7000/".into()])
        );
        assert_eq!(p.kafka_dead_letter_topic, "o.dead-letter");
        assert_eq!(p.kafka_delivery_wait_ms, 2_000);
        assert!(!c.demo, "no demo campaign in production unless asked");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("colour = 1", "colour"),
            ("[limits]\nconnections_max = 0", "limits.connections_max"),
            ("[ledger]\nbackend = \"etcd\"", "ledger.backend"),
            ("[ledger]\nbackend = \"redis\"", "ledger.backend"),
            ("[writer]\nbatch_rows_max = 0", "writer.batch_rows_max"),
            ("listen = \"nowhere\"", "listen"),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?} gave {e:?}");
        }
    }

    #[test]
    fn kafka_overrides_apply_to_topic_group_and_dead_letters() {
        let file = FileConfig::parse(include_str!("../../config/production.toml"), "p").unwrap();
        let o = Overrides {
            kafka_topic: Some("t1".into()),
            kafka_group: Some("g1".into()),
            ..Overrides::default()
        };
        let Backends::Production(p) = resolve(file, o).unwrap().backends else {
            panic!("not production")
        };
        assert_eq!(
            (
                p.kafka_topic.as_str(),
                p.kafka_group_id.as_str(),
                p.kafka_dead_letter_topic.as_str()
            ),
            ("t1", "g1", "t1.dead-letter")
        );
    }

    #[test]
    fn overrides_beat_the_file() {
        let file = FileConfig::parse(
            "listen = \"127.0.0.1:1\"\n[limits]\nconnections_max = 5",
            "t",
        )
        .unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:2".parse().unwrap()),
            connections_max: Some(7),
            no_demo: true,
            ..Overrides::default()
        };
        let c = resolve(file, o).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.limits.connections_max, 7);
        assert!(!c.demo);
    }

    #[test]
    fn rate_limits_are_on_by_default_and_the_environment_overrides_them() {
        let c = parse("").unwrap();
        assert!(c.rate_limits.enabled);
        assert!(c.rate_limits.ip_per_s > c.rate_limits.user_per_s);
        assert_eq!(c.rate_limits.campaign_per_s, 0, "off unless configured");
        let table = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (mut r, mut h) = (RateLimitSettings::default(), HotSettings::default());
        let env = table(&[
            ("SECKILL_LIMITS", "off"),
            ("SECKILL_RATE_CAMPAIGN_PER_S", "40"),
            ("SECKILL_HOT_FACTOR", "3"),
        ]);
        apply_rate_env(&mut r, &mut h, &|k| env.get(k).cloned()).unwrap();
        check_rates(&mut r).unwrap();
        assert!(!r.enabled);
        assert_eq!(
            (r.campaign_per_s, r.campaign_burst),
            (40, 40),
            "burst 0 = rate"
        );
        assert_eq!(h.factor, 3);
        for (k, v) in [
            ("SECKILL_LIMITS", "maybe"),
            ("SECKILL_RATE_IP_PER_S", "-1"),
            ("SECKILL_RATE_USER_BURST", "99999999999"),
        ] {
            let env = table(&[(k, v)]);
            let e = apply_rate_env(&mut r, &mut h, &|k| env.get(k).cloned()).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
        for (text, key) in [
            ("[rate_limits]\nkeys_max = 10", "rate_limits.keys_max"),
            (
                "[rate_limits]\nip_per_s = 4000000000",
                "rate_limits.ip_per_s",
            ),
            ("[hot]\nwindow_ms = 60000", "hot.window_ms"),
            ("[hot]\ninflight_percent = 0", "hot.inflight_percent"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?} gave {e:?}");
        }
    }

    #[test]
    fn auth_section_is_checked_and_names_its_keys() {
        let c = parse("").unwrap();
        assert_eq!(c.auth.algorithm, "HS256");
        assert_eq!(
            c.auth.demo_identity,
            Some(true),
            "on in the embedded default"
        );
        assert_eq!(
            (c.auth.access_ttl_s, c.auth.refresh_ttl_s),
            (600, 7 * 24 * 3600)
        );
        for (text, key) in [
            ("[auth]\nalgorithm = \"none\"", "auth.algorithm"),
            ("[auth]\nalgorithm = \"HS384\"", "auth.algorithm"),
            ("[auth]\nalgorithm = \"RS256\"", "auth.public_key_file"),
            (
                "[auth]\nalgorithm = \"RS256\"\npublic_key_file = \"k.pem\"",
                "SECKILL_FUNNEL_SECRET",
            ),
            (
                "[auth]\npublic_key_file = \"k.pem\"",
                "auth.public_key_file",
            ),
            ("[auth]\nmax_lifetime_s = 99999999", "auth.max_lifetime_s"),
            ("[auth]\naccess_ttl_s = 0", "auth.access_ttl_s"),
            ("[auth]\nrefresh_ttl_s = 1", "auth.refresh_ttl_s"),
            ("[auth]\nissuer = \"\"", "auth.issuer"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?} gave {e:?}");
        }
        let o = Overrides {
            funnel_secret: Some("f".repeat(32)),
            ..Overrides::default()
        };
        let file = FileConfig::parse(
            "[auth]\nalgorithm = \"EdDSA\"\npublic_key_file = \"k.pem\"\ndemo_identity = false",
            "t.toml",
        )
        .unwrap();
        let c = resolve(file, o).unwrap();
        assert_eq!(c.auth.demo_identity, Some(false));
        let mut a = AuthSettings::default();
        apply_auth_env(&mut a, &|k| match k {
            "SECKILL_JWT_ALGORITHM" => Some("RS256".into()),
            "SECKILL_JWT_AUDIENCE" => Some("seckill".into()),
            _ => None,
        });
        assert_eq!(
            (a.algorithm.as_str(), a.audience.as_deref()),
            ("RS256", Some("seckill"))
        );
    }

    #[test]
    fn the_shipped_production_example_is_valid() {
        let text = include_str!("../../config/production.toml");
        let c = parse(text).unwrap();
        assert!(matches!(c.backends, Backends::Production(_)));
    }
}
