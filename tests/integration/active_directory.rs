//! The Active Directory preset (`config/active-directory.toml`) against a real Samba AD DC:
//! the Entra-style user and group lifecycle, objectGUID ids, sAMAccountName and CN rules,
//! userAccountControl compare-and-swap, and unicodePwd passwords over LDAPS.

use crate::gateway::{localized_preset, preset_env, RunningGateway};
use crate::samba::SambaDc;
use ldap3::{Mod, SearchEntry};
use scim_ldap_gateway::config::FixedEnv;
use serde_json::{json, Value};
use std::collections::HashSet;

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

struct Ad {
    dc: SambaDc,
    gw: RunningGateway,
    users: String,
    groups: String,
}

impl std::ops::Deref for Ad {
    type Target = RunningGateway;
    fn deref(&self) -> &RunningGateway {
        &self.gw
    }
}

/// The preset pointed at a fresh DC, with its two OUs created, bound as Administrator.
async fn start() -> Ad {
    start_with(|t| t).await
}

async fn start_with(edit: impl FnOnce(String) -> String) -> Ad {
    let dc = SambaDc::start();
    let base = dc.base_dn().to_string();
    let users = format!("OU=SCIM Users,{base}");
    let groups = format!("OU=SCIM Groups,{base}");
    let mut ldap = dc.admin().await;
    for ou in [&users, &groups] {
        let name = ou.trim_start_matches("OU=").split(',').next().unwrap();
        ldap.add(
            ou,
            vec![
                ("objectClass", HashSet::from(["top", "organizationalUnit"])),
                ("ou", HashSet::from([name])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }
    let gw = RunningGateway::from_config(|dir| edit(preset_text(&dc, dir)), &ad_env(&dc)).await;
    Ad {
        dc,
        gw,
        users,
        groups,
    }
}

/// The AD preset pointed at `dc`, certificate files in `dir`, bound as Administrator.
fn preset_text(dc: &SambaDc, dir: &std::path::Path) -> String {
    localized_preset("active-directory.toml", dir, "AD_PASSWORD")
        .replace("ldaps://dc1.example.com:636", &dc.ldaps_url())
        .replace(
            "/etc/scim-ldap-gateway/tls/ad-ca.pem",
            &dc.ca_pem_path().display().to_string(),
        )
        .replace(
            "CN=scim-gateway,OU=Service Accounts,DC=example,DC=com",
            &dc.admin_dn(),
        )
        .replace("DC=example,DC=com", dc.base_dn())
}

fn ad_env(dc: &SambaDc) -> FixedEnv {
    preset_env("AD_PASSWORD", dc.admin_password())
}

#[tokio::test]
async fn check_finds_the_preset_matches_a_samba_dc() {
    let ad = start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = scim_ldap_gateway::config::Config::from_toml(
        &preset_text(&ad.dc, dir.path()),
        dir.path(),
        &ad_env(&ad.dc),
    )
    .unwrap();
    let report = scim_ldap_gateway::check::check_directory(&config).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let caps = &report.servers[0].capabilities;
    assert_eq!(caps.kind.to_string(), "Samba Active Directory");
    assert!(caps.paged_results && caps.permissive_modify);
    assert!(!caps.assertion && !caps.password_modify);
}

fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

fn all(e: &SearchEntry, attr: &str) -> Vec<String> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The objectGUID of an entry as canonical GUID text (wherever ldap3 put the bytes).
fn guid(e: &SearchEntry) -> String {
    let bytes: Vec<u8> = e
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("objectGUID"))
        .map(|(_, v)| v[0].clone())
        .or_else(|| first(e, "objectGUID").map(String::into_bytes))
        .expect("objectGUID");
    let b = &bytes;
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

fn uac(e: &SearchEntry) -> u32 {
    first(e, "userAccountControl").unwrap().parse().unwrap()
}

/// Whether `dn` can bind over LDAPS with `password`.
async fn can_bind(dc: &SambaDc, dn: &str, password: &str) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut dc.ca_pem().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let settings = ldap3::LdapConnSettings::new().set_config(std::sync::Arc::new(config));
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, &dc.ldaps_url())
        .await
        .unwrap();
    ldap3::drive!(conn);
    let ok = ldap
        .simple_bind(dn, password)
        .await
        .map(|r| r.rc == 0)
        .unwrap_or(false);
    let _ = ldap.unbind().await;
    ok
}

fn entra_user(user_name: &str, given: &str, family: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": format!("ext-{given}"),
        "userName": user_name,
        "active": true,
        "displayName": format!("{given} {family}"),
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "name": {"formatted": format!("{given} {family}"), "familyName": family, "givenName": given},
        ENTERPRISE: {"employeeNumber": "701984", "department": "R&D"}
    })
}

