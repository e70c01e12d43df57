//! The demo mapping (config/gateway.toml), shared by the fuzz targets.
use scim_ldap_gateway::config::{Config, FixedEnv};
use scim_ldap_gateway::mapping::UserMapping;
use std::path::Path;

pub fn demo_mapping() -> UserMapping {
    let text = include_str!("../../config/gateway.toml");
    let mut env = FixedEnv::default();
    for var in ["SCIM_TOKEN", "LDAP_ADMIN_PASSWORD"] {
        env.vars
            .insert(var.into(), "fuzzing-secret-0123456789abcdef".into());
    }
    Config::from_toml(text, Path::new("/nonexistent"), &env)
        .expect("the demo config is valid")
        .users
}
