//! Turning a config file plus overrides into a validated `ServeConfig`.
//! Precedence: flag or `SECKILL_*` variable, then the file, then the default.

use crate::config::{
    invalid_key as invalid, Backends, ConfigError, FileConfig, Limits, Production, RedisTarget,
    ServeConfig,
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
    check_limits(&limits)?;
    let mut quiz = file.quiz.clone();
    set(&mut quiz.min_answer_ms, o.quiz_min_answer_ms);
    set(&mut quiz.token_ttl_ms, o.quiz_token_ttl_ms);
    check_quiz(&quiz)?;

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
        limits,
        writer,
        backends,
        jwt_secret: o.jwt_secret,
        admin_token: o.admin_token,
        funnel_secret: o.funnel_secret,
        quiz,
    })
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
    fn the_shipped_production_example_is_valid() {
        let text = include_str!("../../config/production.toml");
        let c = parse(text).unwrap();
        assert!(matches!(c.backends, Backends::Production(_)));
    }
}
