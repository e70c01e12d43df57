//! Hostile input: LDAP filter and DN metacharacters, subtree escapes, malformed and oversized bodies.

use crate::gateway::{first, people_dn, TestGateway};
use crate::slapd::{Slapd, SERVICE_DN, SUFFIX};
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn filter_metacharacters_never_widen_a_search() {
    let gw = TestGateway::start().await;
    let star = gw.create_user("star*user").await;
    let paren = gw.create_user("par(en)thesis").await;
    let slash = gw.create_user("back\\slash").await;
    // Each value matches only itself, never a wildcard or an injected clause.
    for (filter, expect) in [
        ("userName eq \"*\"", vec![]),
        ("userName eq \"star*user\"", vec![star.clone()]),
        ("userName eq \"star*\"", vec![]),
        ("userName eq \"par(en)thesis\"", vec![paren.clone()]),
        ("userName eq \"x)(uid=*\"", vec![]),
        ("userName eq \"*)(|(uid=*\"", vec![]),
        ("userName eq \"back\\\\slash\"", vec![slash.clone()]),
        ("userName eq \"back\\\\2aslash\"", vec![]),
        ("emails[type eq \"work\"].value eq \"*\"", vec![]),
        ("externalId eq \"*\"", vec![]),
        ("displayName eq \"*\"", vec![]),
        ("name.givenName eq \"*\"", vec![]),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"*\"",
            vec![],
        ),
        ("userName co \"*\"", vec![star.clone()]),
        ("userName sw \"par(\"", vec![paren.clone()]),
    ] {
        let r = gw.filter(filter).await.expect(200);
        let got = r.resource_ids();
        assert_eq!(got, expect, "filter {filter}");
    }
    // No LDAP value holds NUL; slapd would read one as the end of a substring assertion.
    for filter in ["userName eq \"nul\\u0000byte\"", "userName co \"\\u0000\""] {
        gw.filter(filter)
            .await
            .expect_error(400, Some("invalidFilter"));
    }
}

#[tokio::test]
async fn dn_specials_in_user_name_stay_one_rdn_below_people() {
    let gw = TestGateway::start().await;
    for name in [
        "a,b+c\"d\\e<f>g;h=i",
        "#hash",
        " lead and trail ",
        "x,ou=admins",
        "x,ou=admins,dc=example,dc=org",
    ] {
        let r = gw
            .post("/Users", &json!({"userName": name}))
            .await
            .expect(201);
        let id = r.body["id"].as_str().unwrap().to_string();
        assert_eq!(r.body["userName"], name, "round trip of {name:?}");
        let e = gw.entry_by_id(&id).await.unwrap();
        assert_eq!(first(&e, "uid").unwrap(), name);
        let parent = scim_ldap_gateway::directory::dn::parent(&e.dn).unwrap();
        assert_eq!(
            parent,
            format!("ou=people,{SUFFIX}"),
            "{name:?} landed at {}",
            e.dn
        );
        assert_eq!(
            gw.get(&format!("/Users/{id}")).await.expect(200).body["userName"],
            name
        );
    }
    assert!(
        gw.slapd
            .find(&format!("ou=admins,{SUFFIX}"), "(uid=*)")
            .await
            .is_empty(),
        "nothing may land in ou=admins"
    );
}

