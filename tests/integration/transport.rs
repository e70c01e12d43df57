//! TLS, HTTP versions, discovery, plaintext opt-in and directory outages.

use crate::gateway::TestGateway;
use serde_json::json;

#[tokio::test]
async fn https_speaks_http2_and_http1_via_alpn() {
    let gw = TestGateway::start().await;
    let r = gw.get("/ServiceProviderConfig").await.expect(200);
    assert_eq!(r.version, reqwest::Version::HTTP_2, "ALPN should pick h2");
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&gw.ca_pem).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let r = gw
        .send_with(h1.get(format!("{}/Users?count=1", gw.base)), None)
        .await
        .expect(200);
    assert_eq!(r.version, reqwest::Version::HTTP_11);
    for (min, max) in [
        (
            reqwest::tls::Version::TLS_1_2,
            reqwest::tls::Version::TLS_1_2,
        ),
        (
            reqwest::tls::Version::TLS_1_3,
            reqwest::tls::Version::TLS_1_3,
        ),
    ] {
        let c = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&gw.ca_pem).unwrap())
            .min_tls_version(min)
            .max_tls_version(max)
            .build()
            .unwrap();
        gw.send_with(c.get(format!("{}/Users?count=1", gw.base)), None)
            .await
            .expect(200);
    }
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("{}/Users", gw.base.replace("https://", "http://")))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn discovery_is_generated_from_the_mapping() {
    let gw = TestGateway::start().await;
    let spc = gw.get("/ServiceProviderConfig").await.expect(200).body;
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], true);
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let schemas = gw.get("/Schemas").await.expect(200).body;
    let ids: Vec<&str> = schemas["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:core:2.0:Group"
        ]
    );
    let core = &schemas["Resources"][0];
    let names: Vec<&str> = core["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for expected in [
        "active",
        "userName",
        "externalId",
        "displayName",
        "name",
        "emails",
        "phoneNumbers",
        "addresses",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let groups = core["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "groups")
        .unwrap();
    assert_eq!(groups["mutability"], "readOnly");
    let group_schema = &schemas["Resources"][2];
    let group_attrs: Vec<&str> = group_schema["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(group_attrs, vec!["displayName", "externalId", "members"]);
    for absent in ["nickName", "password", "x509Certificates"] {
        assert!(
            !names.contains(&absent),
            "{absent} is not stored, so it must not be advertised"
        );
    }
    let phones = core["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "phoneNumbers")
        .unwrap();
    assert_eq!(phones["multiValued"], true);
    let one = gw
        .get("/Schemas/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        .await
        .expect(200)
        .body;
    let ext: Vec<&str> = one["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(ext, vec!["employeeNumber", "department", "manager"]);
    let rt = gw.get("/ResourceTypes").await.expect(200).body;
    assert_eq!(rt["Resources"][0]["endpoint"], "/Users");
    gw.get("/ResourceTypes/User").await.expect(200);
    assert_eq!(rt["Resources"][1]["endpoint"], "/Groups");
    gw.get("/ResourceTypes/Group").await.expect(200);
    gw.get("/ResourceTypes/Role").await.expect_error(404, None);
    for path in ["/Schemas", "/ServiceProviderConfig", "/ResourceTypes"] {
        gw.post(path, &json!({})).await.expect_error(405, None);
    }
    gw.send(reqwest::Method::DELETE, "/Users", None)
        .await
        .expect_error(405, None);
}

#[tokio::test]
async fn plain_application_json_is_accepted() {
    let gw = TestGateway::start().await;
    let req = gw
        .client
        .post(format!("{}/Users", gw.base))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"userName":"json@contoso.com"}"#);
    let r = gw.send_with(req, None).await.expect(201);
    assert_eq!(r.headers["content-type"], "application/scim+json");
    assert!(gw
        .slapd
        .entry("uid=json@contoso.com,ou=people,dc=example,dc=org")
        .await
        .is_some());
}

#[tokio::test]
async fn plaintext_only_when_asked_for() {
    let gw =
        TestGateway::start_with(|t| t.replace("protocol = \"https\"", "protocol = \"http\"")).await;
    assert!(gw.base.starts_with("http://"));
    let r = gw
        .get("/Users?filter=userName%20eq%20%22alice%22")
        .await
        .expect(200);
    assert!(r.body["Resources"][0]["meta"]["location"]
        .as_str()
        .unwrap()
        .starts_with("http://"));
}

#[tokio::test]
async fn directory_outage_is_503_with_retry_after_not_a_hang() {
    let gw = TestGateway::start_with(|t| {
        t.replace("connect_timeout_secs = 5", "connect_timeout_secs = 1")
    })
    .await;
    gw.get("/Users?count=1").await.expect(200);
    let TestGateway { slapd, .. } = &gw;
    let pid = slapd.pid();
    // Stop the directory for good (SIGKILL): every request must fail fast and say when to retry.
    std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let r = gw
        .get("/Users?filter=userName%20eq%20%22alice%22")
        .await
        .expect_error(503, None);
    assert_eq!(r.headers["retry-after"], "5");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    gw.post("/Users", &json!({"userName": "during-outage"}))
        .await
        .expect_error(503, None);
}

/// A client that comes back resumes its TLS session from the gateway's session cache (TLS 1.3
/// tickets, TLS 1.2 session ids) instead of a full handshake, and the resumed connection serves
/// requests.
#[tokio::test]
async fn a_returning_client_resumes_its_tls_session() {
    use crate::operations::{connect_tls, h1_request, tls_connector};
    use rustls::HandshakeKind;
    use tokio::io::AsyncWriteExt;

    let gw = TestGateway::start().await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = tls_connector(&gw, &[version], b"http/1.1");
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let mut tls = connect_tls(&gw, &client).await;
            let r = h1_request(&mut tls, "GET", "/scim/v2/ServiceProviderConfig", None).await;
            assert_eq!(r.status(), 200, "{version:?}");
            assert!(String::from_utf8_lossy(&r.body).contains("ServiceProviderConfig"));
            kinds.push(tls.get_ref().1.handshake_kind().expect("handshake done"));
            tls.shutdown().await.ok();
        }
        assert_eq!(
            kinds,
            [
                HandshakeKind::Full,
                HandshakeKind::Resumed,
                HandshakeKind::Resumed
            ],
            "{version:?}"
        );
    }
}