#[tokio::test]
async fn entra_user_lifecycle_on_a_samba_dc() {
    let ad = start().await;
    // Test Connection, then the existence check.
    ad.get("/Users?filter=userName%20eq%20%22none%40gw.test%22")
        .await
        .expect(200);

    // Create: a user object in the OU, enabled, with the derived names.
    let r = ad
        .post(
            "/Users",
            &entra_user("Isaac.Brock@gw.test", "Isaac", "Brock"),
        )
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    let dn = format!("CN=Isaac Brock,{}", ad.users);
    let e = ad.dc.entry(&dn).await.expect("created in the users OU");
    assert_eq!(guid(&e), id, "the SCIM id is the objectGUID");
    assert_eq!(first(&e, "sAMAccountName").as_deref(), Some("Isaac.Brock"));
    assert_eq!(
        first(&e, "userPrincipalName").as_deref(),
        Some("Isaac.Brock@gw.test")
    );
    assert_eq!(first(&e, "employeeID").as_deref(), Some("ext-Isaac"));
    assert_eq!(first(&e, "department").as_deref(), Some("R&D"));
    assert_eq!(uac(&e) & 2, 0, "enabled: uAC {}", uac(&e));
    assert!(all(&e, "objectClass").iter().any(|c| c == "user"));
    assert!(r.body["meta"]["created"].as_str().unwrap().ends_with('Z'));
    assert!(
        r.body["meta"]["version"].as_str().is_some(),
        "uSNChanged ETag"
    );

    // Read back by id and by filter.
    let got = ad.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(got.body["userName"], "Isaac.Brock@gw.test");
    let found = ad
        .get("/Users?filter=userName%20eq%20%22Isaac.Brock%40gw.test%22")
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    let by_id = ad
        .get(&format!("/Users?filter=id%20eq%20%22{id}%22"))
        .await
        .expect(200);
    assert_eq!(by_id.body["totalResults"], 1, "filter by objectGUID");

    // Entra's update shape: three attributes in one PATCH.
    ad.patch(
        &format!("/Users/{id}"),
        &json!({"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "title", "value": "Engineer"},
            {"op": "Replace", "path": "name.givenName", "value": "Isaak"},
            {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "Ops"}]}),
    )
    .await
    .expect(200);
    let e = ad.dc.entry(&dn).await.unwrap();
    assert_eq!(first(&e, "title").as_deref(), Some("Engineer"));
    assert_eq!(first(&e, "givenName").as_deref(), Some("Isaak"));
    assert_eq!(first(&e, "department").as_deref(), Some("Ops"));

    // Another bit set by an administrator must survive disable and enable.
    let mut ldap = ad.dc.admin().await;
    let flags = (uac(&e) | 0x10000).to_string(); // DONT_EXPIRE_PASSWORD
    ldap.modify(
        &dn,
        vec![Mod::Replace(
            "userAccountControl",
            HashSet::from([flags.as_str()]),
        )],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let disable = json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    for _ in 0..2 {
        // A repeated disable stays disabled (a toggle would re-enable).
        let r = ad
            .patch(&format!("/Users/{id}"), &disable)
            .await
            .expect(200);
        assert_eq!(r.body["active"], false);
        let u = uac(&ad.dc.entry(&dn).await.unwrap());
        assert_eq!(u & 2, 2, "disabled: {u}");
        assert_eq!(u & 0x10000, 0x10000, "other bits kept: {u}");
    }
    ad.patch(
        &format!("/Users/{id}"),
        &json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": true}]}),
    )
    .await
    .expect(200);
    let u = uac(&ad.dc.entry(&dn).await.unwrap());
    assert_eq!(u & 2, 0, "enabled: {u}");
    assert_eq!(u & 0x10000, 0x10000, "other bits kept: {u}");

    // Delete.
    ad.delete(&format!("/Users/{id}")).await.expect(204);
    assert!(ad.dc.entry(&dn).await.is_none());
    ad.get(&format!("/Users/{id}"))
        .await
        .expect_error(404, None);
}

