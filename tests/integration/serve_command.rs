//! The `serve` binary as operators run it: it serves, logs, stops on SIGTERM, and never logs a secret.

use crate::gateway::{demo_config_text, TOKEN};
use crate::slapd::Slapd;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn serve_logs_requests_but_never_secrets() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.path().join("gw.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("gw.key"), ck.key_pair.serialize_pem()).unwrap();
    // A fixed free port for the binary.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = demo_config_text(&slapd, dir.path()).replacen(
        r#"address = "127.0.0.1:0""#,
        &format!(r#"address = "127.0.0.1:{port}""#),
        1,
    );
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("gateway.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scim-ldap-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("SCIM_TOKEN", TOKEN)
        .env("LDAP_ADMIN_PASSWORD", &slapd.admin_password)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("gateway.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}/scim/v2");
    let started = Instant::now();
    let ok = loop {
        let r = client
            .get(format!("{base}/Users?count=1"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        match r {
            Ok(r) => break r,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!(
                "gateway did not come up: {e}\n{}",
                std::fs::read_to_string(dir.path().join("gateway.err")).unwrap_or_default()
                    + &std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    };
    assert_eq!(ok.status(), 200);
    let wrong = "wrong-but-long-token-value-1234567890";
    let r = client
        .get(format!("{base}/Users"))
        .bearer_auth(wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{base}/Users"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(r#"{"userName":"logged@contoso.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // SIGTERM stops it cleanly. (The client goes first: this thread blocks below, so it could not
    // answer HTTP/2's graceful-shutdown ping, and the gateway would wait out its grace period.)
    drop(client);
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop on SIGTERM: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");

    let mut out = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    std::fs::File::open(dir.path().join("gateway.err"))
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("/scim/v2/Users"), "requests are logged: {out}");
    assert!(out.contains("status=401"), "{out}");
    for secret in [TOKEN, wrong, slapd.admin_password.as_str()] {
        assert!(!out.contains(secret), "a secret reached the log");
    }
}
