//! Integration tests: the real `undelete` binary, started on temporary folders.
//!
//! Every test builds its own `TestEnv` (a temporary `share/` and a `vault/`
//! beside it), starts its own daemon and waits with `undelete sync`, so tests
//! are independent and run in parallel.

mod common;

#[path = "cli/alerts.rs"]
mod alerts;
#[path = "cli/announce.rs"]
mod announce;
#[path = "cli/breaker.rs"]
mod breaker;
#[path = "cli/bulk.rs"]
mod bulk;
#[path = "cli/capture.rs"]
mod capture;
#[path = "cli/doctor.rs"]
mod doctor;
#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/in_place.rs"]
mod in_place;
#[path = "cli/incidents.rs"]
mod incidents;
#[path = "cli/interrupt.rs"]
mod interrupt;
#[path = "cli/lifecycle.rs"]
mod lifecycle;
#[path = "cli/messages.rs"]
mod messages;
#[path = "cli/model.rs"]
mod model;
#[path = "cli/mount.rs"]
mod mount;
#[path = "cli/moves.rs"]
mod moves;
#[path = "cli/names.rs"]
mod names;
#[path = "cli/odd_files.rs"]
mod odd_files;
#[path = "cli/own_names.rs"]
mod own_names;
#[path = "cli/playbook.rs"]
mod playbook;
#[path = "cli/previous_versions.rs"]
mod previous_versions;
#[path = "cli/ransomware.rs"]
mod ransomware;
#[path = "cli/rebuild.rs"]
mod rebuild;
#[path = "cli/reflink.rs"]
mod reflink;
#[path = "cli/reload.rs"]
mod reload;
#[path = "cli/restore.rs"]
mod restore;
#[path = "cli/retention.rs"]
mod retention;
#[path = "cli/samba.rs"]
mod samba;
#[path = "cli/security.rs"]
mod security;
#[path = "cli/service.rs"]
mod service;
#[path = "cli/sources.rs"]
mod sources;
#[path = "cli/totals.rs"]
mod totals;
#[path = "cli/who.rs"]
mod who;
#[path = "cli/wizard.rs"]
mod wizard;
#[path = "cli/writers.rs"]
mod writers;
