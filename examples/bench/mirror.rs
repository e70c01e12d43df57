//! Start-up check that the direct side mirrors the gateway: each write shape is sent once
//! through the gateway and once as its LDAP equivalent, to two users (and groups) whose names
//! differ only in a `-g`/`-d` tag, and the entries they leave must be the same but for that tag.
//! If the gateway writes more or other attributes than the direct side, the benchmark stops
//! instead of comparing unequal work.

use crate::entra::{
    add_members_body, add_members_mods, disable_body, disable_mods, group_dn, manager_body,
    manager_mods, user_dn, user_filter_path, EntraGroup, EntraUser, UserUpdate,
};
use crate::runner::{search, service_connection, Http, LdapOutcome};
use crate::scenarios::bulk_name;
use crate::Bench;
use ldap3::{Ldap, Scope};
use std::collections::{BTreeMap, BTreeSet};

const GATEWAY: &str = "mirror-g";
const DIRECT: &str = "mirror-d";

pub async fn check(b: &Bench) -> Result<(), String> {
    let http = Http::new(&b.gw);
    let mut ldap = service_connection(&b.slapd.url, &b.slapd.admin_password).await?;
    let mut admin = b.slapd.admin().await;
    let (gu, du) = (EntraUser::new(GATEWAY, 7), EntraUser::new(DIRECT, 7));
    let (g_dn, d_dn) = (user_dn(GATEWAY), user_dn(DIRECT));

    let id = http.create("/Users", &gu.body()).await?;
    ldap.add(&d_dn, du.entry())
        .await
        .named(|| format!("add {d_dn}"))?;
    compare(&mut admin, "gateway", "create", &g_dn, &d_dn).await?;

    let user_path = format!("/Users/{id}");
    http.patch(&user_path, &UserUpdate::new(GATEWAY, "1").body())
        .await?;
    ldap.modify(&d_dn, UserUpdate::new(DIRECT, "1").mods())
        .await
        .named(|| format!("modify {d_dn}"))?;
    compare(&mut admin, "gateway", "update", &g_dn, &d_dn).await?;

    http.patch(&user_path, &disable_body()).await?;
    ldap.modify(&d_dn, disable_mods())
        .await
        .named(|| format!("modify {d_dn}"))?;
    compare(&mut admin, "gateway", "disable", &g_dn, &d_dn).await?;

    http.patch(&user_path, &manager_body(&b.dir.bulk_ids[0]))
        .await?;
    ldap.modify(&d_dn, manager_mods(&user_dn(&bulk_name(0))))
        .await
        .named(|| format!("modify {d_dn}"))?;
    compare(&mut admin, "gateway", "manager", &g_dn, &d_dn).await?;

    let (gg, dg) = (
        EntraGroup {
            name: format!("{GATEWAY}-group"),
        },
        EntraGroup {
            name: format!("{DIRECT}-group"),
        },
    );
    let (gg_dn, dg_dn) = (group_dn(&gg.name), group_dn(&dg.name));
    let group_id = http.create("/Groups", &gg.body()).await?;
    ldap.add(&dg_dn, dg.entry())
        .await
        .named(|| format!("add {dg_dn}"))?;
    compare(&mut admin, "gateway", "group create", &gg_dn, &dg_dn).await?;

    http.patch(
        &format!("/Groups/{group_id}"),
        &add_members_body([id.as_str()]),
    )
    .await?;
    ldap.modify(&dg_dn, add_members_mods([d_dn.clone()]))
        .await
        .named(|| format!("modify {dg_dn}"))?;
    compare(&mut admin, "gateway", "member add", &gg_dn, &dg_dn).await?;

    for dn in [&gg_dn, &dg_dn, &g_dn, &d_dn] {
        admin.delete(dn).await.named(|| format!("delete {dn}"))?;
    }
    Ok(())
}

/// The same for the thin proxy (`proxy.rs`), which bounds the gateway only if it does the
/// gateway's directory work: the user its create adds must be the direct side's, and its match
/// must find the user the direct search finds, under the directory's id.
pub async fn check_thin_proxy(b: &Bench, proxy: &Http) -> Result<(), String> {
    let mut ldap = service_connection(&b.slapd.url, &b.slapd.admin_password).await?;
    let mut admin = b.slapd.admin().await;
    let (pu, du) = (EntraUser::new(GATEWAY, 7), EntraUser::new(DIRECT, 7));
    let (p_dn, d_dn) = (user_dn(GATEWAY), user_dn(DIRECT));
    proxy.create("/Users", &pu.body()).await?;
    ldap.add(&d_dn, du.entry())
        .await
        .named(|| format!("add {d_dn}"))?;
    compare(&mut admin, "thin proxy", "create", &p_dn, &d_dn).await?;
    for dn in [&p_dn, &d_dn] {
        admin.delete(dn).await.named(|| format!("delete {dn}"))?;
    }
    let path = user_filter_path(&bulk_name(0));
    let found = proxy.find(&path, 1).await?;
    if found.as_deref() != Some(b.dir.bulk_ids[0].as_str()) {
        return Err(format!(
            "the thin proxy answered GET {path} with the id {found:?}, not {}'s {}",
            bulk_name(0),
            b.dir.bulk_ids[0]
        ));
    }
    Ok(())
}

/// The user attributes of `dn` (and its lock), values with the gateway's tag turned into the
/// direct side's.
async fn normalised(
    admin: &mut Ldap,
    dn: &str,
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let attrs = ["*", "pwdAccountLockedTime"];
    let entry = search(admin, dn, Scope::Base, "(objectClass=*)", &attrs)
        .await?
        .pop()
        .ok_or_else(|| format!("{dn} is missing"))?;
    Ok(entry
        .attrs
        .into_iter()
        .map(|(a, vs)| {
            let vs = vs.into_iter().map(|v| v.replace(GATEWAY, DIRECT)).collect();
            (a.to_ascii_lowercase(), vs)
        })
        .collect())
}

/// Fails unless `gateway_dn` (written by `who`, the gateway or the thin proxy) and `direct_dn`
/// hold the same but for their tags.
async fn compare(
    admin: &mut Ldap,
    who: &str,
    step: &str,
    gateway_dn: &str,
    direct_dn: &str,
) -> Result<(), String> {
    let g = normalised(admin, gateway_dn).await?;
    let d = normalised(admin, direct_dn).await?;
    if g != d {
        return Err(format!(
            "after \"{step}\" the {who}'s entry and the direct side's differ, so the direct \
             side does not do the {who}'s work; fix examples/bench/entra.rs (or proxy.rs).\n  \
             {who} {gateway_dn}: {g:?}\n  direct {direct_dn}: {d:?}"
        ));
    }
    Ok(())
}
