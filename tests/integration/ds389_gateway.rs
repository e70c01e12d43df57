//! The 389 Directory Server preset (`config/389ds.toml`) against a real 389-DS over LDAPI,
//! bound as Directory Manager: the Entra-style user lifecycle with nsUniqueId ids,
//! nsAccountLock disabling, Password Modify passwords under 389's password policy, groups with
//! gateway-kept memberships, and ETags once the USN plugin is on. Then bound as a service
//! account that has only the ACI the preset documents.

use crate::ds389::Ds389;
use crate::gateway::{
    first, localized_preset, preset_env, repo_file, url_encode, values, RunningGateway,
};
use ldap3::{LdapConnAsync, Mod};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const USN_PLUGIN: &str = "cn=USN,cn=plugins,cn=config";

struct Ds {
    ds: Ds389,
    gw: RunningGateway,
    people: String,
    groups: String,
}

impl std::ops::Deref for Ds {
    type Target = RunningGateway;
    fn deref(&self) -> &RunningGateway {
        &self.gw
    }
}

/// The preset in front of a fresh 389 with its two OUs.
async fn start() -> Ds {
    start_on(Ds389::start()).await
}

/// The preset in front of `ds` (which the caller may have configured), with its two OUs, over
/// LDAPI as Directory Manager.
async fn start_on(ds: Ds389) -> Ds {
    let (dn, password) = (
        ds.manager_dn().to_string(),
        ds.manager_password().to_string(),
    );
    start_as(ds, &dn, &password, None).await
}

/// The preset in front of `ds`, with its two OUs (carrying `ou_aci` if given), over LDAPI as
/// `bind_dn`.
async fn start_as(ds: Ds389, bind_dn: &str, bind_password: &str, ou_aci: Option<&str>) -> Ds {
    let people = format!("ou=people,{}", ds.suffix());
    let groups = format!("ou=groups,{}", ds.suffix());
    let mut ldap = ds.admin().await;
    for (dn, name) in [(&people, "people"), (&groups, "groups")] {
        add_ou(&mut ldap, dn, name, ou_aci).await;
    }
    let _ = ldap.unbind().await;
    if ou_aci.is_some() {
        wait_until_readable(&ds, bind_dn, bind_password, &[&people, &groups]).await;
    }

    let url = ds.ldapi_url();
    let gw = RunningGateway::from_config(
        |dir| {
            let mut text = localized_preset("389ds.toml", dir, "DS_PASSWORD");
            for (from, to) in [
                (
                    r#"url = "ldaps://ldap.example.org:636""#,
                    format!("url = {url:?}"),
                ),
                // LDAPI needs no CA.
                (
                    r#"ca_file = "/etc/scim-ldap-gateway/tls/directory-ca.pem""#,
                    String::new(),
                ),
                (
                    r#"bind_dn = "uid=scim-gateway,ou=services,dc=example,dc=org""#,
                    format!("bind_dn = {bind_dn:?}"),
                ),
            ] {
                assert!(text.contains(from), "the preset no longer has {from:?}");
                text = text.replace(from, &to);
            }
            text
        },
        &preset_env("DS_PASSWORD", bind_password),
    )
    .await;
    Ds {
        ds,
        gw,
        people,
        groups,
    }
}

fn preset_text() -> String {
    std::fs::read_to_string(repo_file("config/389ds.toml")).unwrap()
}

/// The ACI that the preset's header documents for the service account, on one line.
fn documented_aci() -> String {
    let text = preset_text();
    let mut lines = text.lines().skip_while(|l| !l.starts_with("#   aci: "));
    let first = lines.next().expect("the preset documents an ACI");
    let mut aci = first.trim_start_matches("#   aci: ").to_string();
    for line in lines.take_while(|l| l.starts_with("#     ")) {
        aci.push(' ');
        aci.push_str(line.trim_start_matches('#').trim());
    }
    aci
}

