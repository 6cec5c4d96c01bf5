//! Integration tests: the real `undelete` binary, started on temporary folders.
//!
//! Every test builds its own `TestEnv` (a temporary `share/` and a `vault/`
//! beside it), starts its own daemon and waits with `undelete sync`, so tests
//! are independent and run in parallel.

mod common;

#[path = "cli/bulk.rs"]
mod bulk;
#[path = "cli/capture.rs"]
mod capture;
#[path = "cli/lifecycle.rs"]
mod lifecycle;
#[path = "cli/moves.rs"]
mod moves;
#[path = "cli/names.rs"]
mod names;
#[path = "cli/reflink.rs"]
mod reflink;
#[path = "cli/restore.rs"]
mod restore;