#[tokio::test]
async fn entries_outside_the_subtree_are_404() {
    let gw = TestGateway::start().await;
    let outsider = gw
        .slapd
        .entry(&format!("uid=outsider,ou=other,{SUFFIX}"))
        .await
        .unwrap();
    let id = first(&outsider, "entryUUID").unwrap();
    gw.get(&format!("/Users/{id}"))
        .await
        .expect_error(404, None);
    gw.patch(
        &format!("/Users/{id}"),
        &json!({"Operations":[{"op":"replace","path":"title","value":"pwned"}]}),
    )
    .await
    .expect_error(404, None);
    gw.put(
        &format!("/Users/{id}"),
        &json!({"userName":"outsider","title":"pwned"}),
    )
    .await
    .expect_error(404, None);
    gw.delete(&format!("/Users/{id}"))
        .await
        .expect_error(404, None);
    let after = gw
        .slapd
        .entry(&format!("uid=outsider,ou=other,{SUFFIX}"))
        .await
        .expect("outsider untouched");
    assert_eq!(first(&after, "title").unwrap(), "Contractor");
    let r = gw.filter("userName eq \"outsider\"").await.expect(200);
    assert_eq!(r.body["totalResults"], 0);
    // The manager reference cannot point outside the subtree either.
    let me = gw.create_user("managed@contoso.com").await;
    gw.patch(
        &format!("/Users/{me}"),
        &json!({"Operations":[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":id}]}),
    )
    .await
    .expect_error(400, Some("invalidValue"));
}

/// Below the gateway's own subtree checks, the demo directory's ACLs (deploy/ldap/slapd.conf.in)
/// let the service account the gateway binds as write only under ou=people, ou=groups and
/// ou=deleted: even a gateway bug could not change an entry elsewhere.
#[tokio::test]
async fn the_service_account_writes_only_its_subtrees() {
    const INSUFFICIENT_ACCESS_RIGHTS: u32 = 50;
    let slapd = Slapd::start();
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&slapd.url).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(SERVICE_DN, &slapd.admin_password)
        .await
        .unwrap()
        .success()
        .unwrap();
    let title = |v: &'static str| vec![ldap3::Mod::Replace("title", HashSet::from([v]))];
    let outsider = format!("uid=outsider,ou=other,{SUFFIX}");
    for (what, result) in [
        ("modify", ldap.modify(&outsider, title("pwned")).await),
        ("delete", ldap.delete(&outsider).await),
        (
            "add",
            ldap.add(
                &format!("ou=intruders,{SUFFIX}"),
                vec![
                    ("objectClass", HashSet::from(["organizationalUnit"])),
                    ("ou", HashSet::from(["intruders"])),
                ],
            )
            .await,
        ),
        (
            "modify of the suffix",
            ldap.modify(
                SUFFIX,
                vec![ldap3::Mod::Replace("description", HashSet::from(["pwned"]))],
            )
            .await,
        ),
    ] {
        let result = result.unwrap();
        assert_eq!(result.rc, INSUFFICIENT_ACCESS_RIGHTS, "{what}: {result}");
    }
    let after = slapd.entry(&outsider).await.expect("outsider untouched");
    assert_eq!(first(&after, "title").unwrap(), "Contractor");
    assert!(slapd
        .entry(&format!("ou=intruders,{SUFFIX}"))
        .await
        .is_none());
    // The same account does write where it manages users.
    let alice = people_dn("alice");
    ldap.modify(&alice, title("Allowed"))
        .await
        .unwrap()
        .success()
        .unwrap();
    let alice = slapd.entry(&alice).await.unwrap();
    assert_eq!(first(&alice, "title").unwrap(), "Allowed");
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let gw = TestGateway::start().await;
    let post_raw = |body: Vec<u8>, ct: &'static str| {
        gw.client
            .post(format!("{}/Users", gw.base))
            .header("content-type", ct)
            .body(body)
    };
    let r = gw
        .send_with(
            post_raw(b"{\"userName\": ".to_vec(), "application/scim+json"),
            None,
        )
        .await;
    r.expect_error(400, Some("invalidSyntax"));
    let r = gw
        .send_with(post_raw(b"[1,2,3]".to_vec(), "application/scim+json"), None)
        .await;
    r.expect_error(400, Some("invalidSyntax"));
    let r = gw
        .send_with(post_raw(b"\xff\xfe".to_vec(), "application/json"), None)
        .await;
    r.expect_error(400, Some("invalidSyntax"));
    let deep = "[".repeat(10_000);
    let r = gw
        .send_with(post_raw(deep.into_bytes(), "application/json"), None)
        .await;
    r.expect_error(400, Some("invalidSyntax"));
    let big = format!(
        "{{\"userName\":\"big\",\"displayName\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let r = gw
        .send_with(post_raw(big.into_bytes(), "application/scim+json"), None)
        .await;
    r.expect_error(413, None);
    let r = gw
        .send_with(
            post_raw(b"userName=x".to_vec(), "application/x-www-form-urlencoded"),
            None,
        )
        .await;
    r.expect_error(415, None);
    gw.post("/Users", &json!({"displayName": "no user name"}))
        .await
        .expect_error(400, Some("invalidValue"));
    gw.post("/Users", &json!({"userName": ["a", "b"]}))
        .await
        .expect_error(400, Some("invalidValue"));
    gw.post("/Users", &json!({"userName": "nul\u{0}byte"}))
        .await
        .expect_error(400, Some("invalidValue"));
    gw.post("/Users", &json!({"userName": "ok", "active": "maybe"}))
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(gw.slapd.entry(&people_dn("big")).await.is_none());
    assert!(gw.slapd.entry(&people_dn("ok")).await.is_none());
    // Bad PATCH documents.
    let id = gw.seeded_id("bob").await;
    let p = format!("/Users/{id}");
    gw.patch(&p, &json!({"Operations": []}))
        .await
        .expect_error(400, Some("invalidSyntax"));
    gw.patch(
        &p,
        &json!({"Operations": [{"op": "jump", "path": "title"}]}),
    )
    .await
    .expect_error(400, Some("invalidSyntax"));
    gw.patch(&p, &json!({"Operations": [{"op": "remove"}]}))
        .await
        .expect_error(400, Some("noTarget"));
    gw.patch(
        &p,
        &json!({"Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]}),
    )
    .await
    .expect_error(400, Some("invalidPath"));
    gw.patch(
        &p,
        &json!({"Operations": [{"op": "replace", "path": "id", "value": "x"}]}),
    )
    .await
    .expect_error(400, Some("mutability"));
    assert_eq!(gw.get(&p).await.expect(200).body["userName"], "bob");
}

#[tokio::test]
async fn bad_filters_are_400_invalid_filter() {
    let gw = TestGateway::start().await;
    for f in [
        "userName eq",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "nickName eq \"a\"",
        "name eq \"a\"",
        "userName eq true",
    ] {
        let r = gw.filter(f).await.expect_error(400, Some("invalidFilter"));
        if f.starts_with("nickName") {
            assert!(
                r.body["detail"].as_str().unwrap().contains("nickName"),
                "{}",
                r.body
            );
        }
    }
    let long = format!("userName eq \"{}\"", "a".repeat(10_000));
    gw.filter(&long)
        .await
        .expect_error(400, Some("invalidFilter"));
}

#[tokio::test]
async fn authentication_is_required_everywhere() {
    // 21 failed authentications from one address: more than the default burst of the
    // per-address quota, which would answer 429 (see the operations tests).
    let gw = TestGateway::start_with(|t| {
        t.replace(
            "unauthenticated_per_ip = { per_second = 5, burst = 20 }",
            "unauthenticated_per_ip = { per_second = 5, burst = 100 }",
        )
    })
    .await;
    for path in [
        "/Users",
        "/Users/x",
        "/ServiceProviderConfig",
        "/Schemas",
        "/nonexistent",
        "",
    ] {
        let url = format!("{}{path}", gw.base);
        for req in [
            gw.client.get(&url),
            gw.client
                .get(&url)
                .header("authorization", "Bearer wrong-token-0123456789"),
            gw.client
                .get(&url)
                .header("authorization", format!("Basic {}", crate::gateway::TOKEN)),
            gw.client.get(&url).header("authorization", "Bearer "),
        ] {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path}");
            assert!(resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["status"], "401");
        }
    }
    // Outside the base path there is nothing to authenticate for: 404 with or without a token,
    // also where a path only begins like the base path.
    let origin = gw
        .base
        .strip_suffix("/scim/v2")
        .expect("the demo base path");
    for path in ["/", "/Users", "/scim/v2x/Users", "/scim", "/metrics"] {
        let url = format!("{origin}{path}");
        for req in [
            gw.client.get(&url),
            gw.client.get(&url).bearer_auth(crate::gateway::TOKEN),
        ] {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 404, "{path}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["status"], "404", "{path}");
        }
    }
    // The token in the query string is not a credential.
    let resp = gw
        .client
        .get(format!(
            "{}/Users?access_token={}",
            gw.base,
            crate::gateway::TOKEN
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn body_abuse_is_refused_cleanly() {
    let gw = TestGateway::start_with(|t| {
        t.replacen(
            "default_page_size = 100\n",
            "default_page_size = 100\nmax_patch_operations = 5\n",
            1,
        )
    })
    .await;
    let raw = |body: &str| {
        gw.client
            .post(format!("{}/Users", gw.base))
            .header("content-type", "application/scim+json")
            .body(body.to_string())
    };
    // A key twice: which one would count? Refused, nothing written.
    let r = gw
        .send_with(raw(r#"{"userName":"dup-a","userName":"dup-b"}"#), None)
        .await
        .expect_error(400, Some("invalidSyntax"));
    assert!(r.body["detail"].as_str().unwrap().contains("twice"));
    assert!(gw.slapd.entry(&people_dn("dup-a")).await.is_none());
    assert!(gw.slapd.entry(&people_dn("dup-b")).await.is_none());
    // Numbers out of range.
    gw.send_with(raw(r#"{"userName":"num","active":1e999}"#), None)
        .await
        .expect_error(400, Some("invalidSyntax"));
    // Too many PATCH operations: a clear 400 naming the limit, nothing applied.
    let id = gw.seeded_id("bob").await;
    let ops: Vec<_> = (0..6)
        .map(|i| json!({"op": "replace", "path": "title", "value": format!("t{i}")}))
        .collect();
    let r = gw
        .patch(&format!("/Users/{id}"), &json!({"Operations": ops}))
        .await
        .expect_error(400, Some("tooMany"));
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("max_patch_operations"));
    let bob = gw.slapd.entry(&people_dn("bob")).await.unwrap();
    assert!(!first(&bob, "title").unwrap_or_default().starts_with('t'));
}

/// A 100 MB body is refused from its declared length, before any of it is sent; and a client
/// that asks before sending it (`Expect: 100-continue`) is never told to go ahead, whether its
/// token is good (413) or missing (401).
#[tokio::test]
async fn a_huge_declared_body_is_413_before_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start().await;
    let auth = format!("Authorization: Bearer {}\r\n", crate::gateway::TOKEN);
    for (extra, status) in [
        (auth.clone(), "413"),
        (format!("{auth}Expect: 100-continue\r\n"), "413"),
        ("Expect: 100-continue\r\n".to_string(), "401"),
    ] {
        let mut tls = crate::operations::open_tls(&gw, b"http/1.1").await;
        let head = format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\
             Content-Type: application/scim+json\r\nContent-Length: 104857600\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("an answer without sending the body")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{extra}: {text}"
        );
    }
}

/// A body is read whole however it arrives: after its head, in pieces, partly with its head, or
/// all with it (the gateway takes what the connection has already read and waits for the rest
/// in the handler). Three PATCHes on one keep-alive connection; each lands in the directory.
#[tokio::test]
async fn a_body_is_read_whole_however_it_is_split() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let gw = TestGateway::start().await;
    let id = gw.seeded_id("bob").await;
    let mut tls = crate::operations::open_tls(&gw, b"http/1.1").await;
    // (title, bytes of the body sent with the head)
    for (title, with_head) in [
        ("sent after", 0),
        ("partly with", 25),
        ("all with", usize::MAX),
    ] {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "title", "value": title}]})
        .to_string();
        let head = format!(
            "PATCH /scim/v2/Users/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n",
            crate::gateway::TOKEN,
            body.len()
        );
        let split = with_head.min(body.len());
        let mut opening = head.into_bytes();
        opening.extend_from_slice(&body.as_bytes()[..split]);
        tls.write_all(&opening).await.unwrap();
        tls.flush().await.unwrap();
        // The rest in two parts, each after a pause.
        let rest = &body.as_bytes()[split..];
        let (a, b) = rest.split_at(rest.len() / 2);
        for part in [a, b] {
            if !part.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tls.write_all(part).await.unwrap();
                tls.flush().await.unwrap();
            }
        }
        let answer = crate::operations::h1_response(&mut tls, title).await;
        let text = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status(), 200, "{title}: {text}");
        assert!(
            text.contains(&format!("\"title\":\"{title}\"")),
            "{title}: {text}"
        );
        let bob = gw.slapd.entry(&people_dn("bob")).await.unwrap();
        assert_eq!(first(&bob, "title").as_deref(), Some(title));
    }
}