async fn add_ou(ldap: &mut ldap3::Ldap, dn: &str, name: &str, aci: Option<&str>) {
    let mut attrs = vec![
        ("objectClass", HashSet::from(["top", "organizationalUnit"])),
        ("ou", HashSet::from([name])),
    ];
    if let Some(aci) = aci {
        attrs.push(("aci", HashSet::from([aci])));
    }
    ldap.add(dn, attrs).await.unwrap().success().unwrap();
}

/// Waits until `dn` can read the `ou` of each of `ous`, which only an ACI of ours allows.
/// 389 answers the write that adds an ACI before its ACI store has it: the backend sends the
/// result, and only then does the frontend update the store (`plugin_call_acl_mods_update`).
/// A request sent at once was refused with insufficientAccessRights about once in 20 runs.
async fn wait_until_readable(ds: &Ds389, dn: &str, password: &str, ous: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (conn, mut ldap) = LdapConnAsync::new(&ds.url()).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(dn, password)
            .await
            .unwrap()
            .success()
            .unwrap();
        let mut readable = true;
        for ou in ous {
            let (entries, _) = ldap
                .search(ou, ldap3::Scope::Base, "(objectClass=*)", vec!["ou"])
                .await
                .unwrap()
                .success()
                .unwrap();
            readable &= entries
                .into_iter()
                .map(ldap3::SearchEntry::construct)
                .any(|e| !values(&e, "ou").is_empty());
        }
        let _ = ldap.unbind().await;
        if readable {
            return;
        }
        assert!(Instant::now() < deadline, "{dn} still cannot read {ous:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Ds {
    fn user_dn(&self, uid: &str) -> String {
        format!("uid={uid},{}", self.people)
    }

    fn group_dn(&self, cn: &str) -> String {
        format!("cn={cn},{}", self.groups)
    }

    /// The result code of a simple bind as `dn` over plain LDAP (0 success, 49 wrong
    /// password, 53 account inactivated).
    async fn bind_rc(&self, dn: &str, password: &str) -> u32 {
        let (conn, mut ldap) = LdapConnAsync::new(&self.ds.url()).await.unwrap();
        ldap3::drive!(conn);
        let rc = ldap.simple_bind(dn, password).await.unwrap().rc;
        let _ = ldap.unbind().await;
        rc
    }

    /// How many modify operations on `dn` the access log shows so far.
    fn modifies_of(&self, dn: &str) -> usize {
        let wanted = format!(" MOD dn=\"{dn}\"").to_ascii_lowercase();
        self.ds
            .log()
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains(&wanted))
            .count()
    }

    /// Sets a global password policy on cn=config, as an administrator would.
    async fn set_global_policy(&self, changes: &[(&str, &str)]) {
        let mut ldap = self.ds.admin().await;
        let mods = changes
            .iter()
            .map(|(attr, value)| Mod::Replace(*attr, HashSet::from([*value])))
            .collect();
        ldap.modify("cn=config", mods)
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
    }
}

fn entra_user(user_name: &str, given: &str, family: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": format!("ext-{given}"),
        "userName": user_name,
        "active": true,
        "displayName": format!("{given} {family}"),
        "emails": [{"primary": true, "type": "work", "value": format!("{given}.{family}@gw.test")}],
        "name": {"formatted": format!("{given} {family}"), "familyName": family, "givenName": given},
        ENTERPRISE: {"employeeNumber": "701984", "department": "R&D"}
    })
}

fn replace_op(path: &str, value: Value) -> Value {
    json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": path, "value": value}]})
}

