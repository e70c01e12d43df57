//! Integration tests: the gateway in front of a real OpenLDAP slapd started per test.
//! One test binary (see STYLE.md) with a module per area.
#![allow(clippy::unwrap_used)]

mod active_directory;
mod blind_writes;
mod bulk;
mod check_command;
mod deploy_assets;
mod directory_faults;
mod ds389;
mod ds389_gateway;
mod etags;
mod failover;
mod faults;
mod gateway;
mod groups;
mod groups_scale;
mod hostile;
mod injection;
mod operations;
mod operations_binary;
mod passwords;
mod projection;
mod samba;
mod search_connections;
mod serve_command;
mod slapd;
mod sorting;
mod transport;
mod users;