/// TLS 1.0 and 1.1 are refused; TLS 1.2 works (so the probe itself works); plaintext on the TLS
/// port gets no HTTP answer.
#[tokio::test]
async fn old_tls_and_plaintext_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start().await;
    let address = gw
        .base
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let probe = |version: &'static str, address: String| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &address,
                    version,
                    "-cipher",
                    "DEFAULT:@SECLEVEL=0",
                    "-alpn",
                    "http/1.1",
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl is needed (./deploy/test.sh installs it)");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        })
    };
    for version in ["-tls1", "-tls1_1"] {
        let (ok, out) = probe(version, address.clone()).await.unwrap();
        assert!(!ok, "{version} was accepted:\n{out}");
        assert!(
            !out.contains("Cipher is ") || out.contains("Cipher is (NONE)"),
            "{out}"
        );
    }
    let (ok, out) = probe("-tls1_2", address.clone()).await.unwrap();
    assert!(ok && out.contains("Protocol  : TLSv1.2"), "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");

    let mut tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    tcp.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("the connection is closed");
    assert!(
        !String::from_utf8_lossy(&buf).contains("HTTP/1.1"),
        "plaintext got an HTTP answer"
    );
}

/// Every entry below the suffix with all its user attributes, to compare before and after.
async fn snapshot(gw: &TestGateway) -> Vec<(String, Vec<(String, Vec<String>)>)> {
    let mut all: Vec<_> = gw
        .slapd
        .find(SUFFIX, "(objectClass=*)")
        .await
        .into_iter()
        .map(|e| {
            let mut attrs: Vec<_> = e.attrs.into_iter().collect();
            attrs.sort();
            (e.dn, attrs)
        })
        .collect();
    all.sort();
    all
}