#[tokio::test]
async fn names_clash_by_ad_rules() {
    let ad = start().await;
    // Two people with the same name: the second is "Name (2)".
    let a = ad
        .post("/Users", &entra_user("jsmith@gw.test", "John", "Smith"))
        .await
        .expect(201);
    let b = ad
        .post("/Users", &entra_user("john.smith@gw.test", "John", "Smith"))
        .await
        .expect(201);
    assert_ne!(a.body["id"], b.body["id"]);
    assert!(ad
        .dc
        .entry(&format!("CN=John Smith,{}", ad.users))
        .await
        .is_some());
    let second = ad
        .dc
        .entry(&format!("CN=John Smith (2),{}", ad.users))
        .await
        .expect("the second John Smith");
    assert_eq!(
        first(&second, "sAMAccountName").as_deref(),
        Some("john.smith")
    );
    // The same userName again: 409, nothing created.
    ad.post("/Users", &entra_user("jsmith@gw.test", "Jane", "Smith"))
        .await
        .expect_error(409, Some("uniqueness"));
    // A different userName whose sAMAccountName is taken (the part before @): 409.
    let r = ad
        .post("/Users", &entra_user("jsmith@other.test", "Jim", "Smith"))
        .await
        .expect_error(409, Some("uniqueness"));
    assert!(
        r.body["detail"].as_str().unwrap().contains("jsmith"),
        "{}",
        r.body
    );
    assert!(ad
        .dc
        .entry(&format!("CN=Jim Smith,{}", ad.users))
        .await
        .is_none());
    // A long userName is cut to AD's 20 characters.
    ad.post(
        "/Users",
        &entra_user("a.very.long.user.name.indeed@gw.test", "Long", "Name"),
    )
    .await
    .expect(201);
    let e = ad
        .dc
        .entry(&format!("CN=Long Name,{}", ad.users))
        .await
        .unwrap();
    assert_eq!(
        first(&e, "sAMAccountName").as_deref(),
        Some("a.very.long.user.nam")
    );
}

#[tokio::test]
async fn passwords_go_to_unicode_pwd_and_policy_refusals_are_400() {
    let ad = start().await;
    const PW: &str = "Okta-Set-Pa55word!";
    let mut body = entra_user("pat@gw.test", "Pat", "Doe");
    body["password"] = json!(PW);
    let r = ad.post("/Users", &body).await.expect(201);
    assert!(r.body.get("password").is_none());
    let id = r.body["id"].as_str().unwrap().to_string();
    let dn = format!("CN=Pat Doe,{}", ad.users);
    assert!(can_bind(&ad.dc, &dn, PW).await, "the user logs on with it");

    // Okta rotates it.
    const NEW: &str = "Rotated-Pa55word-2!";
    ad.patch(
        &format!("/Users/{id}"),
        &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"password": NEW}}]}),
    )
    .await
    .expect(200);
    assert!(can_bind(&ad.dc, &dn, NEW).await);
    // (The old one may still work for a while: AD's "old password allowed period".)

    // Too short: 400 invalidValue naming the policy, never the password; nothing changes.
    let r = ad
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": "title", "value": "Should Not Stick"},
                {"op": "replace", "path": "password", "value": "abc"}]}),
        )
        .await
        .expect_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("too short"), "{detail}");
    assert!(!detail.contains("\"abc\""), "{detail}");
    let e = ad.dc.entry(&dn).await.unwrap();
    assert_eq!(first(&e, "title"), None, "the same modify: nothing applied");
    assert!(can_bind(&ad.dc, &dn, NEW).await);

    // A create with a refused password creates nothing.
    let mut weak = entra_user("weak@gw.test", "Weak", "Pass");
    weak["password"] = json!("password");
    let r = ad
        .post("/Users", &weak)
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(
        r.body["detail"].as_str().unwrap().contains("complexity"),
        "{}",
        r.body
    );
    assert!(ad
        .dc
        .entry(&format!("CN=Weak Pass,{}", ad.users))
        .await
        .is_none());

    // Without a SCIM password: enabled, with a random password nobody knows.
    let r = ad
        .post("/Users", &entra_user("nopw@gw.test", "No", "Password"))
        .await
        .expect(201);
    assert_eq!(r.body["active"], true);
    let e = ad
        .dc
        .entry(&format!("CN=No Password,{}", ad.users))
        .await
        .unwrap();
    assert_eq!(uac(&e) & 2, 0);
    assert_eq!(uac(&e) & 0x20, 0, "not PASSWD_NOTREQD");
}

