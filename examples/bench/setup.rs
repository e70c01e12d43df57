//! What the benchmark runs on: the directory (the demo directory, plus Entra-shaped bulk users in
//! a 10-member and an all-users group, plus users in no group), and the release gateway from the
//! demo config with the edits that keep it from throttling the load by design.

use crate::entra::{user_dn, Attrs, EntraUser, PEOPLE};
use crate::gateway::{first, repo_file};
use crate::release_gateway::{set_key, ReleaseGateway};
use crate::runner::search;
use crate::scenarios::{bulk_name, pool_name, Directory};
use crate::slapd::{write_big_group_ldif_with, Slapd, BIG_GROUP_DN, SMALL_GROUP_DN};
use ldap3::Scope;
use serde::Serialize;
use std::io::Write as _;
use std::path::Path;

/// One change to the demo config.
#[derive(Serialize, Clone)]
pub struct Edit {
    pub section: &'static str,
    pub key: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// The demo config's settings that would throttle or reshape the load, changed.
pub fn config_edits(pool_size: u32, log_level: &str) -> Vec<Edit> {
    let edit = |section, key, value: &str, why| Edit {
        section,
        key,
        value: value.to_string(),
        why,
    };
    vec![
        edit("[rate_limits]", "enabled", "false", "per-token quotas (50 writes/s) would cap the load by design"),
        edit("[directory]", "max_in_flight", "1024", "back-pressure above what 64 clients can have in flight"),
        edit("[directory]", "max_queued", "4096", "back-pressure above what 64 clients can have in flight"),
        edit("[directory]", "pool_size", &pool_size.to_string(), "pooled LDAP connections (--pool-size; the demo config has 4)"),
        edit("[limits]", "max_connections", "4096", "room for the idle-connection measurement"),
        edit("[limits]", "max_requests_per_connection", "0", "no reconnect (a new TLS handshake) in the middle of a measurement"),
        edit("[limits]", "header_read_timeout_secs", "600", "keep-alive connections idle while the other side runs, and in the idle measurement"),
        edit("[limits]", "keep_alive_idle_secs", "600", "keep-alive connections idle while the other side runs, and in the idle measurement"),
        edit("[log]", "level", &format!("\"{log_level}\""), "no access-log line per request (--log-level); audit records still go to the log, as the demo config's [audit] output = \"log\" says"),
    ]
}

/// Starts the release gateway from the demo config with `edits`; `worker_threads` sets its
/// runtime's worker threads through tokio's `TOKIO_WORKER_THREADS` (none: one per core).
pub async fn start_gateway(
    slapd: &Slapd,
    edits: &[Edit],
    worker_threads: Option<usize>,
) -> ReleaseGateway {
    let env: Vec<(&str, String)> = worker_threads
        .map(|n| ("TOKIO_WORKER_THREADS", n.to_string()))
        .into_iter()
        .collect();
    ReleaseGateway::start_with_env(
        slapd,
        |text| {
            edits
                .iter()
                .fold(text, |t, e| set_key(&t, e.section, e.key, &e.value))
        },
        &env,
    )
    .await
}

fn ldif_entry(dn: &str, attrs: &Attrs) -> String {
    let mut out = format!("dn: {dn}\n");
    for (attr, values) in attrs {
        for v in values {
            out.push_str(&format!("{attr}: {v}\n"));
        }
    }
    out.push('\n');
    out
}

/// Writes the LDIF of `users` bulk users (shaped like users Entra created, all in the big group,
/// the first 10 in the small one) and `pool` users in no group.
pub fn write_ldif(path: &Path, users: usize, pool: usize) -> Result<(), String> {
    write_big_group_ldif_with(path, users, |i| {
        EntraUser::new(bulk_name(i), i).ldif_extra()
    });
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map(std::io::BufWriter::new)
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
    for i in 0..pool {
        let user = EntraUser::new(pool_name(i), users + i);
        out.write_all(ldif_entry(&user_dn(&user.user_name), &user.entry()).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    out.flush().map_err(|e| e.to_string())
}

/// The ids the scenarios need, read from the running directory.
pub async fn directory(slapd: &Slapd, users: usize, pool: usize) -> Result<Directory, String> {
    let mut admin = slapd.admin().await;
    let filter = "(|(uid=bulk*)(uid=pool*))";
    let entries = search(
        &mut admin,
        PEOPLE,
        Scope::OneLevel,
        filter,
        &["uid", "entryUUID"],
    )
    .await?;
    let mut bulk_ids = vec![String::new(); users];
    let mut pool_ids = vec![String::new(); pool];
    for e in entries {
        let (Some(uid), Some(id)) = (first(&e, "uid"), first(&e, "entryUUID")) else {
            continue;
        };
        let slot = match (uid.strip_prefix("bulk"), uid.strip_prefix("pool")) {
            (Some(n), _) => n.parse().ok().and_then(|n: usize| bulk_ids.get_mut(n)),
            (_, Some(n)) => n.parse().ok().and_then(|n: usize| pool_ids.get_mut(n)),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = id;
        }
    }
    if let Some(n) = bulk_ids.iter().chain(&pool_ids).position(String::is_empty) {
        return Err(format!(
            "user number {n} of the benchmark directory has no entryUUID"
        ));
    }
    let group_id = |dn: &'static str| async move {
        slapd
            .entry(dn)
            .await
            .and_then(|e| first(&e, "entryUUID"))
            .ok_or_else(|| format!("{dn} is missing"))
    };
    let demo = demo_mapping()?;
    Ok(Directory {
        users,
        pool,
        bulk_ids,
        pool_ids,
        small_group_id: group_id(SMALL_GROUP_DN).await?,
        big_group_id: group_id(BIG_GROUP_DN).await?,
        user_read_attrs: demo.user_read_attrs,
        user_filter: demo.user_filter,
        group_filter: demo.group_filter,
    })
}

/// What the scenarios take from the demo config's mapping.
struct DemoMapping {
    /// `[mapping.users] filter`.
    user_filter: String,
    /// What the gateway reads for a user list: the id, the timestamps, every mapped attribute,
    /// the disable attribute (ppolicy's lock) and the version (entryCSN), as
    /// `UserService::read_attributes_for` lists them.
    user_read_attrs: Vec<String>,
    /// `[mapping.groups] filter`.
    group_filter: String,
}

fn demo_mapping() -> Result<DemoMapping, String> {
    let path = repo_file("config/gateway.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config: toml::Value =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let users = &config["mapping"]["users"];
    let text_of = |v: Option<&toml::Value>, default: &str| {
        v.and_then(toml::Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    if text_of(users.get("disable").and_then(|d| d.get("type")), "ppolicy") != "ppolicy" {
        return Err("the demo config no longer disables with ppolicy; update the benchmark".into());
    }
    let mut attrs = vec![
        text_of(users.get("id_attribute"), "entryUUID"),
        text_of(users.get("created_attribute"), "createTimestamp"),
        text_of(users.get("modified_attribute"), "modifyTimestamp"),
    ];
    for a in users["attributes"].as_array().into_iter().flatten() {
        attrs.push(text_of(a.get("ldap"), ""));
    }
    attrs.push("pwdAccountLockedTime".into());
    attrs.push(text_of(
        config["directory"].get("version_attribute"),
        "entryCSN",
    ));
    Ok(DemoMapping {
        user_filter: text_of(users.get("filter"), "(objectClass=inetOrgPerson)"),
        user_read_attrs: attrs,
        group_filter: text_of(
            config["mapping"]["groups"].get("filter"),
            "(objectClass=groupOfNames)",
        ),
    })
}