/// Ids that are paths, encoded dot segments, filter and DN metacharacters or far too long,
/// sent byte for byte (no client-side URL normalisation), on every verb of both collections:
/// 404 or 400, never a 5xx, and the directory is unchanged. The same for the ids of entries
/// outside the mapped subtrees and for a group's id used as a user's and the reverse.
#[tokio::test]
async fn hostile_and_foreign_ids_are_404_on_every_verb() {
    let gw = TestGateway::start_with(|t| {
        crate::faults::release_gateway::set_key(&t, "[rate_limits]", "enabled", "false")
    })
    .await;
    let mut foreign = Vec::new();
    for dn in [
        format!("uid=outsider,ou=other,{SUFFIX}"),
        format!("ou=people,{SUFFIX}"),
        format!("ou=groups,{SUFFIX}"),
        format!("ou=admins,{SUFFIX}"),
        SUFFIX.to_string(),
        SERVICE_DN.to_string(),
    ] {
        let e = gw.slapd.entry(&dn).await.unwrap();
        foreign.push(("both", first(&e, "entryUUID").unwrap()));
    }
    let group = gw
        .slapd
        .entry(&format!("cn=sales,ou=groups,{SUFFIX}"))
        .await;
    foreign.push(("Users", first(&group.unwrap(), "entryUUID").unwrap()));
    foreign.push(("Groups", gw.seeded_id("alice").await));
    let long = |n: usize| "a".repeat(n);
    let mut ids: Vec<String> = [
        "..",
        "../",
        "../..",
        "..%2f",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%2e%2e%2f",
        "%2E%2E/",
        "%252e%252e%252f",
        ".",
        "%2e",
        "%00",
        "x%00y",
        "*",
        "%2a",
        "x)(uid=*",
        "x%29%28uid%3d%2a",
        "uid=alice,ou=people,dc=example,dc=org",
        "uid%3dalice%2cou%3dpeople%2cdc%3dexample%2cdc%3dorg",
        "%ff%fe",
        "%",
        "00000000-0000-0000-0000-000000000000",
    ]
    .map(String::from)
    .into();
    ids.extend([long(256), long(4096), long(60_000)]);
    let before = snapshot(&gw).await;
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    let patch = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"pwned"}]}"#;
    for collection in ["Users", "Groups"] {
        let put = if collection == "Users" {
            r#"{"userName":"pwned","displayName":"pwned"}"#
        } else {
            r#"{"displayName":"pwned"}"#
        };
        let candidates = ids.iter().map(|id| (id.clone(), false)).chain(
            foreign
                .iter()
                .filter(|(c, _)| *c == "both" || *c == collection)
                .map(|(_, id)| (id.clone(), true)),
        );
        for (id, is_foreign) in candidates {
            for (method, body) in [
                ("GET", None),
                ("PATCH", Some(patch)),
                ("PUT", Some(put)),
                ("DELETE", None),
            ] {
                let path = format!("/scim/v2/{collection}/{id}");
                let mut tls = crate::operations::open_tls(&gw, b"http/1.1").await;
                let r = crate::operations::h1_request(&mut tls, method, &path, body).await;
                let status = r.status();
                let shown = if id.len() > 64 {
                    format!("<{} bytes>", id.len())
                } else {
                    id.clone()
                };
                if is_foreign {
                    assert_eq!(status, 404, "{method} {collection}/{shown}");
                } else {
                    assert!(
                        matches!(status, 400 | 404),
                        "{method} {collection}/{shown}: {status} {}",
                        String::from_utf8_lossy(&r.body)
                    );
                }
                *answered.entry(status).or_default() += 1;
            }
        }
    }
    eprintln!("answers by status: {answered:?}");
    assert_eq!(snapshot(&gw).await, before, "the directory changed");
}