#[tokio::test]
async fn groups_and_memberships_on_a_samba_dc() {
    let ad = start().await;
    let mut ids = Vec::new();
    for (u, g, f) in [
        ("ann@gw.test", "Ann", "Lee"),
        ("bea@gw.test", "Bea", "Kim"),
        ("cal@gw.test", "Cal", "Ng"),
    ] {
        let r = ad.post("/Users", &entra_user(u, g, f)).await.expect(201);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let dn_of = |name: &str| format!("CN={name},{}", ad.users);
    // Entra creates the group, then adds members with PATCH.
    let r = ad
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Engineering", "externalId": "aad-group-1", "members": []}),
        )
        .await
        .expect(201);
    let gid = r.body["id"].as_str().unwrap().to_string();
    let gdn = format!("CN=Engineering,{}", ad.groups);
    let g = ad.dc.entry(&gdn).await.expect("a group object");
    assert_eq!(guid(&g), gid);
    assert_eq!(first(&g, "groupType").as_deref(), Some("-2147483646"));
    assert_eq!(first(&g, "info").as_deref(), Some("aad-group-1"));

    let add = |id: &str| {
        json!({"schemas": [PATCH], "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": id}]}]})
    };
    ad.patch(&format!("/Groups/{gid}"), &add(&ids[0]))
        .await
        .expect_status_in(&[200, 204]);
    ad.patch(&format!("/Groups/{gid}"), &add(&ids[1]))
        .await
        .expect_status_in(&[200, 204]);
    // Adding a member again is no error (AD refuses it even with permissive modify).
    ad.patch(&format!("/Groups/{gid}"), &add(&ids[0]))
        .await
        .expect_status_in(&[200, 204]);
    let members: HashSet<String> = all(&ad.dc.entry(&gdn).await.unwrap(), "member")
        .into_iter()
        .collect();
    assert_eq!(
        members,
        HashSet::from([dn_of("Ann Lee"), dn_of("Bea Kim")]),
        "{members:?}"
    );

    // The group's members and a user's groups, as SCIM shows them.
    let got = ad.get(&format!("/Groups/{gid}")).await.expect(200);
    let shown: HashSet<&str> = got.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(shown, HashSet::from([ids[0].as_str(), ids[1].as_str()]));
    let ann = ad.get(&format!("/Users/{}", ids[0])).await.expect(200);
    assert_eq!(ann.body["groups"][0]["value"], gid.as_str());

    // Remove one, and remove an absent one: no error either way.
    let remove = |id: &str| {
        json!({"schemas": [PATCH], "Operations": [
            {"op": "Remove", "path": format!("members[value eq \"{id}\"]")}]})
    };
    ad.patch(&format!("/Groups/{gid}"), &remove(&ids[0]))
        .await
        .expect_status_in(&[200, 204]);
    ad.patch(&format!("/Groups/{gid}"), &remove(&ids[2]))
        .await
        .expect_status_in(&[200, 204]);
    assert_eq!(
        all(&ad.dc.entry(&gdn).await.unwrap(), "member"),
        vec![dn_of("Bea Kim")]
    );

    // Deleting a member user: AD drops it from the group by itself.
    ad.delete(&format!("/Users/{}", ids[1])).await.expect(204);
    assert!(all(&ad.dc.entry(&gdn).await.unwrap(), "member").is_empty());

    // Rename, then delete the group.
    ad.patch(
        &format!("/Groups/{gid}"),
        &json!({"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "displayName", "value": "Platform"}]}),
    )
    .await
    .expect_status_in(&[200, 204]);
    assert!(ad
        .dc
        .entry(&format!("CN=Platform,{}", ad.groups))
        .await
        .is_some());
    ad.delete(&format!("/Groups/{gid}")).await.expect(204);
    assert!(ad
        .dc
        .entry(&format!("CN=Platform,{}", ad.groups))
        .await
        .is_none());
}

/// AD hands out a large `member` in ranges (MaxValRange 1500); with `member_range_size` the
/// gateway reads it in windows and merges them, so a 1600-member group shows every member.
#[tokio::test]
async fn large_groups_are_read_in_ranges() {
    const MEMBERS: usize = 1600;
    let ad = start_with(|t| {
        t.replace(
            "member_of_attribute = \"memberOf\"\n",
            "member_range_size = 1500\n",
        )
    })
    .await;
    let mut ldap = ad.dc.admin().await;
    let mut dns = Vec::new();
    for i in 0..MEMBERS {
        let dn = format!("CN=member{i:04},{}", ad.users);
        let sam = format!("member{i:04}");
        ldap.add(
            &dn,
            vec![
                (
                    "objectClass",
                    HashSet::from(["top", "person", "organizationalPerson", "user"]),
                ),
                ("sAMAccountName", HashSet::from([sam.as_str()])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        dns.push(dn);
    }
    let group_dn = format!("CN=Everyone Big,{}", ad.groups);
    let members: HashSet<&str> = dns.iter().map(String::as_str).collect();
    ldap.add(
        &group_dn,
        vec![
            ("objectClass", HashSet::from(["top", "group"])),
            ("sAMAccountName", HashSet::from(["everyone-big"])),
            ("member", members),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let found = ad
        .get("/Groups?filter=displayName%20eq%20%22Everyone%20Big%22&excludedAttributes=members")
        .await
        .expect(200);
    let id = found.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ad.get(&format!("/Groups/{id}")).await.expect(200);
    let shown = r.body["members"].as_array().unwrap();
    assert_eq!(shown.len(), MEMBERS, "every range was read");
}

/// objectGUIDs of entries outside the two OUs (a user and a group made for the test next to
/// them, Administrator and Domain Admins) are 404 on every verb of both collections, match no
/// filter, and cannot be added as members; none of those entries changes.
#[tokio::test]
async fn object_guids_outside_the_ous_are_404_on_every_verb() {
    let ad = start().await;
    let base = ad.dc.base_dn().to_string();
    let mut ldap = ad.dc.admin().await;
    let outside_user = format!("CN=Outside User,CN=Users,{base}");
    let outside_group = format!("CN=Outside Group,CN=Users,{base}");
    ldap.add(
        &outside_user,
        vec![
            (
                "objectClass",
                HashSet::from(["top", "person", "organizationalPerson", "user"]),
            ),
            ("sAMAccountName", HashSet::from(["outside.user"])),
            ("description", HashSet::from(["untouched"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.add(
        &outside_group,
        vec![
            ("objectClass", HashSet::from(["top", "group"])),
            ("sAMAccountName", HashSet::from(["outside.group"])),
            ("description", HashSet::from(["untouched"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let targets = [
        outside_user.clone(),
        outside_group.clone(),
        format!("CN=Administrator,CN=Users,{base}"),
        format!("CN=Domain Admins,CN=Users,{base}"),
    ];
    let mut before = Vec::new();
    for dn in &targets {
        before.push(ad.dc.entry(dn).await.expect(dn));
    }
    let guids: Vec<String> = before.iter().map(guid).collect();
    let patch = json!({"schemas":[PATCH],"Operations":[
        {"op":"replace","path":"displayName","value":"pwned"}]});
    let add_admin = json!({"schemas":[PATCH],"Operations":[
        {"op":"add","path":"members","value":[{"value": guids[2]}]}]});
    for id in &guids {
        for collection in ["Users", "Groups"] {
            let path = format!("/{collection}/{id}");
            ad.get(&path).await.expect_error(404, None);
            ad.patch(&path, &patch).await.expect_error(404, None);
            ad.patch(&path, &add_admin).await.expect_error(404, None);
            let put = if collection == "Users" {
                json!({"userName": "pwned@gw.test", "displayName": "pwned"})
            } else {
                json!({"displayName": "pwned"})
            };
            ad.put(&path, &put).await.expect_error(404, None);
            ad.delete(&path).await.expect_error(404, None);
            let filter = crate::gateway::url_encode(&format!("id eq \"{id}\""));
            let r = ad
                .get(&format!("/{collection}?filter={filter}"))
                .await
                .expect(200);
            assert_eq!(r.body["totalResults"], 0, "{collection} id eq {id}");
        }
    }
    // A managed group cannot take an outside user (or group) as a member.
    let r = ad
        .post("/Groups", &json!({"displayName": "Confined"}))
        .await
        .expect(201);
    let group = r.body["id"].as_str().unwrap().to_string();
    for id in &guids {
        let add = json!({"schemas":[PATCH],"Operations":[
            {"op":"add","path":"members","value":[{"value": id}]}]});
        ad.patch(&format!("/Groups/{group}"), &add)
            .await
            .expect_error(400, Some("invalidValue"));
    }
    let confined = ad
        .dc
        .entry(&format!("CN=Confined,{}", ad.groups))
        .await
        .unwrap();
    assert!(all(&confined, "member").is_empty(), "{confined:?}");
    for (dn, was) in targets.iter().zip(&before) {
        let now = ad.dc.entry(dn).await.expect(dn);
        assert_eq!(now.attrs, was.attrs, "{dn} changed");
    }
}