#[tokio::test]
async fn entra_user_lifecycle_on_389() {
    let d = start().await;
    // Test Connection, then the existence check.
    let none = d
        .get("/Users?filter=userName%20eq%20%22none%22")
        .await
        .expect(200);
    assert_eq!(none.body["totalResults"], 0);

    // Create with everything Entra sends by default (but the country, which has no attribute).
    let mut body = entra_user("isaac", "Isaac", "Brock");
    body["title"] = json!("Analyst");
    body["preferredLanguage"] = json!("en-CA");
    body["phoneNumbers"] = json!([
        {"type": "work", "value": "+1 613 555 0100"},
        {"type": "mobile", "value": "+1 613 555 0101"},
        {"type": "fax", "value": "+1 613 555 0102"}]);
    body["addresses"] = json!([{"type": "work", "primary": true,
        "streetAddress": "1 Main Street", "locality": "Ottawa", "region": "ON",
        "postalCode": "K1A 0B1", "formatted": "1 Main Street, Ottawa ON K1A 0B1"}]);
    let r = d.post("/Users", &body).await.expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    let dn = d.user_dn("isaac");
    let e = d.ds.entry(&dn).await.expect("created in ou=people");
    assert_eq!(
        first(&e, "nsUniqueId").as_deref(),
        Some(id.as_str()),
        "the SCIM id is the nsUniqueId"
    );
    for (attr, want) in [
        ("uid", "isaac"),
        ("employeeType", "ext-Isaac"),
        ("displayName", "Isaac Brock"),
        ("cn", "Isaac Brock"),
        ("sn", "Brock"),
        ("givenName", "Isaac"),
        ("mail", "Isaac.Brock@gw.test"),
        ("title", "Analyst"),
        ("preferredLanguage", "en-CA"),
        ("telephoneNumber", "+1 613 555 0100"),
        ("mobile", "+1 613 555 0101"),
        ("facsimileTelephoneNumber", "+1 613 555 0102"),
        ("street", "1 Main Street"),
        ("l", "Ottawa"),
        ("st", "ON"),
        ("postalCode", "K1A 0B1"),
        ("postalAddress", "1 Main Street, Ottawa ON K1A 0B1"),
        ("employeeNumber", "701984"),
        ("departmentNumber", "R&D"),
    ] {
        assert_eq!(values(&e, attr), [want], "{attr} in {e:?}");
    }
    let classes: HashSet<String> = values(&e, "objectClass")
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    assert!(classes.contains("inetorgperson"), "{classes:?}");
    assert!(values(&e, "nsAccountLock").is_empty(), "created enabled");
    assert_eq!(r.body["active"], true);
    assert!(r.body["meta"]["created"].as_str().unwrap().ends_with('Z'));
    // No USN plugin: no version, hence no ETag and no guard.
    assert!(r.body["meta"].get("version").is_none(), "{}", r.body);
    assert!(r.headers.get("etag").is_none());

    // Read back by id and by both filters.
    let got = d.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(got.body["userName"], "isaac");
    assert_eq!(got.body["externalId"], "ext-Isaac");
    assert_eq!(got.body[ENTERPRISE]["department"], "R&D");
    let found = d
        .get(&format!(
            "/Users?filter={}",
            url_encode("userName eq \"isaac\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    let by_id = d
        .get(&format!(
            "/Users?filter={}",
            url_encode(&format!("id eq \"{id}\""))
        ))
        .await
        .expect(200);
    assert_eq!(by_id.body["totalResults"], 1, "filter by nsUniqueId");
    assert_eq!(by_id.body["Resources"][0]["userName"], "isaac");

    // Entra's update shape: three attributes in one PATCH.
    d.patch(
        &format!("/Users/{id}"),
        &json!({"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "title", "value": "Engineer"},
            {"op": "Replace", "path": "name.givenName", "value": "Isaak"},
            {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "Ops"}]}),
    )
    .await
    .expect(200);
    let e = d.ds.entry(&dn).await.unwrap();
    assert_eq!(values(&e, "title"), ["Engineer"]);
    assert_eq!(values(&e, "givenName"), ["Isaak"]);
    assert_eq!(values(&e, "departmentNumber"), ["Ops"]);
    assert_eq!(values(&e, "displayName"), ["Isaac Brock"], "untouched");

    // The manager arrives as an nsUniqueId and is stored as a DN.
    let boss = d
        .post("/Users", &entra_user("mona", "Mona", "Lisa"))
        .await
        .expect(201);
    let boss_id = boss.body["id"].as_str().unwrap();
    let r = d
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH], "Operations": [
                {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": boss_id}]}),
        )
        .await
        .expect(200);
    assert_eq!(r.body[ENTERPRISE]["manager"]["value"], boss_id);
    assert_eq!(
        values(&d.ds.entry(&dn).await.unwrap(), "manager"),
        [d.user_dn("mona")]
    );

    // A password, so that disabling can be seen to lock the user out.
    const PW: &str = "Quiet-Harbor-4417";
    d.patch(&format!("/Users/{id}"), &replace_op("password", json!(PW)))
        .await
        .expect(200);
    assert_eq!(d.bind_rc(&dn, PW).await, 0);

    // Disable (Entra sends the boolean as a string): one modify.
    let disable = replace_op("active", json!("False"));
    let writes = d.modifies_of(&dn);
    let r = d.patch(&format!("/Users/{id}"), &disable).await.expect(200);
    assert_eq!(r.body["active"], false);
    assert_eq!(
        d.modifies_of(&dn),
        writes + 1,
        "one modify in the access log"
    );
    let e = d.ds.entry(&dn).await.unwrap();
    assert_eq!(values(&e, "nsAccountLock"), ["TRUE"]);
    assert_eq!(d.bind_rc(&dn, PW).await, 53, "account inactivated");
    let got = d.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(got.body["active"], false);
    let disabled = d
        .get(&format!("/Users?filter={}", url_encode("active eq false")))
        .await
        .expect(200);
    assert_eq!(disabled.body["totalResults"], 1);
    assert_eq!(disabled.body["Resources"][0]["id"], id.as_str());

    // Disabling again writes nothing and stays disabled (a toggle would re-enable).
    let r = d.patch(&format!("/Users/{id}"), &disable).await.expect(200);
    assert_eq!(r.body["active"], false);
    assert_eq!(
        d.modifies_of(&dn),
        writes + 1,
        "no modify for a no-op disable"
    );
    assert_eq!(
        values(&d.ds.entry(&dn).await.unwrap(), "nsAccountLock"),
        ["TRUE"]
    );
    assert_eq!(d.bind_rc(&dn, PW).await, 53);

    // Enable: the attribute goes, the password works again.
    let r = d
        .patch(&format!("/Users/{id}"), &replace_op("active", json!(true)))
        .await
        .expect(200);
    assert_eq!(r.body["active"], true);
    assert!(values(&d.ds.entry(&dn).await.unwrap(), "nsAccountLock").is_empty());
    assert_eq!(d.bind_rc(&dn, PW).await, 0);

    // Delete.
    d.delete(&format!("/Users/{id}")).await.expect(204);
    assert!(d.ds.entry(&dn).await.is_none());
    d.get(&format!("/Users/{id}")).await.expect_error(404, None);
    let found = d
        .get(&format!(
            "/Users?filter={}",
            url_encode("userName eq \"isaac\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 0);
}

#[tokio::test]
async fn passwords_go_through_password_modify_and_policy_refusals_are_400() {
    let d = start().await;
    const PW: &str = "Okta-Set-Pa55word!";
    let mut body = entra_user("quinn", "Quinn", "Avery");
    body["password"] = json!(PW);
    let r = d.post("/Users", &body).await.expect(201);
    assert!(r.body.get("password").is_none(), "write-only");
    let id = r.body["id"].as_str().unwrap().to_string();
    let dn = d.user_dn("quinn");
    let stored = first(&d.ds.entry(&dn).await.unwrap(), "userPassword").unwrap();
    assert!(stored.starts_with("{PBKDF2"), "hashed by 389: {stored}");
    assert!(!stored.contains(PW));
    assert_eq!(d.bind_rc(&dn, PW).await, 0, "the user binds with it");
    assert_eq!(d.bind_rc(&dn, "Okta-Set-Pa55word?").await, 49);

    // Okta rotates it with a path-less replace.
    const NEW: &str = "Rotated-Pa55word-2!";
    let r = d
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"password": NEW}}]}),
        )
        .await
        .expect(200);
    assert!(r.body.get("password").is_none());
    let rotated = first(&d.ds.entry(&dn).await.unwrap(), "userPassword").unwrap();
    assert!(rotated.starts_with("{PBKDF2"), "{rotated}");
    assert_ne!(rotated, stored);
    assert_eq!(d.bind_rc(&dn, NEW).await, 0);
    assert_eq!(d.bind_rc(&dn, PW).await, 49, "the old one is gone");

    // 389's global policy: at least 12 characters, syntax checked.
    d.set_global_policy(&[("passwordMinLength", "12"), ("passwordCheckSyntax", "on")])
        .await;
    const SHORT: &str = "Short-pw-9";
    let r = d
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": "title", "value": "Should Not Stick"},
                {"op": "replace", "path": "password", "value": SHORT}]}),
        )
        .await
        .expect_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("password policy"), "{detail}");
    assert!(!detail.contains(SHORT), "{detail}");
    let e = d.ds.entry(&dn).await.unwrap();
    assert!(values(&e, "title").is_empty(), "the title was reverted");
    assert_eq!(first(&e, "userPassword").unwrap(), rotated);
    assert_eq!(d.bind_rc(&dn, NEW).await, 0);
    assert_eq!(d.bind_rc(&dn, SHORT).await, 49);

    // A password the policy accepts still goes through.
    const LONG: &str = "Vivid-Marble-Tundra-42";
    d.patch(
        &format!("/Users/{id}"),
        &replace_op("password", json!(LONG)),
    )
    .await
    .expect(200);
    assert_eq!(d.bind_rc(&dn, LONG).await, 0);

    // A create with a refused password leaves no entry behind.
    let mut weak = entra_user("weak", "Weak", "Pass");
    weak["password"] = json!("Tiny-pw-1");
    let r = d
        .post("/Users", &weak)
        .await
        .expect_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("password policy"), "{detail}");
    assert!(!detail.contains("Tiny-pw-1"), "{detail}");
    assert!(d.ds.entry(&d.user_dn("weak")).await.is_none());
    assert!(d.ds.find(&d.people, "(uid=weak)").await.is_empty());
    let found = d
        .get(&format!(
            "/Users?filter={}",
            url_encode("userName eq \"weak\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 0);
}

#[tokio::test]
async fn groups_and_memberships_on_389() {
    let d = start().await;
    let mut ids = Vec::new();
    for (uid, given, family) in [
        ("ann", "Ann", "Lee"),
        ("bea", "Bea", "Kim"),
        ("cal", "Cal", "Ng"),
    ] {
        let r = d
            .post("/Users", &entra_user(uid, given, family))
            .await
            .expect(201);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let members_of = |e: &ldap3::SearchEntry| -> HashSet<String> {
        values(e, "member")
            .iter()
            .map(|m| m.to_ascii_lowercase())
            .collect()
    };
    let dns = |uids: &[&str]| -> HashSet<String> {
        uids.iter()
            .map(|u| d.user_dn(u).to_ascii_lowercase())
            .collect()
    };

    // Created with a member.
    let r = d
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Engineering", "externalId": "aad-group-1",
                "members": [{"value": ids[0]}]}),
        )
        .await
        .expect(201);
    let gid = r.body["id"].as_str().unwrap().to_string();
    let gdn = d.group_dn("Engineering");
    let g = d.ds.entry(&gdn).await.expect("a groupOfNames in ou=groups");
    assert_eq!(first(&g, "nsUniqueId").as_deref(), Some(gid.as_str()));
    assert_eq!(values(&g, "businessCategory"), ["aad-group-1"]);
    assert_eq!(members_of(&g), dns(&["ann"]));

    // Entra's way: an empty group, members added later. 389 lets groupOfNames be empty.
    let r = d
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Empty", "members": []}),
        )
        .await
        .expect(201);
    let empty_id = r.body["id"].as_str().unwrap().to_string();
    let empty = d.ds.entry(&d.group_dn("Empty")).await.unwrap();
    assert!(values(&empty, "member").is_empty(), "{empty:?}");
    let found = d
        .get(&format!(
            "/Groups?filter={}",
            url_encode("displayName eq \"Engineering\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["id"], gid.as_str());

    let add = |id: &str| {
        json!({"schemas": [PATCH], "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": id}]}]})
    };
    let remove = |id: &str| {
        json!({"schemas": [PATCH], "Operations": [
            {"op": "Remove", "path": format!("members[value eq \"{id}\"]")}]})
    };
    d.patch(&format!("/Groups/{gid}"), &add(&ids[1]))
        .await
        .expect_status_in(&[200, 204]);
    // Again: no error (389 has no permissive modify; the gateway finds the no-op itself).
    d.patch(&format!("/Groups/{gid}"), &add(&ids[1]))
        .await
        .expect_status_in(&[200, 204]);
    let g = d.ds.entry(&gdn).await.unwrap();
    assert_eq!(members_of(&g), dns(&["ann", "bea"]));
    assert_eq!(values(&g, "member").len(), 2, "no duplicate values");

    // The group's members and a user's groups, as SCIM shows them.
    let got = d.get(&format!("/Groups/{gid}")).await.expect(200);
    let shown: HashSet<&str> = got.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(shown, HashSet::from([ids[0].as_str(), ids[1].as_str()]));
    let bea = d.get(&format!("/Users/{}", ids[1])).await.expect(200);
    let groups: Vec<&str> = bea.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert_eq!(groups, [gid.as_str()]);

    // Remove a member, and one that is not there: no error either way.
    d.patch(&format!("/Groups/{gid}"), &remove(&ids[0]))
        .await
        .expect_status_in(&[200, 204]);
    d.patch(&format!("/Groups/{gid}"), &remove(&ids[2]))
        .await
        .expect_status_in(&[200, 204]);
    assert_eq!(members_of(&d.ds.entry(&gdn).await.unwrap()), dns(&["bea"]));

    // Rename: a modrdn, same id, members kept.
    d.patch(
        &format!("/Groups/{gid}"),
        &replace_op("displayName", json!("Platform")),
    )
    .await
    .expect_status_in(&[200, 204]);
    assert!(d.ds.entry(&gdn).await.is_none());
    let pdn = d.group_dn("Platform");
    let g = d.ds.entry(&pdn).await.expect("renamed");
    assert_eq!(first(&g, "nsUniqueId").as_deref(), Some(gid.as_str()));
    assert_eq!(members_of(&g), dns(&["bea"]));
    let got = d.get(&format!("/Groups/{gid}")).await.expect(200);
    assert_eq!(got.body["displayName"], "Platform");

    // No Referential Integrity plugin: the gateway follows a member's rename ...
    d.patch(
        &format!("/Users/{}", ids[1]),
        &replace_op("userName", json!("beatrice")),
    )
    .await
    .expect(200);
    assert!(d.ds.entry(&d.user_dn("bea")).await.is_none());
    assert_eq!(
        members_of(&d.ds.entry(&pdn).await.unwrap()),
        dns(&["beatrice"])
    );

    // ... and drops a deleted member from the group.
    d.delete(&format!("/Users/{}", ids[1])).await.expect(204);
    assert!(d.ds.entry(&d.user_dn("beatrice")).await.is_none());
    let g = d.ds.entry(&pdn).await.unwrap();
    assert!(values(&g, "member").is_empty(), "{g:?}");
    let got = d.get(&format!("/Groups/{gid}")).await.expect(200);
    assert!(
        got.body["members"].as_array().is_none_or(|m| m.is_empty()),
        "{}",
        got.body
    );

    // Delete the groups.
    for (id, dn) in [(&gid, &pdn), (&empty_id, &d.group_dn("Empty"))] {
        d.delete(&format!("/Groups/{id}")).await.expect(204);
        assert!(d.ds.entry(dn).await.is_none());
        d.get(&format!("/Groups/{id}"))
            .await
            .expect_error(404, None);
    }
}

