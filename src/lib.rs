//! undelete: a recycle bin for Linux file servers.
//!
//! A daemon (`watch`) copies every file in the protected folders into a
//! content-addressed `vault` before it can be deleted, and records every version
//! and deletion in the `index`. The `cli` lists, restores and reports.
//! Data flows one way: events → capture → vault + index; index + vault → plan →
//! restore → report.

pub mod accounts;
pub mod amend;
pub mod announce;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod diagnosis;
pub mod email;
pub mod grouping;
pub mod ids;
pub mod incident;
pub mod index;
pub mod journal;
pub mod model;
pub mod names;
pub mod rebuild;
pub mod report;
pub mod restore;
pub mod retention;
pub mod saved_reports;
pub mod vault;
pub mod watch;
pub mod words;

pub use cli::main;
