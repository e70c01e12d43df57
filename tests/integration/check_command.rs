//! `scim-ldap-gateway check` against a real directory: the binary, its output and exit code.

use crate::gateway::{demo_config_text, TOKEN};
use crate::slapd::Slapd;
use std::process::Command;

fn run_check(slapd: &Slapd, text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scim-ldap-gateway"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env("SCIM_TOKEN", TOKEN)
        .env("LDAP_ADMIN_PASSWORD", &slapd.admin_password)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn demo_config_passes_check_against_the_demo_directory() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run_check(&slapd, &demo_config_text(&slapd, dir.path()));
    assert!(ok, "{out}");
    assert!(out.contains("mapping matches the schema"), "{out}");
    // The server is identified, with what works and what the gateway does instead.
    assert!(out.contains(": OpenLDAP"), "{out}");
    assert!(
        out.contains("ok:   Password Modify extended operation"),
        "{out}"
    );
    assert!(out.contains("ok:   assertion control"), "{out}");
    assert!(out.contains("note: no permissive modify"), "{out}");
    assert!(out.contains("ok:   memberOf"), "{out}");
}

#[test]
fn check_names_every_missing_class_and_attribute() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let text = demo_config_text(&slapd, dir.path())
        .replace("\"scimUser\"]", "\"scimUser\", \"noSuchClass\"]")
        .replace("ldap = \"title\"", "ldap = \"noSuchTitle\"");
    let (ok, out) = run_check(&slapd, &text);
    assert!(!ok, "{out}");
    assert!(
        out.contains("mapping.users.object_classes[5]: object class noSuchClass"),
        "{out}"
    );
    assert!(
        out.contains("mapping.users.attributes[3].ldap: attribute noSuchTitle"),
        "{out}"
    );
    assert!(out.contains("2 problem(s)"), "{out}");
}

#[test]
fn check_reports_a_wrong_bind_password_and_bad_keys() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let text = demo_config_text(&slapd, dir.path());
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scim-ldap-gateway"))
        .args(["check", "--config"])
        .arg(&path)
        .env("SCIM_TOKEN", TOKEN)
        .env("LDAP_ADMIN_PASSWORD", "wrong-password")
        .output()
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(printed.contains("directory.bind_dn"), "{printed}");
    assert!(
        !printed.contains("wrong-password"),
        "the password must never be printed: {printed}"
    );

    let (ok, out) = run_check(
        &slapd,
        &text.replace("pool_size = 4", "pool_size = 4\npool_sise = 5"),
    );
    assert!(!ok);
    assert!(out.contains("pool_sise"), "the unknown key is named: {out}");
}