#[tokio::test]
async fn etags_come_from_entryusn_once_the_usn_plugin_is_on() {
    let mut ds = Ds389::start();
    let mut ldap = ds.admin().await;
    ldap.modify(
        USN_PLUGIN,
        vec![Mod::Replace("nsslapd-pluginEnabled", HashSet::from(["on"]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let _ = ldap.unbind().await;
    ds.restart();
    let d = start_on(ds).await;

    let r = d
        .post("/Users", &entra_user("vera", "Vera", "Stone"))
        .await
        .expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    let dn = d.user_dn("vera");
    let usn = first(&d.ds.entry(&dn).await.unwrap(), "entryUSN").expect("entryUSN");
    let tag = r.headers["etag"].to_str().unwrap().to_string();
    assert_eq!(tag, format!("W/\"{usn}\""), "the version is the entryUSN");
    assert_eq!(r.body["meta"]["version"], tag.as_str());

    let url = format!("{}/Users/{id}", d.base);
    let title = |v: &str| replace_op("title", json!(v)).to_string();
    let stale = d
        .send_with(
            d.client
                .patch(&url)
                .header("if-match", "W/\"1\"")
                .header("content-type", "application/scim+json")
                .body(title("Stale")),
            None,
        )
        .await
        .expect_error(412, None);
    assert!(
        stale.body["detail"].as_str().unwrap().contains(&tag),
        "{}",
        stale.body
    );
    assert!(values(&d.ds.entry(&dn).await.unwrap(), "title").is_empty());

    let r = d
        .send_with(
            d.client
                .patch(&url)
                .header("if-match", &tag)
                .header("content-type", "application/scim+json")
                .body(title("Fresh")),
            None,
        )
        .await
        .expect(200);
    let e = d.ds.entry(&dn).await.unwrap();
    assert_eq!(values(&e, "title"), ["Fresh"]);
    let new_usn = first(&e, "entryUSN").unwrap();
    assert!(
        new_usn.parse::<u64>().unwrap() > usn.parse::<u64>().unwrap(),
        "{usn} -> {new_usn}"
    );
    assert_eq!(r.headers["etag"], format!("W/\"{new_usn}\"").as_str());

    // The old version no longer passes, for DELETE either.
    d.send_with(d.client.delete(&url).header("if-match", &tag), None)
        .await
        .expect_error(412, None);
    assert!(d.ds.entry(&dn).await.is_some());
    let new_tag = r.headers["etag"].to_str().unwrap();
    d.send_with(d.client.delete(&url).header("if-match", new_tag), None)
        .await
        .expect(204);
    // With the plugin on, 389 keeps a deleted entry as a tombstone below the old DN; the
    // gateway's searches do not see it, and the name is free again.
    assert!(d.ds.entry(&dn).await.is_none());
    let tombstones = d.ds.find(&d.people, "(objectClass=nsTombstone)").await;
    let ids: Vec<String> = tombstones
        .iter()
        .filter_map(|t| first(t, "nsUniqueId"))
        .collect();
    assert_eq!(ids, [id.as_str()], "{tombstones:?}");
    d.get(&format!("/Users/{id}")).await.expect_error(404, None);
    let again = d
        .post("/Users", &entra_user("vera", "Vera", "Stone"))
        .await
        .expect(201);
    assert_ne!(again.body["id"], id.as_str());
    let found = d
        .get(&format!(
            "/Users?filter={}",
            url_encode("userName eq \"vera\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["id"], again.body["id"]);
}

#[tokio::test]
async fn a_service_account_with_the_documented_aci_is_enough() {
    let ds = Ds389::start();
    let services = format!("ou=services,{}", ds.suffix());
    let account = format!("uid=scim-gateway,{services}");
    const ACCOUNT_PW: &str = "Service-Account-Secret-1";
    let mut ldap = ds.admin().await;
    add_ou(&mut ldap, &services, "services", None).await;
    ldap.add(
        &account,
        vec![
            (
                "objectClass",
                HashSet::from(["top", "account", "simpleSecurityObject"]),
            ),
            ("uid", HashSet::from(["scim-gateway"])),
            ("userPassword", HashSet::from([ACCOUNT_PW])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let _ = ldap.unbind().await;
    let aci = documented_aci();
    assert!(aci.contains(&account), "{aci}");
    let d = start_as(ds, &account, ACCOUNT_PW, Some(&aci)).await;

    // Create with a password, find by id, rename, disable, enable.
    const PW: &str = "Quiet-Harbor-4417";
    let mut body = entra_user("isaac", "Isaac", "Brock");
    body["password"] = json!(PW);
    let r = d.post("/Users", &body).await.expect(201);
    let id = r.body["id"].as_str().unwrap().to_string();
    let e = d.ds.entry(&d.user_dn("isaac")).await.unwrap();
    assert_eq!(first(&e, "nsUniqueId").as_deref(), Some(id.as_str()));
    assert_eq!(values(&e, "creatorsName"), [account.as_str()]);
    assert_eq!(d.bind_rc(&d.user_dn("isaac"), PW).await, 0);
    let by_id = d
        .get(&format!(
            "/Users?filter={}",
            url_encode(&format!("id eq \"{id}\""))
        ))
        .await
        .expect(200);
    assert_eq!(by_id.body["totalResults"], 1);
    d.patch(
        &format!("/Users/{id}"),
        &replace_op("userName", json!("ike")),
    )
    .await
    .expect(200);
    let dn = d.user_dn("ike");
    assert!(d.ds.entry(&d.user_dn("isaac")).await.is_none());
    d.patch(&format!("/Users/{id}"), &replace_op("active", json!(false)))
        .await
        .expect(200);
    let e = d.ds.entry(&dn).await.expect("renamed");
    assert_eq!(values(&e, "nsAccountLock"), ["TRUE"]);
    assert_eq!(values(&e, "modifiersName"), [account.as_str()]);
    assert_eq!(d.bind_rc(&dn, PW).await, 53);
    d.patch(&format!("/Users/{id}"), &replace_op("active", json!(true)))
        .await
        .expect(200);
    assert!(values(&d.ds.entry(&dn).await.unwrap(), "nsAccountLock").is_empty());
    assert_eq!(d.bind_rc(&dn, PW).await, 0);

    // A group with the user; renamed; the user's deletion reaches it.
    let r = d
        .post(
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Ops", "members": [{"value": id}]}),
        )
        .await
        .expect(201);
    let gid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["members"][0]["value"], id.as_str());
    d.patch(
        &format!("/Groups/{gid}"),
        &replace_op("displayName", json!("Operations")),
    )
    .await
    .expect_status_in(&[200, 204]);
    let gdn = d.group_dn("Operations");
    assert_eq!(
        values(&d.ds.entry(&gdn).await.expect("renamed"), "member"),
        [dn.as_str()]
    );
    d.delete(&format!("/Users/{id}")).await.expect(204);
    assert!(d.ds.entry(&dn).await.is_none());
    let g = d.ds.entry(&gdn).await.unwrap();
    assert!(values(&g, "member").is_empty(), "{g:?}");
    assert_eq!(values(&g, "modifiersName"), [account.as_str()]);
    d.delete(&format!("/Groups/{gid}")).await.expect(204);
    assert!(d.ds.entry(&gdn).await.is_none());
}
